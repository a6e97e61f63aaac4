"""ER-ACE: the stream rows' loss moves only the logits of the classes in the stream batch; the
memory rows' loss is plain CE; the mode's rows are split by where they came from."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rainbow_runner.datasets.augment.batches import MixedBatch
from rainbow_runner.methods.base import TrainBatch
from rainbow_runner.methods.functional import asymmetric_cross_entropy
from rainbow_runner.runner.options import check_method_and_memory_options
from tests.conftest import compose_config
from tests.methods.test_methods_common import build_trainer

STREAM_Y = torch.tensor([2, 3, 3, 2, 3])  # the stream batch holds classes 2 and 3 only
MEMORY_Y = torch.tensor([0, 5, 1])


def leaf_logits(n_rows: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_rows, 6, generator=generator).requires_grad_()


def test_default_memory_is_a_reservoir_and_offline_intake_is_at_the_task_start():
    cfg = compose_config(["mode=er_ace"])
    assert cfg.mem_manage.name == "reservoir" and set(cfg.mode) == {"name", "offline_intake"}
    assert cfg.mode.offline_intake == "start"
    check_method_and_memory_options(cfg)


def test_offline_the_memory_holds_the_task_while_it_trains_unless_intake_is_at_the_end(tmp_path):
    """Avalanche's ER_ACE updates its buffer before an experience: replayed rows then include
    the new classes from the task's first step; offline_intake=end keeps er's order."""
    settings = ["mode=er_ace", "stream=offline", "exp=disjoint", "mem_size=40", "n_epoch=1"]
    for intake, expected_before_training in (("start", 40), ("end", 0)):
        trainer = build_trainer(tmp_path / intake, [*settings, f"mode.offline_intake={intake}"])
        task = trainer.split.train_tasks[0]
        trainer.begin_task()
        assert len(trainer.memory) == expected_before_training
        if intake == "start":
            assert set(trainer.memory.indices.tolist()) <= set(task.tolist())
        trainer.method.end_stream(0, task, streamed=False)
        assert len(trainer.memory) == 40  # taken in once either way


def test_the_stream_loss_gives_no_gradient_to_classes_absent_from_the_stream_batch():
    logits = leaf_logits(5)
    batch = MixedBatch(torch.zeros(5, 1), STREAM_Y, None, 1.0)
    loss = asymmetric_cross_entropy(logits, batch, slice(0, 5), slice(5, None))
    loss.backward()
    absent = [0, 1, 4, 5]
    assert torch.equal(logits.grad[:, absent], torch.zeros(5, 4))
    assert (logits.grad[:, [2, 3]].abs() > 1e-4).all()
    # the value: CE over the present classes' logits, targets renumbered within them
    expected = F.cross_entropy(logits[:, [2, 3]], STREAM_Y - 2)
    assert torch.allclose(loss, expected)


def test_memory_rows_get_plain_ce_and_the_loss_is_the_mean_of_the_two_terms():
    logits = leaf_logits(8, seed=1)
    y = torch.cat([STREAM_Y, MEMORY_Y])
    batch = MixedBatch(torch.zeros(8, 1), y, None, 1.0)
    loss = asymmetric_cross_entropy(logits, batch, slice(0, 5), slice(5, None))
    loss.backward()
    stream_term = F.cross_entropy(logits[:5, [2, 3]], STREAM_Y - 2)
    memory_term = F.cross_entropy(logits[5:], MEMORY_Y)
    assert torch.allclose(loss, (stream_term + memory_term) / 2)
    assert (logits.grad[5:].abs() > 1e-5).all()  # every class of a memory row moves
    assert torch.equal(logits.grad[:5, [0, 1, 4, 5]], torch.zeros(5, 4))


def test_mixed_partners_classes_count_as_present():
    logits = leaf_logits(5, seed=2)
    y_mix = torch.tensor([4, 4, 2, 3, 2])
    batch = MixedBatch(torch.zeros(5, 1), STREAM_Y, y_mix, 0.7)
    asymmetric_cross_entropy(logits, batch, slice(0, 5), slice(5, None)).backward()
    assert torch.equal(logits.grad[:, [0, 1, 5]], torch.zeros(5, 3))
    assert (logits.grad[:, 4].abs() > 1e-5).all()


def test_the_mode_reads_the_row_roles_from_the_batch(tmp_path):
    """Stream rows first (per-step replay), or shuffled in by memory_flags (replay=concat):
    the same rows give the same loss."""
    trainer = build_trainer(tmp_path, ["mode=er_ace", "exp=disjoint", "mem_size=20"])
    method, model = trainer.method, trainer.model
    model.grow(6)
    model.eval()  # rows must not interact through BatchNorm for the comparison
    y = torch.cat([STREAM_Y, MEMORY_Y])
    x = torch.randn(8, *trainer.context.inputs(torch.tensor([0])).shape[1:])
    ordered = TrainBatch(x, y, None, 1.0, indices=torch.arange(8), n_stream=5)
    order = torch.tensor([5, 0, 1, 6, 2, 3, 7, 4])
    flags = order >= 5
    shuffled = TrainBatch(x[order], y[order], None, 1.0, indices=order, memory_flags=flags)
    with torch.no_grad():
        loss, _ = method.loss(ordered)
        assert torch.allclose(loss, method.loss(shuffled)[0])
        logits = model(x)
        expected = asymmetric_cross_entropy(logits, ordered, slice(0, 5), slice(5, None))
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, F.cross_entropy(logits, y))  # the mask matters here
