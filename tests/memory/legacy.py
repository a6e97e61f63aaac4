"""The memory managers as they were before the composed library (commit aae1a0f), kept as
references: the presets built on memory/parametric.py must choose exactly what these chose."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from rainbow_runner.memory.selection import random_subset


class LegacyRandom:
    """The old RandomMemory.observe: random_subset of memory + incoming."""

    def __init__(self, capacity: int, seed: int, class_balanced: bool = False) -> None:
        self.capacity, self.class_balanced = capacity, class_balanced
        self.rng = np.random.default_rng(seed)
        self.indices = torch.empty(0, dtype=torch.long)
        self.labels = torch.empty(0, dtype=torch.long)

    def observe(self, indices: torch.Tensor, labels: torch.Tensor) -> None:
        pool = torch.cat([self.indices, indices])
        pool_labels = torch.cat([self.labels, labels])
        keep = random_subset(pool_labels, self.capacity, self.rng, self.class_balanced)
        self.indices, self.labels = pool[keep], pool_labels[keep]


# Herding works on (classes, samples, features) blocks; this bounds one block's element count.
_BLOCK_ELEMENTS = 1 << 26


def legacy_herding_selection(
    features: torch.Tensor, labels: torch.Tensor, n_per_class: int
) -> torch.Tensor:
    """Positions of up to n_per_class samples per class, in iCaRL's herding order.

    Each step takes the sample that brings the mean of the chosen (normalised) features closest
    to the class mean; a class with fewer samples keeps all of them. All classes advance
    together, one vectorised step at a time. Positions come back class by class, each class in
    the order herding chose them, on the features' device.
    """
    if n_per_class <= 0 or len(labels) == 0:
        return torch.empty(0, dtype=torch.long, device=features.device)
    features = F.normalize(features.float(), dim=1)
    labels = labels.to(features.device)
    order = torch.argsort(labels, stable=True)
    classes, counts = torch.unique_consecutive(labels[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    longest = int(counts.max())
    per_block = max(1, _BLOCK_ELEMENTS // (longest * features.shape[1]))
    chosen = []
    for first in range(0, len(classes), per_block):
        block = slice(first, first + per_block)
        chosen.append(_herd_block(features, order, starts[block], counts[block], n_per_class))
    return torch.cat(chosen)


def _herd_block(
    features: torch.Tensor,
    order: torch.Tensor,
    starts: torch.Tensor,
    counts: torch.Tensor,
    n_per_class: int,
) -> torch.Tensor:
    """Herding for a block of classes laid out as a zero-padded (classes, samples, dim) tensor."""
    n_classes, longest = len(counts), int(counts.max())
    slot = torch.arange(longest, device=features.device)
    valid = slot[None, :] < counts[:, None]
    source = order[(starts[:, None] + slot[None, :]).clamp(max=len(order) - 1)]
    padded = features[source] * valid[..., None]
    class_mean = padded.sum(1) / counts[:, None]
    running_sum = torch.zeros_like(class_mean)
    taken = ~valid
    steps = min(n_per_class, longest)
    picks = torch.full((n_classes, steps), -1, dtype=torch.long, device=features.device)
    rows = torch.arange(n_classes, device=features.device)
    for step in range(steps):
        # argmin_x ||k*mu - sum - x||^2 = argmin_x ||x||^2 - 2 x.(k*mu - sum); ||x|| = 1 here.
        target = class_mean * (step + 1) - running_sum
        distance = -2.0 * torch.bmm(padded, target[:, :, None]).squeeze(2)
        distance = distance.masked_fill(taken, float("inf"))
        best = distance.argmin(1)
        active = counts > step
        picks[:, step] = torch.where(active, best, -1)
        taken[rows[active], best[active]] = True
        running_sum += padded[rows, best] * active[:, None]
    keep = picks >= 0
    return source[rows[:, None].expand_as(picks)[keep], picks[keep]]
