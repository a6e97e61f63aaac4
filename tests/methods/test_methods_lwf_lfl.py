"""LwF and LFL: a term towards the model as it was at the end of the previous task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rainbow_runner.datasets.augment.pipeline import MixedBatch
from rainbow_runner.methods.functional import kl_distillation
from tests.methods.test_methods_common import build_trainer

SETTINGS = ["exp=disjoint", "n_epoch=1", "mem_size=50"]


def first_task_then_batch(tmp_path, overrides: list[str]):
    """A trainer after its first task (the teacher exists) and a batch of the second task."""
    trainer = build_trainer(tmp_path, [*overrides, *SETTINGS])
    trainer.train_task(0, trainer.split.train_tasks[0])
    trainer.task_id = trainer.context.task_id = 1
    trainer.n_exposed = trainer.context.n_exposed = trainer.split.exposed[1]
    trainer.begin_task()
    indices = trainer.split.train_tasks[1][:16]
    x = trainer.augmenter.normalize(trainer.fetch_images(indices))
    return trainer, MixedBatch(x, trainer.steps.train_labels[indices])


def test_kl_distillation_is_zero_for_equal_logits_and_positive_otherwise():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
    assert kl_distillation(logits, logits, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_distillation(logits, logits.flip(1), 2.0).item() > 0.1


def test_lwf_loss_is_cross_entropy_when_alpha_is_zero(tmp_path):
    trainer, batch = first_task_then_batch(tmp_path, ["mode=lwf", "mode.alpha=0"])
    loss, logits = trainer.method.loss(batch)
    assert trainer.method.teacher is not None
    assert loss.item() == nn.functional.cross_entropy(logits, batch.y).item()


def test_lwf_adds_alpha_times_the_distillation_on_the_old_classes(tmp_path):
    trainer, batch = first_task_then_batch(tmp_path, ["mode=lwf", "mode.alpha=[0.5,2]"])
    method = trainer.method
    loss, logits = method.loss(batch)
    old_logits = method.teacher(batch.x)
    assert old_logits.shape[1] == 2 and logits.shape[1] == 4  # the teacher knew classes 0, 1
    distill = kl_distillation(old_logits, logits[:, :2], 2.0)
    cross_entropy = nn.functional.cross_entropy(logits, batch.y)
    assert distill.item() > 0  # the head grew and BatchNorm sees a new task's batch
    assert loss.item() == pytest.approx((cross_entropy + 2.0 * distill).item(), rel=1e-6)


def test_a_bad_alpha_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"mode.alpha=\[1, -2\]"):
        build_trainer(tmp_path, ["mode=lwf", "mode.alpha=[1,-2]", *SETTINGS])


def test_lfl_penalty_is_zero_for_the_unchanged_model_and_positive_after_a_step(tmp_path):
    trainer, batch = first_task_then_batch(tmp_path, ["mode=lfl"])
    method = trainer.method
    features = trainer.model.features(batch.x)
    assert method.feature_penalty(batch.x, features).item() == 0.0
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.05)
    nn.functional.cross_entropy(trainer.model(batch.x), batch.y).backward()
    optimizer.step()
    features = trainer.model.features(batch.x)
    penalty = method.feature_penalty(batch.x, features)
    assert penalty.item() > 0
    loss, logits = method.loss(batch)
    cross_entropy = nn.functional.cross_entropy(logits, batch.y)
    assert loss.item() == pytest.approx((cross_entropy + 1.0 * penalty).item(), rel=1e-5)
