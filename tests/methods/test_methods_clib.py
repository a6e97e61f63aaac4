"""CLIB: sample-wise importance, the memory's replacement rule, the adaptive lr; EWC++."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from rainbow_runner.memory import MEMORIES
from rainbow_runner.memory.clib import ImportanceMemory, importance_update, replacement_slot
from rainbow_runner.methods.clib import BURN_IN, AdaptiveLearningRate
from tests.methods.test_methods_common import build_trainer
from tests.runner.test_resume_checkpoint import assert_resumed_runs_repeat_the_run


def test_importance_tracks_the_loss_decrease_each_sample_brings():
    importance = torch.zeros(3, dtype=torch.float64)
    for _ in range(200):  # a step on slot 0 lowers the memory's loss by 0.3, on slot 1 raises it
        importance = importance_update(importance, torch.tensor([0]), 0.3, 0.1)
        importance = importance_update(importance, torch.tensor([1, 1]), -0.1, 0.1)
    assert importance.tolist() == pytest.approx([0.3, -0.1, 0.0], abs=1e-6)
    # one step on two samples: each moves by rate * (decrease - their mean importance)
    both = importance_update(
        torch.tensor([0.2, 0.4, 1.0], dtype=torch.float64), torch.tensor([0, 1]), 0.5, 0.1
    )
    assert both.tolist() == pytest.approx([0.22, 0.42, 1.0])


def test_a_sample_the_memory_needs_is_more_important_than_a_mislabelled_one():
    """Memory: 4 clean samples per class (x = ±1 on the first axis) and one class-0 look-alike
    labelled 1. Training on a clean sample lowers the memory's loss; on the mislabelled one it
    raises it (removing it would not raise the loss; removing a clean one would)."""
    torch.set_num_threads(1)  # tiny tensors: threads only contend (conftest restores it)
    torch.manual_seed(0)
    x = torch.tensor([[1.0, 0.2], [1.0, -0.2], [1.2, 0.0], [0.8, 0.1]])
    x = torch.cat([x, -x, torch.tensor([[1.0, 0.0]])])
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    memory = ImportanceMemory(capacity=9, seed=0, ema=0.9)
    memory.add(torch.arange(9), y, n_exposed=2)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    generator = torch.Generator().manual_seed(0)

    def memory_losses() -> torch.Tensor:
        with torch.no_grad():
            return F.cross_entropy(model(x[memory.indices]), y[memory.indices], reduction="none")

    memory.measure(memory_losses())
    for _ in range(150):
        with torch.no_grad():  # stay near the start: a model that has converged learns nothing
            for parameter in model.parameters():
                parameter.mul_(0.9)
        memory.measure(memory_losses())
        trained = torch.randint(9, (1,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x[trained]), y[trained]).backward()
        optimizer.step()
        memory.record_training(trained)
        memory.measure(memory_losses())
    importance = memory.importance_of(torch.arange(9))
    assert importance[:8].min() > 0 > importance[8]


def test_a_full_memory_evicts_the_least_important_sample_of_its_largest_class():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    importance = torch.tensor([0.5, -0.2, 0.1, -0.9, 0.3, -1.0], dtype=torch.float64)
    assert replacement_slot(labels, importance, incoming_label=2) == 1  # class 0: 3 > 2
    # the incoming sample counts: class 1 reaches 3 and ties class 0; the lower label wins
    assert replacement_slot(labels, importance, incoming_label=1) == 1
    # class 1 (3 with the incoming) ties class 2: the lower label, class 1, and its slot 1
    assert replacement_slot(torch.tensor([0, 1, 1, 2, 2, 2]), importance, 1) == 1
    assert replacement_slot(torch.tensor([0, 1, 1, 2, 2, 2]), importance, 0) == 5  # class 2

    memory = MEMORIES.get("clib")(capacity=6, seed=0)
    memory.add(torch.arange(6) + 100, torch.tensor([0, 0, 0, 1, 2, 2]), n_exposed=3)
    memory.importance = importance.clone()
    memory.add(torch.tensor([7, 8]), torch.tensor([2, 2]), n_exposed=3)
    # 7: classes 0 and 2 (with 7) hold 3 each, the lower label goes first: class 0's least
    # important, slot 1 (-0.2). 8: class 2 now holds 3 (+1): its least important, slot 5 (-1.0)
    assert memory.indices.tolist() == [100, 7, 102, 103, 104, 8]
    # a new sample starts at the mean importance of its class's other stored samples
    assert memory.importance[1].item() == pytest.approx((0.3 - 1.0) / 2)
    assert memory.importance[5].item() == pytest.approx((-0.35 + 0.3) / 2)


def made_up_decreases(lr: AdaptiveLearningRate, low_gain: float, high_gain: float) -> list:
    """Feed ticks whose memory loss falls by low_gain per tick at the low lr, high_gain at the
    high lr (±1% jitter): return the (high, low, current) lrs after each tick."""
    indices, loss, seen = torch.arange(4), 10.0, []
    for tick in range(1, 200):
        gain = high_gain if lr.is_high else low_gain
        loss -= gain * (1.01 if tick % 3 else 0.99)
        lr.tick(indices, torch.full((4,), loss, dtype=torch.float64))
        seen.append((lr.high, lr.low, lr.lr))
    return seen


def test_the_adaptive_lr_alternates_and_moves_toward_the_lr_that_lowers_the_loss_more():
    lr = AdaptiveLearningRate(1.0, step=0.5, length=3, period=2)
    seen = made_up_decreases(lr, low_gain=0.1, high_gain=0.01)
    # before any test: 1.0 for two ticks, 0.5 for two, ... (switch every period ticks)
    assert [current for _, _, current in seen[:8]] == [1.0, 0.5, 0.5, 1.0, 1.0, 0.5, 0.5, 1.0]
    # records start after the burn-in; with 3 per lr (12 more ticks) the low lr wins the test
    first_move = next(i for i, (high, _, _) in enumerate(seen) if high != 1.0) + 1
    assert first_move == BURN_IN + 12
    assert seen[first_move - 1][:2] == (0.5, 0.25)
    assert seen[-1][0] < 0.5  # it keeps moving down while the lower lr keeps winning

    rising = made_up_decreases(AdaptiveLearningRate(1.0, 0.5, 3, 2), low_gain=0.01, high_gain=0.1)
    assert rising[BURN_IN + 11][:2] == (2.0, 1.0)
    same = made_up_decreases(AdaptiveLearningRate(1.0, 0.5, 3, 2), low_gain=0.05, high_gain=0.05)
    assert {(high, low) for high, low, _ in same} == {(1.0, 0.5)}  # no evidence: no move


def test_clib_stores_first_and_trains_on_the_memory_alone(tmp_path):
    torch.set_num_threads(1)
    trainer = build_trainer(tmp_path, ["mode=clib", "exp=disjoint", "stream=online", "mem_size=60"])
    task = trainer.split.train_tasks[0]
    trained = []
    update = trainer.method.update
    trainer.method.update = lambda batch: trained.append(batch) or update(batch)
    trainer.train_task(0, task)
    assert len(trained) == len(task)  # online_iter=1 step per incoming sample
    assert all(batch.n_stream == 0 and len(batch.y) <= 16 for batch in trained)
    assert set(trained[0].indices.tolist()) <= set(task[:16].tolist())  # stored before its step
    memory = trainer.method.memory
    assert len(memory) == 60 and torch.bincount(memory.labels).tolist() == [30, 30]
    assert memory.importance.abs().sum() > 0


def test_memory_losses_follow_the_memory_and_leave_the_model_training(tmp_path):
    """The kept inputs are those of the memory now (rebuilt when it changed); the losses are
    those an eval-mode pass over the memory's samples gives, and the model trains after."""
    torch.set_num_threads(1)
    trainer = build_trainer(tmp_path, ["mode=clib", "exp=disjoint", "stream=online", "mem_size=40"])
    trainer.train_task(0, trainer.split.train_tasks[0])
    method, memory, model = trainer.method, trainer.method.memory, trainer.model

    def expected() -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            logits = model(method.context.inputs(memory.indices))
        model.train()
        return F.cross_entropy(logits, method.context.labels(memory.indices), reduction="none")

    model.train()
    assert torch.equal(method.memory_losses(), expected()) and model.training
    assert all(module.training for module in model.modules())
    task = trainer.split.train_tasks[0]
    unseen = task[~torch.isin(task, memory.indices)][:5]  # task 0 samples the memory lacks
    memory.observe(unseen, trainer.train_labels_cpu[unseen], 2)
    assert torch.isin(unseen, memory.indices).any()
    assert not torch.equal(method.measured_inputs[0], memory.indices)
    assert torch.equal(method.memory_losses(), expected())  # the new samples' losses
    assert torch.equal(method.measured_inputs[0], memory.indices)


def test_a_resumed_run_repeats_the_uninterrupted_one(tmp_path, monkeypatch):
    """Importances, the lr schedule and the memory's measurements survive a checkpoint."""
    overrides = ["mode=clib", "stream=offline", "n_epoch=2", "mem_size=40", "progress=false"]
    assert_resumed_runs_repeat_the_run(tmp_path, overrides, monkeypatch)


def test_ewcpp_anchors_at_the_running_fisher_scaled_to_one(tmp_path):
    torch.set_num_threads(1)
    trainer = build_trainer(tmp_path, ["mode=ewcpp", "exp=disjoint", "stream=offline"])
    method = trainer.method
    trainer.train_task(0, trainer.split.train_tasks[0])
    fisher = {name: value.clone() for name, value in method.fisher.items()}
    peak = max(float(value.max()) for value in fisher.values())
    assert set(method.importance) == set(method.penalized) and peak > 0
    for name, param in method.penalized.items():
        assert torch.allclose(method.importance[name], fisher[name] / peak)
        assert torch.equal(method.anchors[name], param.detach())


def test_clib_refuses_a_memory_it_cannot_rank_or_train_on(tmp_path):
    with pytest.raises(ValueError, match="needs mem_manage=clib .* not mem_manage=reservoir"):
        build_trainer(tmp_path / "a", ["mode=clib", "mem_manage=reservoir"])
    with pytest.raises(ValueError, match="trains on its memory alone: set mem_size > 0"):
        build_trainer(tmp_path / "b", ["mode=clib", "mem_size=0"])
