"""MER: Reptile's interpolation, an inner batch per memory draw, and the two limits that pin the
update down: beta = gamma = 1 with one inner batch is plain SGD, beta = 0 changes nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rainbow_runner.methods.gradients import parameter_snapshot, reptile_interpolate
from rainbow_runner.runner.options import check_method_and_memory_options
from rainbow_runner.runner.steps import PlannedStep
from tests.conftest import compose_config
from tests.methods.test_methods_common import build_trainer

# No random crop or flip: two trainers then see the same batch (a fresh optimizer: same step).
PLAIN = ["exp=disjoint", "mem_size=40", "crop_padding=0", "flip=false", "mem_batchsize=8"]


def test_default_memory_is_a_reservoir_and_knobs_are_arguments():
    cfg = compose_config(["mode=mer"])
    assert cfg.mem_manage.name == "reservoir" and cfg.mode.batches_per_example == 5
    check_method_and_memory_options(cfg)


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_reptile_interpolates_from_the_snapshot(weight):
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    parameters = list(layer.parameters())
    before = parameter_snapshot(parameters)
    with torch.no_grad():
        for param in parameters:
            param.add_(torch.randn_like(param))
    after = parameter_snapshot(parameters)
    reptile_interpolate(parameters, before, weight)
    for param, start, end in zip(parameters, before, after, strict=True):
        assert torch.allclose(param, start + weight * (end - start))
        if weight in (0.0, 1.0):  # exact at both ends
            assert torch.equal(param, start if weight == 0.0 else end)


def trainer_with_memory(tmp_path, overrides):
    """Task 0 begun, its first 40 samples in the memory (no training: the weights are the
    seed's)."""
    trainer = build_trainer(tmp_path, [*PLAIN, *overrides])
    trainer.begin_task()
    stored = trainer.split.train_tasks[0][-40:]
    trainer.memory.add(stored, trainer.train_labels_cpu[stored], trainer.n_exposed)
    return trainer


def batch_of(trainer, stream, replayed):
    return trainer.steps.batches_ahead([PlannedStep.of(stream, replayed)])[0]


def test_each_inner_batch_is_its_own_memory_draw_then_the_stream_rows(tmp_path):
    trainer = trainer_with_memory(tmp_path, ["mode=mer", "mode.batches_per_example=3"])
    stream = trainer.split.train_tasks[0][:16]
    replayed = trainer.method.replay(stream)
    assert len(replayed) == 3 * 8
    inner = trainer.method.inner_batches(batch_of(trainer, stream, replayed))
    rows = torch.arange(16)
    for n, positions in enumerate(inner):
        assert torch.equal(positions, torch.cat([16 + 8 * n + torch.arange(8), rows]))


def test_beta_and_gamma_one_with_one_inner_batch_is_a_plain_sgd_step(tmp_path):
    """Two fresh trainers (same seed: same weights), one step on the same rows."""
    mer_options = ["mode.batches_per_example=1", "mode.beta=1.0", "mode.gamma=1.0"]
    mer = build_trainer(tmp_path / "mer", [*PLAIN, "mode=mer", *mer_options])
    er = build_trainer(tmp_path / "er", [*PLAIN, "mode=er"])
    task = er.split.train_tasks[0]
    stream, replayed = task[:16], task[16:24]  # rows standing in for memory samples
    for trainer in (mer, er):
        trainer.begin_task()
        trainer.model.train()
        trainer.method.update(batch_of(trainer, stream, replayed))
    for (name, param), other in zip(
        mer.model.named_parameters(), er.model.parameters(), strict=True
    ):
        assert torch.allclose(param, other, atol=1e-6), name
    assert not torch.equal(param, build_trainer(tmp_path / "init", PLAIN).model.head.bias)


@pytest.mark.parametrize("per_sample", ["false", "true"])
def test_beta_zero_leaves_the_weights_unchanged(tmp_path, per_sample):
    options = ["mode=mer", "mode.beta=0.0", "mode.gamma=0.7", f"mode.per_sample_sgd={per_sample}"]
    trainer = trainer_with_memory(tmp_path, options)
    stream = trainer.split.train_tasks[0][:4]
    before = parameter_snapshot(list(trainer.model.parameters()))
    trainer.model.train()
    loss, logits = trainer.method.update(batch_of(trainer, stream, trainer.method.replay(stream)))
    assert torch.isfinite(loss) and logits.shape == (4 + 5 * 8, trainer.n_exposed)
    for param, start in zip(trainer.model.parameters(), before, strict=True):
        assert torch.equal(param, start)
