"""BiC: per-group correction, identity at the start, fitted in stage 2 on held-out memory."""

from __future__ import annotations

import math

import torch

from rainbow_runner.methods.bic import apply_bias_correction, class_holdout
from tests.methods.test_methods_common import build_trainer


def test_correction_applies_each_groups_alpha_beta_to_its_classes():
    logits = torch.ones(1, 6)
    alpha, beta = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([0.0, 1.0, -1.0])
    corrected = apply_bias_correction(logits, alpha, beta, classes_per_task=2)
    assert corrected.tolist() == [[1.0, 1.0, 3.0, 3.0, -0.5, -0.5]]
    # a disjoint head with 4 of 6 classes exposed reads only the first two groups
    assert apply_bias_correction(torch.ones(1, 4), alpha, beta, 2).tolist() == [[1, 1, 3, 3]]


def test_holdout_takes_a_fraction_of_each_class_preferring_earlier_holdout():
    labels = torch.tensor([0] * 50 + [1] * 20 + [2] * 5)
    prefer = torch.zeros(len(labels), dtype=torch.bool)
    prefer[[3, 7, 60]] = True
    mask = class_holdout(labels, 0.1, torch.Generator().manual_seed(0), prefer)
    assert torch.bincount(labels[mask], minlength=3).tolist() == [5, 2, 0]  # round(0.5) = 0
    assert mask[[3, 7, 60]].all()


def test_correction_starts_as_identity_and_stage_two_changes_only_the_new_group(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=bic", "exp=disjoint", "n_epoch=1", "mem_size=100"])
    method = trainer.method
    trainer.train_task(0, trainer.split.train_tasks[0])
    assert method.alpha.tolist() == [1.0] * 5 and method.beta.tolist() == [0.0] * 5
    assert len(method.holdout) == 10  # 10% of 2 classes x 50
    assert not torch.isin(method.replay_pool(), method.holdout).any()
    stream_steps = math.ceil(len(trainer.split.train_tasks[0]) / 16)
    memory_epoch = math.ceil(90 / 16)  # the memory epoch trains without the held-out ones
    assert trainer.steps.global_step == stream_steps + memory_epoch
    trainer.train_task(1, trainer.split.train_tasks[1])
    assert method.alpha[1].item() != 1.0 and method.beta[1].item() != 0.0
    assert method.alpha[[0, 2, 3, 4]].tolist() == [1.0] * 4
    assert method.beta[[0, 2, 3, 4]].tolist() == [0.0] * 4
    x = trainer.augmenter.normalize(trainer.test_x[:8])
    raw = trainer.model(x)
    expected = torch.cat([raw[:, :2], raw[:, 2:] * method.alpha[1] + method.beta[1]], dim=1)
    assert torch.allclose(method.predict(x), expected, atol=1e-6)


def test_blurry_runs_correct_the_group_of_the_task_not_the_last_columns(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=bic", "exp=blurry10", "n_epoch=1", "mem_size=100"])
    method = trainer.method
    for task_id in range(2):
        trainer.train_task(task_id, trainer.split.train_tasks[task_id])
    assert method.alpha[1].item() != 1.0  # group 1 = labels 2, 3 of a 10-class head
    assert method.alpha[[0, 2, 3, 4]].tolist() == [1.0] * 4
    assert method.context.n_old == 2 and method.context.n_seen == 4
