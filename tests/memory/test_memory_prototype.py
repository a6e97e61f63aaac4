"""mem_manage=prototype: iCaRL herding, batched over classes."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import rainbow_runner.memory.herding as herding_module
from rainbow_runner.memory.base import SelectionContext
from rainbow_runner.memory.herding import herding_selection
from rainbow_runner.memory.prototype import PrototypeMemory
from rainbow_runner.runner.models import mlp


def reference_herding(features: torch.Tensor, n: int) -> list[int]:
    """iCaRL's herding for one class, one candidate at a time (the definition)."""
    features = F.normalize(features, dim=1)
    mean, chosen, total = features.mean(0), [], torch.zeros(features.shape[1])
    for k in range(1, min(n, len(features)) + 1):
        distance = ((mean - (total + features) / k) ** 2).sum(1)
        distance[chosen] = float("inf")
        best = int(distance.argmin())
        chosen.append(best)
        total += features[best]
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_herding_matches_the_one_class_definition(seed):
    torch.manual_seed(seed)
    labels = torch.randint(0, 4, (120,))
    features = torch.randn(120, 5) + labels[:, None].float()
    positions = herding_selection(features, labels, n_per_class=7)
    for label in range(4):
        members = torch.nonzero(labels == label).flatten()
        expected = members[reference_herding(features[members], 7)]
        picked = positions[labels[positions] == label]
        assert picked.tolist() == expected.tolist()


def test_small_classes_give_all_their_samples():
    labels = torch.tensor([0] * 10 + [1] * 3)
    positions = herding_selection(torch.randn(13, 4), labels, n_per_class=5)
    assert torch.bincount(labels[positions]).tolist() == [5, 3]
    assert len(set(positions.tolist())) == 8


def test_herded_exemplars_track_the_class_mean_better_than_random_ones():
    torch.manual_seed(0)
    features = torch.randn(400, 16)
    labels = torch.zeros(400, dtype=torch.long)
    unit = F.normalize(features, dim=1)
    herded = herding_selection(features, labels, n_per_class=10)
    error = (unit[herded].mean(0) - unit.mean(0)).norm()
    random_errors = [
        (unit[torch.randperm(400)[:10]].mean(0) - unit.mean(0)).norm() for _ in range(50)
    ]
    assert error < min(random_errors)


def test_blocks_of_classes_give_the_same_choice(monkeypatch):
    torch.manual_seed(3)
    labels = torch.randint(0, 6, (90,))
    features = torch.randn(90, 8)
    whole = herding_selection(features, labels, 4)
    monkeypatch.setattr(herding_module, "_BLOCK_ELEMENTS", 1)  # one class per block
    assert herding_selection(features, labels, 4).tolist() == whole.tolist()


def test_memory_keeps_capacity_over_exposed_classes_per_class():
    torch.manual_seed(0)
    images = torch.randint(0, 255, (300, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(300) % 3
    model = mlp((1, 8, 8), n_classes=4)
    context = SelectionContext(
        model=model,
        fetch_images=lambda idx: images[idx],
        normalize=lambda x: x.float() / 255,
        n_exposed=4,
        task_id=0,
        device=torch.device("cpu"),
        batchsize=64,
    )
    memory = PrototypeMemory(capacity=40, seed=0)
    memory.end_task(torch.arange(300), labels, context, streamed=False)
    assert memory.class_counts(4).tolist() == [10, 10, 10, 0]  # 40 // 4 exposed classes
    assert model.training  # the memory restores the model's mode
