"""RAR: the bounded feature-space perturbation and the replays it makes."""

from __future__ import annotations

import copy

import torch
from torch import nn

from rainbow_runner.methods.base import TrainBatch
from rainbow_runner.methods.embedding import perturb_toward_features
from rainbow_runner.runner.options import check_method_and_memory_options
from tests.conftest import compose_config
from tests.methods.test_methods_common import trainer_at_second_task

RAR_RUN = ["mode=rar", "exp=disjoint", "n_epoch=1", "mem_size=100"]


def test_rar_defaults_to_a_reservoir_and_its_knobs_are_constructor_arguments():
    cfg = compose_config(["mode=rar"])
    assert cfg.mem_manage.name == "reservoir" and cfg.mode.epsilon == 0.0314
    check_method_and_memory_options(cfg)


def test_a_linear_feature_moves_toward_its_target_by_signed_steps_within_the_bounds():
    extract = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        extract.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
    x = torch.tensor([[0.5, 0.5, 0.5], [0.95, 0.0, 0.5]])
    targets = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    moved = perturb_toward_features(
        extract, x, targets, torch.tensor(0.1), 4, torch.tensor(0.0), torch.tensor(1.0)
    )
    # each step of 0.025 follows the gradient's sign; the third input never matters; the
    # second row's first input stops at 1.0 (high), its second already sits on its target
    expected = torch.tensor([[0.6, 0.4, 0.5], [1.0, 0.0, 0.5]])
    assert torch.allclose(moved, expected, atol=1e-6)


def test_perturbed_replay_nears_its_nearest_current_task_neighbour_within_epsilon(tmp_path):
    trainer = trainer_at_second_task(tmp_path, RAR_RUN)
    method, model, memory = trainer.method, trainer.model, trainer.memory
    stream = trainer.split.train_tasks[1][:16]
    indices = torch.cat([stream, memory.indices[:16]])
    x = trainer.augmenter.normalize(trainer.fetch_images(indices))
    y = trainer.steps.train_labels[indices]
    replayed = torch.arange(32) >= 16
    model.train()
    state = copy.deepcopy(model.state_dict())  # weights and BatchNorm running statistics
    model.zero_grad(set_to_none=True)
    perturbed = method.perturbed_replay(x, y, replayed)
    assert model.training and all(p.grad is None for p in model.parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name

    model.eval()
    with torch.no_grad():
        stream_features = model.features(x[:16])
        before = torch.cdist(model.features(x[16:]), stream_features)
        after = torch.cdist(model.features(perturbed), stream_features)
    other_class = y[16:, None] != y[None, :16]
    nearest = before.masked_fill(~other_class, float("inf")).argmin(1)
    rows = torch.arange(16)
    assert (after[rows, nearest] < before[rows, nearest]).all()
    low, high = method.pixel_range(1)
    bound = method.epsilon * (high - low)
    change = (perturbed - x[16:]).abs()
    assert change.max() > 0.5 * bound.max() and (change <= bound + 1e-6).all()
    assert (perturbed >= low - 1e-6).all() and (perturbed <= high + 1e-6).all()


def test_the_perturbed_replays_add_their_loss_to_er(tmp_path):
    trainer = trainer_at_second_task(tmp_path, RAR_RUN)
    method = trainer.method
    stream = trainer.split.train_tasks[1][:16]
    indices = torch.cat([stream, trainer.memory.indices[:16]])
    x = trainer.augmenter.normalize(trainer.fetch_images(indices))
    batch = TrainBatch(x, trainer.steps.train_labels[indices], indices=indices, n_stream=16)
    trainer.model.eval()  # the same features in every forward
    torch.manual_seed(0)
    with_replays, _ = method.loss(batch)
    method.beta = 0.0
    er_only, _ = method.loss(batch)
    assert with_replays.item() > er_only.item() + 0.01
