"""mem_manage=reservoir: classic reservoir sampling over the whole stream, across tasks."""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.memory.base import MEMORIES, Memory


@MEMORIES.register("reservoir")
class ReservoirMemory(Memory):
    """Every stream sample ends up in memory with probability capacity / samples seen.

    With class_balanced=true it is class-balanced reservoir sampling (CBRS, Chrysakis & Moens
    2020): a full memory evicts a random sample of its largest class unless the incoming
    sample's class is itself among the largest, in which case plain reservoir applies in-class.
    """

    streaming = True

    def __init__(self, capacity: int, seed: int, class_balanced: bool = False) -> None:
        super().__init__(capacity, seed)
        self.class_balanced = class_balanced
        self.n_seen = 0
        self.n_seen_per_class: dict[int, int] = {}

    def observe(self, indices: torch.Tensor, labels: torch.Tensor, n_exposed: int) -> None:
        if self.capacity == 0:
            return
        if self.class_balanced:
            self._observe_balanced(indices, labels)
            return
        n_free = max(0, self.capacity - len(self))
        take = min(n_free, len(indices))
        if take > 0:
            self.indices = torch.cat([self.indices, indices[:take]])
            self.labels = torch.cat([self.labels, labels[:take]])
            self.n_seen += take
        rest = len(indices) - take
        if rest == 0:
            return
        counters = self.n_seen + np.arange(1, rest + 1)
        slots = (self.rng.random(rest) * counters).astype(np.int64)
        kept = np.flatnonzero(slots < self.capacity)[::-1]
        self.n_seen += rest
        if len(kept) == 0:  # the usual case once the stream is long: nothing replaced
            return
        # A slot drawn twice keeps the later sample, as one-at-a-time replacement would.
        slot, first_from_end = np.unique(slots[kept], return_index=True)
        source = torch.from_numpy(take + kept[first_from_end])
        slot = torch.from_numpy(slot)
        self.indices[slot] = indices.index_select(0, source)
        self.labels[slot] = labels.index_select(0, source)

    def _observe_balanced(self, indices: torch.Tensor, labels: torch.Tensor) -> None:
        for index, label in zip(indices.tolist(), labels.tolist(), strict=True):
            self.n_seen += 1
            seen = self.n_seen_per_class.get(label, 0) + 1
            self.n_seen_per_class[label] = seen
            if len(self) < self.capacity:
                self.indices = torch.cat([self.indices, torch.tensor([index])])
                self.labels = torch.cat([self.labels, torch.tensor([label])])
                continue
            counts = torch.bincount(self.labels)
            largest = counts.max()
            if label >= len(counts) or counts[label] < largest:
                victims = torch.nonzero(counts[self.labels] == largest).flatten()
                slot = victims[int(self.rng.integers(len(victims)))]
            else:
                if self.rng.random() * seen >= counts[label]:
                    continue
                own = torch.nonzero(self.labels == label).flatten()
                slot = own[int(self.rng.integers(len(own)))]
            self.indices[slot], self.labels[slot] = index, label

    def extra_state(self) -> dict[str, np.ndarray | int | float]:
        classes = sorted(self.n_seen_per_class)
        return {
            "n_seen": self.n_seen,
            "per_class": np.array([[c, self.n_seen_per_class[c]] for c in classes], dtype=np.int64),
        }

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        self.n_seen = int(state["n_seen"])
        per_class = np.asarray(state["per_class"]).reshape(-1, 2)
        self.n_seen_per_class = {int(c): int(n) for c, n in per_class}
