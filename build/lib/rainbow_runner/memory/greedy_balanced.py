"""mem_manage=gdumb: GDumb's greedy class-balanced sampler (Prabhu et al., ECCV 2020)."""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.memory.base import MEMORIES, Memory


@MEMORIES.register("gdumb")
class GreedyBalancedMemory(Memory):
    """Store while there is room; once full, a sample whose class holds fewer than
    capacity // (classes seen) evicts a random sample of the largest class, else it is dropped.

    The rule is sequential by definition (each decision depends on the counts the previous
    ones left), so observe() walks the batch with O(1) work per sample on plain integers; the
    class-count argmax runs only on evictions.
    """

    streaming = True

    def __init__(self, capacity: int, seed: int) -> None:
        super().__init__(capacity, seed)
        self.seen_classes = np.zeros(0, dtype=bool)

    def observe(self, indices: torch.Tensor, labels: torch.Tensor, n_exposed: int) -> None:
        if self.capacity == 0 or len(indices) == 0 or self._drops_all(labels):
            return
        n_classes = max(int(labels.max()) + 1, len(self.seen_classes), n_exposed)
        seen = np.zeros(n_classes, dtype=bool)
        seen[: len(self.seen_classes)] = self.seen_classes
        stored_index, stored_label = self.indices.tolist(), self.labels.tolist()
        members: list[list[int]] = [[] for _ in range(n_classes)]
        for slot, label in enumerate(stored_label):
            members[label].append(slot)
        counts = np.bincount(np.asarray(stored_label, dtype=np.int64), minlength=n_classes)
        n_seen = int(seen.sum())
        for index, label in zip(indices.tolist(), labels.tolist(), strict=True):
            if not seen[label]:
                seen[label] = True
                n_seen += 1
            if len(stored_index) < self.capacity:
                members[label].append(len(stored_index))
                stored_index.append(index)
                stored_label.append(label)
                counts[label] += 1
                continue
            if counts[label] >= self.capacity // n_seen:
                continue
            largest = np.flatnonzero(counts == counts.max())
            victim_class = int(largest[self.rng.integers(len(largest))])
            victims = members[victim_class]
            position = int(self.rng.integers(len(victims)))
            slot = victims[position]
            victims[position] = victims[-1]
            victims.pop()
            counts[victim_class] -= 1
            stored_index[slot], stored_label[slot] = index, label
            members[label].append(slot)
            counts[label] += 1
        self.seen_classes = seen
        self.indices = torch.tensor(stored_index, dtype=torch.long)
        self.labels = torch.tensor(stored_label, dtype=torch.long)

    def _drops_all(self, labels: torch.Tensor) -> bool:
        """Full, and every incoming class already seen and at its quota: nothing changes.

        The common case once the memory has filled up, checked in C instead of rebuilding
        the per-class slot lists in Python for a batch that would all be dropped.
        """
        n_seen = int(self.seen_classes.sum())
        if len(self) < self.capacity or n_seen == 0:
            return False
        incoming = labels.numpy()
        if int(incoming.max()) >= len(self.seen_classes) or not self.seen_classes[incoming].all():
            return False
        counts = np.bincount(self.labels.numpy(), minlength=len(self.seen_classes))
        return bool((counts[incoming] >= self.capacity // n_seen).all())

    def extra_state(self) -> dict[str, np.ndarray | int | float]:
        return {"seen_classes": self.seen_classes.copy()}

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        self.seen_classes = np.asarray(state["seen_classes"], dtype=bool)
