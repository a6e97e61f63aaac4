"""mem_manage=random: a uniformly random subset of memory plus the incoming samples."""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.memory.base import MEMORIES, Memory, SelectionContext, balanced_quota


def random_subset(
    labels: torch.Tensor, capacity: int, rng: np.random.Generator, class_balanced: bool
) -> torch.Tensor:
    """Positions of a random subset of size <= capacity, optionally equal per class."""
    n = len(labels)
    if n <= capacity:
        return torch.arange(n)
    if not class_balanced:
        return torch.from_numpy(np.sort(rng.choice(n, capacity, replace=False)))
    labels_np = labels.numpy()
    quota = balanced_quota(np.bincount(labels_np), capacity)
    # A random rank within each class: shuffle, then stable-sort by class.
    shuffled = rng.permutation(n)
    by_class = shuffled[np.argsort(labels_np[shuffled], kind="stable")]
    sorted_labels = labels_np[by_class]
    first_of_class = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(n) - first_of_class
    keep = by_class[rank < quota[sorted_labels]]
    return torch.from_numpy(np.sort(keep))


@MEMORIES.register("random")
class RandomMemory(Memory):
    """Keeps a random subset of (memory + incoming batch); class-balanced on request."""

    streaming = True

    def observe(self, indices: torch.Tensor, labels: torch.Tensor, n_exposed: int) -> None:
        if self.capacity == 0:
            return
        pool = torch.cat([self.indices, indices])
        pool_labels = torch.cat([self.labels, labels])
        keep = random_subset(pool_labels, self.capacity, self.rng, self.class_balanced)
        self.indices, self.labels = pool[keep], pool_labels[keep]

    def select(
        self, indices: torch.Tensor, labels: torch.Tensor, context: SelectionContext
    ) -> torch.Tensor:
        return random_subset(labels, self.capacity, self.rng, self.class_balanced)
