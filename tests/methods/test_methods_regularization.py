"""EWC and RWalk: the quadratic penalty, the Fisher, the path-integral score, once per step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rainbow_runner.datasets.augment.pipeline import MixedBatch
from rainbow_runner.methods.functional import (
    diagonal_fisher,
    penalized_parameters,
    quadratic_penalty,
)
from rainbow_runner.methods.rwalk import normalized
from rainbow_runner.runner.models import mlp
from tests.methods.test_methods_common import build_trainer


def test_penalty_is_zero_at_the_anchor_and_grows_with_fisher_weighted_distance():
    anchor = {"w": torch.tensor([1.0, -2.0, 0.5])}
    fisher = {"w": torch.tensor([0.5, 2.0, 0.0])}
    assert quadratic_penalty({"w": anchor["w"].clone()}, anchor, fisher).item() == 0.0
    step = torch.tensor([1.0, 1.0, 1.0])
    near = quadratic_penalty({"w": anchor["w"] + 0.1 * step}, anchor, fisher)
    far = quadratic_penalty({"w": anchor["w"] + 0.2 * step}, anchor, fisher)
    assert near.item() == pytest.approx(2.5 * 0.01)  # (0.5 + 2.0 + 0) * 0.1^2
    assert far.item() == pytest.approx(4 * near.item())
    heavier = quadratic_penalty({"w": anchor["w"] + 0.1 * step}, anchor, {"w": 2 * fisher["w"]})
    assert heavier.item() == pytest.approx(2 * near.item())
    unimportant = quadratic_penalty({"w": anchor["w"] + torch.tensor([0, 0, 5.0])}, anchor, fisher)
    assert unimportant.item() == 0.0  # moving a zero-Fisher weight costs nothing


def test_penalty_reads_the_anchored_slice_of_a_grown_parameter():
    anchor = {"w": torch.zeros(2, 3)}
    grown = torch.zeros(4, 3)
    grown[2:] = 7.0  # new rows: not anchored, not penalised
    grown[0, 0] = 1.0
    assert quadratic_penalty({"w": grown}, anchor, {"w": torch.ones(2, 3)}).item() == 1.0


def test_the_head_is_never_penalised():
    names = penalized_parameters(mlp((1, 8, 8), n_classes=4))
    assert names and not any(name.startswith("head.") for name in names)


def test_fisher_is_the_mean_squared_gradient_at_the_predicted_label():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    x = torch.randn(6, 3)
    fisher = diagonal_fisher(model, [x[:2], x[2:]], ["0.weight", "0.bias"])
    expected = torch.zeros(2, 3)
    for batch in (x[:2], x[2:]):
        model.zero_grad()
        logits = model(batch)
        nn.functional.cross_entropy(logits, logits.argmax(1)).backward()
        expected += model[0].weight.grad.pow(2) * len(batch)
    assert torch.allclose(fisher["0.weight"], expected / 6)
    assert set(fisher) == {"0.weight", "0.bias"}


def test_ewc_adds_its_penalty_once_per_step_after_the_first_task(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=ewc", "exp=disjoint", "n_epoch=1", "mem_size=50"])
    method = trainer.method
    trainer.train_task(0, trainer.split.train_tasks[0])
    assert method.anchors and set(method.anchors) == set(penalized_parameters(trainer.model))
    assert all((value >= 0).all() for value in method.importance.values())
    with torch.no_grad():
        for param in penalized_parameters(trainer.model).values():
            param.add_(0.01)
    indices = trainer.split.train_tasks[0][:8]
    x = trainer.augmenter.normalize(trainer.fetch_images(indices))
    batch = MixedBatch(x, trainer.steps.train_labels[indices])
    loss, logits = method.loss(batch)
    cross_entropy = nn.functional.cross_entropy(logits, batch.y)
    params = penalized_parameters(trainer.model)
    penalty = quadratic_penalty(params, method.anchors, method.importance)
    assert penalty.item() > 0
    assert loss.item() == pytest.approx((cross_entropy + 100 / 2 * penalty).item(), rel=1e-5)


def test_ewc_accumulates_the_fisher_with_decay(tmp_path):
    trainer = build_trainer(
        tmp_path, ["mode=ewc", "mode.gamma=0.5", "exp=disjoint", "n_epoch=1", "mem_size=50"]
    )
    method = trainer.method
    trainer.train_task(0, trainer.split.train_tasks[0])
    first = {name: value.clone() for name, value in method.importance.items()}
    trainer.train_task(1, trainer.split.train_tasks[1])
    task_fisher = method.task_fisher(trainer.split.train_tasks[1])  # as after_task had it
    for name, value in method.importance.items():
        assert torch.allclose(value, 0.5 * first[name] + task_fisher[name], atol=1e-7)


def test_rwalk_scores_are_non_negative_and_importances_scaled_to_one(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=rwalk", "exp=disjoint", "n_epoch=1", "mem_size=50"])
    method = trainer.method
    trainer.train_task(0, trainer.split.train_tasks[0])
    assert all((value >= 0).all() for value in method.score.values())
    assert all((value == 0).all() for value in method.task_score.values())  # reset per task
    peak = max(value.max().item() for value in method.importance.values())
    assert 1.0 <= peak <= 2.0 + 1e-6  # normalised Fisher + normalised score
    trainer.train_task(1, trainer.split.train_tasks[1])
    assert any((value > 0).any() for value in method.score.values())


def test_normalized_scales_the_largest_entry_to_one():
    values = normalized({"a": torch.tensor([1.0, 4.0]), "b": torch.tensor([2.0])})
    assert values["a"].tolist() == [0.25, 1.0] and values["b"].tolist() == [0.5]
