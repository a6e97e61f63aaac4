"""MIR: the look-ahead step, the interference ranking, a choice that leaves the model alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from rainbow_runner.methods.gradients import most_interfered, virtual_sgd_parameters
from rainbow_runner.runner.options import check_method_and_memory_options
from tests.conftest import TINY, compose_config, run_in_process
from tests.methods.test_methods_common import trainer_at_second_task
from tests.runner.test_resume_checkpoint import assert_resumed_runs_repeat_the_run

MIR_RUN = ["mode=mir", "exp=disjoint", "n_epoch=1", "mem_size=100"]


def test_mir_defaults_to_a_reservoir_and_its_knobs_are_constructor_arguments():
    cfg = compose_config(["mode=mir"])
    assert cfg.mem_manage.name == "reservoir" and cfg.mode.subsample == 50
    check_method_and_memory_options(cfg)


def test_most_interfered_picks_the_largest_loss_increases():
    before = torch.tensor([1.0, 1.0, 0.5, 2.0, 0.1])
    after = torch.tensor([1.5, 0.9, 3.0, 2.1, 0.2])  # increases 0.5, -0.1, 2.5, 0.1, 0.1
    assert set(most_interfered(before, after, 2).tolist()) == {0, 2}
    assert len(most_interfered(before, after, 9)) == 5  # k beyond the candidates: all of them


def test_virtual_step_is_plain_sgd_per_group_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    groups = [
        {"params": list(model[0].parameters()), "lr": 0.1},
        {"params": list(model[2].parameters()), "lr": 0.5},
    ]
    before = copy.deepcopy(model.state_dict())
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    virtual = virtual_sgd_parameters(model, F.cross_entropy(model(x), y), groups)

    reference = copy.deepcopy(model)
    F.cross_entropy(reference(x), y).backward()
    for name, param in reference.named_parameters():
        lr = 0.1 if name.startswith("0.") else 0.5
        assert torch.allclose(virtual[name], param - lr * param.grad), name
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(param.grad is None for param in model.parameters())


def test_mir_ranks_a_hand_made_case_by_its_known_interference():
    """A zero linear model and one stream sample of class 0 at x = (1, 0): the virtual step
    raises class 0's score in proportion to x[0] + 1, so a class-1 candidate's loss rises the
    more, the larger its x[0]; class-0 candidates' losses fall."""
    model = nn.Linear(2, 2)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    stream_x, stream_y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    candidates = torch.tensor([[0.0, 5.0], [3.0, 0.0], [1.0, 1.0], [2.0, -1.0], [3.0, 2.0]])
    labels = torch.tensor([1, 0, 1, 1, 0])
    loss = F.cross_entropy(model(stream_x), stream_y)
    virtual = virtual_sgd_parameters(model, loss, [{"params": model.parameters(), "lr": 0.5}])
    with torch.no_grad():
        before = F.cross_entropy(model(candidates), labels, reduction="none")
        stepped = functional_call(model, virtual, (candidates,))
        after = F.cross_entropy(stepped, labels, reduction="none")
    assert (after[labels == 0] < before[labels == 0]).all()
    assert most_interfered(before, after, 2).tolist() == [3, 2]  # x[0] = 2, then x[0] = 1
    assert most_interfered(before, after, 3).tolist() == [3, 2, 0]


def _trainer_at_second_task(tmp_path):
    """A disjoint MIR run after task 0 (memory filled), task 1 begun (head grown, new optimizer)."""
    return trainer_at_second_task(tmp_path, MIR_RUN)


def test_replay_is_the_top_k_of_independently_computed_loss_increases(tmp_path):
    trainer = _trainer_at_second_task(tmp_path)
    method, memory = trainer.method, trainer.memory
    stream = trainer.split.train_tasks[1][:16]
    drawn_from = memory.rng.bit_generator.state
    chosen = method.replay(stream)
    memory.rng.bit_generator.state = drawn_from
    candidates = memory.sample(50)  # the candidates replay() drew

    def inputs(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = trainer.augmenter.normalize(trainer.fetch_images(indices))
        return x, trainer.steps.train_labels[indices]

    model = trainer.model.eval()
    stepped = copy.deepcopy(model)
    x, y = inputs(stream)
    F.cross_entropy(stepped(x), y).backward()
    lr = trainer.optimizer.param_groups[0]["lr"]
    with torch.no_grad():
        for param in stepped.parameters():
            param -= lr * param.grad
        x, y = inputs(candidates)
        increase = F.cross_entropy(stepped(x), y, reduction="none") - F.cross_entropy(
            model(x), y, reduction="none"
        )
    expected = candidates[increase.topk(16).indices]
    assert len(chosen) == 16 and set(chosen.tolist()) == set(expected.tolist())
    assert increase.topk(16).values.min() > increase.median()  # a real choice, not all rows


def test_replay_leaves_weights_grads_and_batchnorm_statistics_alone(tmp_path):
    trainer = _trainer_at_second_task(tmp_path)
    model = trainer.model.train()  # as the loop leaves it between steps
    method, stream = trainer.method, trainer.split.train_tasks[1][:16]
    x = trainer.augmenter.normalize(trainer.fetch_images(stream))
    F.cross_entropy(model(x), trainer.steps.train_labels[stream]).backward()  # .grad as a step's
    state = copy.deepcopy(model.state_dict())  # weights and BatchNorm running statistics
    grads = {name: param.grad.clone() for name, param in model.named_parameters()}
    assert any(name.endswith("running_mean") for name in state)
    chosen = method.replay(stream)
    assert len(chosen) == 16 and model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    for name, param in model.named_parameters():
        assert torch.equal(param.grad, grads[name]), name


@pytest.mark.parametrize("stream", ["online", "offline"])
def test_mir_runs_end_to_end_and_beats_finetune_on_a_disjoint_split(tmp_path, stream):
    settings = [f"stream={stream}", "exp=disjoint", *TINY]
    mir = run_in_process(tmp_path / "mir", ["mode=mir", *settings])
    finetune = run_in_process(tmp_path / "finetune", ["mode=finetune", *settings])
    assert mir["status"] == "complete" and mir["tasks_done"] == 5
    assert mir["A_last"] > finetune["A_last"] + 20.0


def test_a_resumed_run_repeats_the_uninterrupted_one(tmp_path, monkeypatch):
    """Resumed after a task, inside the stream, inside a memory epoch: the same draws."""
    overrides = ["mode=mir", "stream=online", "n_epoch=2", "mem_size=60", "progress=false"]
    assert_resumed_runs_repeat_the_run(tmp_path, overrides, monkeypatch)
