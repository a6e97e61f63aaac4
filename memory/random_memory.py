"""mem_manage=random: a uniformly random subset of memory plus the incoming samples."""

from __future__ import annotations

import torch

from rainbow_runner.memory.base import MEMORIES, Memory, SelectionContext
from rainbow_runner.memory.selection import random_subset


@MEMORIES.register("random")
class RandomMemory(Memory):
    """Keeps a random subset of (memory + incoming batch); class-balanced on request."""

    streaming = True

    def __init__(self, capacity: int, seed: int, class_balanced: bool = False) -> None:
        super().__init__(capacity, seed)
        self.class_balanced = class_balanced

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
