"""mem_manage=gss: GSS-greedy's scores, replacement rule and the manager on a small model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rainbow_runner.memory import MEMORIES, SelectionContext
from rainbow_runner.memory.gss import (
    gradient_scores,
    greedy_replacements,
    mean_gradient,
    per_sample_gradients,
)


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(4, 6),
        torch.nn.ReLU(inplace=True),
        torch.nn.Linear(6, 3),
    )


def test_per_sample_gradients_equal_one_backward_per_sample():
    model = small_model()
    x, y = torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    together = per_sample_gradients(model, x, y)
    for row in range(5):
        model.zero_grad()
        F.cross_entropy(model(x[row : row + 1]), y[row : row + 1]).backward()
        alone = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert torch.allclose(together[row], alone, atol=1e-6)


def test_the_batch_gradient_is_the_mean_of_the_per_sample_ones_and_leaves_grad_alone():
    model = small_model()
    x, y = torch.randn(7, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 2])
    batch = mean_gradient(model, x, y)
    assert torch.allclose(batch, per_sample_gradients(model, x, y).mean(0), atol=1e-6)
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_scores_are_max_cosine_plus_one():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    incoming = torch.tensor([[2.0, 0.0], [-1.0, -1.0], [1.0, 1.0]])
    scores = gradient_scores(incoming, memory)
    assert scores.tolist() == pytest.approx([2.0, 1 - 2**-0.5, 1 + 2**-0.5])
    assert gradient_scores(incoming, memory[:0]).tolist() == pytest.approx([0.1] * 3)


def test_a_full_memory_replaces_in_proportion_to_the_stored_scores():
    # Slot 0 has all the score mass: it is always drawn, and a new score of 0 always wins.
    stored = np.array([2.0, 0.0, 0.0])
    replaced = greedy_replacements(stored, np.array([0.0, 1.0]), np.random.default_rng(0))
    assert replaced == [(0, 0)]  # then no mass is left to draw from
    assert stored.tolist() == [0.0, 0.0, 0.0]
    counts = np.zeros(2)
    for seed in range(400):  # P(slot 0) = 3/4; P(replace | slot) = C / (C + 1)
        stored = np.array([3.0, 1.0])
        for slot, _ in greedy_replacements(stored, np.array([1.0]), np.random.default_rng(seed)):
            counts[slot] += 1
    assert counts / 400 == pytest.approx([0.75 * 0.75, 0.25 * 0.5], abs=0.06)


def test_the_manager_keeps_capacity_and_one_score_per_sample():
    model = small_model()
    images = torch.randint(0, 255, (300, 1, 2, 2), dtype=torch.uint8)
    labels = torch.arange(300) % 3
    memory = MEMORIES.get("gss")(capacity=20, seed=0, n_sub=5)
    with pytest.raises(RuntimeError, match="bind_context"):
        memory.add(torch.arange(4), labels[:4], 3)
    memory.bind_context(
        lambda: SelectionContext(
            model=model,
            fetch_images=lambda i: images[i],
            normalize=lambda x: x.float() / 255,
            n_exposed=3,
            task_id=0,
            device=torch.device("cpu"),
        )
    )
    for start in range(0, 300, 10):
        memory.add(torch.arange(start, start + 10), labels[start : start + 10], 3)
        assert len(memory) <= 20 and len(memory.scores) == len(memory)
    assert len(torch.unique(memory.indices)) == 20
    assert torch.equal(memory.labels, labels[memory.indices])
    assert ((memory.scores >= 0) & (memory.scores <= 2)).all()
    assert model.training  # scoring restores the model's mode
