"""SI and MAS: importances from the path integral and from the output norm's gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rainbow_runner.methods.functional import output_norm_importance, path_integral_importance
from tests.methods.test_methods_common import build_trainer

SETTINGS = ["exp=disjoint", "n_epoch=1", "mem_size=50"]


def test_path_integral_importance_is_the_damped_positive_path():
    path = torch.tensor([0.1, -0.3, 0.0, 0.02])
    change = torch.tensor([0.1, 0.2, 0.5, 0.0])
    importance = path_integral_importance(path, change, damping=0.01)
    expected = [0.1 / 0.02, 0.0, 0.0, 0.02 / 0.01]  # uphill (ω < 0) and unmoved-by-loss: 0
    assert importance.tolist() == pytest.approx(expected)


def test_output_norm_importance_is_the_mean_absolute_gradient_and_zero_for_unused_weights():
    torch.manual_seed(0)
    model = nn.ModuleDict({"used": nn.Linear(3, 2), "unused": nn.Linear(3, 2)})
    model.forward = lambda x: model["used"](x)
    x = torch.randn(6, 3)
    names = ["used.weight", "used.bias", "unused.weight"]
    importance = output_norm_importance(model, [x[:4], x[4:]], names)
    expected = torch.zeros(2, 3)
    for batch in (x[:4], x[4:]):
        model.zero_grad()
        model(batch).norm(dim=1).mean().backward()
        expected += model["used"].weight.grad.abs() * len(batch)
    assert torch.allclose(importance["used.weight"], expected / 6)
    assert (importance["used.weight"] > 0).all()
    assert (importance["unused.weight"] == 0).all()


def test_si_importance_follows_the_path_and_is_zero_without_gradient(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=si", "mode.clip_to=100.0", *SETTINGS])
    method = trainer.method
    method.before_task(0)
    (moved, param), (still, other) = list(method.penalized.items())[:2]
    with torch.no_grad():  # two steps on `moved`: Σ −g·δ = 1·0.1 + 2·0.05 = 0.2
        for gradient, step in ((1.0, -0.1), (2.0, -0.05)):
            param.grad = torch.full_like(param, gradient)
            other.grad = None  # never gets a gradient, yet moves (as weight decay would)
            param.add_(step)
            other.add_(0.3)
            method.after_step()
    method.after_task(0)
    change = (-0.15) ** 2  # the task's whole change Δ
    assert method.importance[moved] == pytest.approx(torch.full_like(param, 0.2 / (change + 1e-7)))
    assert (method.importance[still] == 0).all()
    assert all((value >= 0).all() for value in method.importance.values())


def test_si_importance_after_a_task_is_non_negative_and_clipped(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=si", *SETTINGS])
    method = trainer.method
    trainer.train_task(0, trainer.split.train_tasks[0])
    values = torch.cat([value.flatten() for value in method.importance.values()])
    assert (values >= 0).all() and (values <= 1e-3).all() and (values > 0).any()
    assert set(method.anchors) == set(method.penalized)
    trainer.train_task(1, trainer.split.train_tasks[1])  # the penalty's gradient is taken out
    assert (torch.cat([value.flatten() for value in method.importance.values()]) >= 0).all()


def test_mas_importance_is_an_average_of_the_tasks_output_norm_gradients(tmp_path):
    trainer = build_trainer(
        tmp_path, ["mode=mas", "mode.alpha=0.25", "mode.lambda_reg=2.0", *SETTINGS]
    )
    method = trainer.method
    trainer.train_task(0, trainer.split.train_tasks[0])
    first = {name: value.clone() for name, value in method.importance.items()}
    assert all((value >= 0).all() for value in first.values())
    tasks = trainer.split.train_tasks
    current = output_norm_importance(
        trainer.model, method.input_batches(tasks[0]), list(method.penalized)
    )
    for name, value in first.items():  # Ω starts at 0: (1 − alpha) of the first task's
        assert torch.allclose(value, 0.75 * current[name])
    trainer.train_task(1, tasks[1])
    current = output_norm_importance(
        trainer.model, method.input_batches(tasks[1]), list(method.penalized)
    )
    for name, value in method.importance.items():
        assert torch.allclose(value, 0.25 * first[name] + 0.75 * current[name], atol=1e-7)
    with torch.no_grad():  # FACIL's penalty λ/2·Σ Ω (θ − θ*)² (the paper's has no ½)
        for param in method.penalized.values():
            param.add_(0.01)
    expected = sum((value * 0.01**2).sum() for value in method.importance.values())
    assert float(method.penalty()) == pytest.approx(float(expected), rel=1e-4)
