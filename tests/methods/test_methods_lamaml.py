"""La-MAML: learned rates that change and are applied clipped at zero, the sync variant, and
the settings it refuses."""

from __future__ import annotations

import pytest
import torch

from rainbow_runner.methods.base import TrainBatch
from tests.methods.test_methods_common import build_trainer

OVERRIDES = ["mode=lamaml", "exp=disjoint", "stream=online", "n_epoch=1", "mem_size=60"]


def first_task_step(tmp_path, overrides: list[str]):
    """A trainer whose first task has begun, and one stream batch of it."""
    trainer = build_trainer(tmp_path, [*OVERRIDES, *overrides])
    trainer.context.task_id, trainer.context.n_exposed = 0, trainer.split.exposed[0]
    trainer.n_exposed = trainer.split.exposed[0]
    trainer.begin_task()
    indices = trainer.split.train_tasks[0][:16]
    context = trainer.context
    x, y = context.inputs(indices), context.labels(indices)
    batch = TrainBatch(x, y, indices=indices, n_stream=16)
    trainer.model.train()
    return trainer, batch


def test_the_rates_change_and_the_update_applies_them_clipped_at_zero(tmp_path):
    # a large lr_alpha drives some rates below zero in one step
    trainer, batch = first_task_step(tmp_path, ["mode.lr_alpha=200.0"])
    method, model = trainer.method, trainer.model
    assert trainer.context.optimizer is None  # the learned rates step the weights
    alphas = {name: a.detach().clone() for name, a in method.alphas.items()}
    assert all((a == 0.1).all() for a in alphas.values())  # alpha_init
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    method.update(batch)
    changed = [
        name for name, a in method.alphas.items() if not torch.equal(a.detach(), alphas[name])
    ]
    assert len(changed) == len(alphas)
    negative = {name: a.detach() < 0 for name, a in method.alphas.items()}
    assert sum(int(mask.sum()) for mask in negative.values()) > 0
    assert all((rates >= 0).all() for rates in method.learning_rates().values())
    for name, param in model.named_parameters():
        moved = param.detach() != weights[name]
        assert not (moved & negative[name]).any(), name  # a negative rate moves nothing
    assert any((p.detach() != weights[n]).any() for n, p in model.named_parameters())


def test_sync_update_steps_the_weights_with_the_run_s_optimizer(tmp_path):
    trainer, batch = first_task_step(tmp_path, ["mode.sync_update=true"])
    optimizer = trainer.context.optimizer
    assert optimizer is not None
    before = trainer.model.head.weight.detach().clone()
    alphas = trainer.method.alphas["head.weight"].detach().clone()
    trainer.method.update(batch)
    assert not torch.equal(trainer.model.head.weight.detach(), before)
    assert not torch.equal(trainer.method.alphas["head.weight"].detach(), alphas)
    assert all(optimizer.state[p] for p in trainer.model.parameters())  # momentum buffers


@pytest.mark.parametrize("override", ["mode.n_inner_updates=0", "mode.alpha_init=-0.1"])
def test_impossible_settings_are_refused_before_training(tmp_path, override):
    with pytest.raises(ValueError, match="La-MAML needs at least one inner update"):
        build_trainer(tmp_path, ["mode=lamaml", override])
