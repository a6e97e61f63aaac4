"""mem_manage=clib: CLIB's sample-wise importance memory (Koh et al., ICLR 2022).

Each stored sample carries an importance: the expected decrease of the memory's loss that a
training step on it brings. After a step (or every few), the memory's loss is measured on every
stored sample; the mean decrease since the last measurement, over the samples stored at both
times, is credited to the memory samples trained on in between with an EMA:
H_i ← H_i + (1 − ema)·(Δ − mean_{j∈B} H_j) for each distinct i in B, so that the batch's mean
importance tracks the loss decrease it brings. While there is room every sample is stored;
once full, the incoming sample replaces the least important sample of the class with the most
samples (the incoming one counted), as in the authors' code. A new sample starts at the mean
importance of its class's stored samples (of all stored samples if it is its class's first;
0 in an empty memory). The method measures the losses (it has the model) and reports them
through record_training() and measure(); the memory holds only indices and numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.memory.base import MEMORIES, Memory, _positions


def importance_update(
    importance: torch.Tensor, trained_slots: torch.Tensor, loss_decrease: float, rate: float
) -> torch.Tensor:
    """H_i + rate·(Δ − mean of H over the trained slots) for each distinct trained slot i."""
    slots = torch.unique(trained_slots)
    if len(slots) == 0:
        return importance
    updated = importance.clone()
    updated[slots] += rate * (loss_decrease - importance[slots].mean())
    return updated


def replacement_slot(labels: torch.Tensor, importance: torch.Tensor, incoming_label: int) -> int:
    """The slot a new sample takes in a full memory: the least important of the largest class.

    The class sizes count the incoming sample; ties go to the lowest label, then the lowest slot.
    """
    counts = torch.bincount(labels, minlength=incoming_label + 1)
    counts[incoming_label] += 1
    largest = int(torch.argmax(counts))
    members = torch.nonzero(labels == largest).flatten()
    if len(members) == 0:  # the incoming class "wins" with no stored sample: the largest stored
        counts[incoming_label] -= 1
        members = torch.nonzero(labels == int(torch.argmax(counts))).flatten()
    return int(members[torch.argmin(importance[members])])


def common_loss_decrease(
    before_indices: torch.Tensor,
    before_losses: torch.Tensor,
    after_indices: torch.Tensor,
    after_losses: torch.Tensor,
) -> float | None:
    """Mean loss decrease over the samples measured at both times (None if there are none)."""
    if len(after_indices) and torch.equal(before_indices, after_indices):  # the same memory
        return float((before_losses - after_losses).mean())
    slots, found = _positions(before_indices, after_indices)
    if not bool(found.any()):
        return None
    return float((before_losses[slots[found]] - after_losses[found]).mean())


@MEMORIES.register("clib")
class ImportanceMemory(Memory):
    """Sample-wise importance memory: the least important sample of the largest class goes."""

    name = "clib"
    streaming = True

    def __init__(self, capacity: int, seed: int, ema: float = 0.9) -> None:
        super().__init__(capacity, seed)
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"mem_manage.ema={ema} must lie in [0, 1) (the paper's: 0.9).")
        self.rate = 1.0 - float(ema)
        self.importance = torch.empty(0, dtype=torch.float64)
        self.measured_indices = torch.empty(0, dtype=torch.long)  # at the last measurement
        self.measured_losses = torch.empty(0, dtype=torch.float64)
        self.trained = torch.empty(0, dtype=torch.long)  # memory samples trained on since

    def observe(self, indices: torch.Tensor, labels: torch.Tensor, n_exposed: int) -> None:
        if self.capacity == 0:
            return
        for index, label in zip(indices.tolist(), labels.tolist(), strict=True):
            if bool((self.indices == index).any()):
                continue
            if len(self) < self.capacity:
                self.indices = torch.cat([self.indices, torch.tensor([index])])
                self.labels = torch.cat([self.labels, torch.tensor([label])])
                self.importance = torch.cat([self.importance, torch.zeros(1, dtype=torch.float64)])
                slot = len(self) - 1
            else:
                slot = replacement_slot(self.labels, self.importance, label)
                self.indices[slot], self.labels[slot] = index, label
            self.importance[slot] = self._starting_importance(slot, label)

    def _starting_importance(self, slot: int, label: int) -> float:
        others = torch.ones(len(self), dtype=torch.bool)
        others[slot] = False
        same = others & (self.labels == label)
        pool = self.importance[same] if bool(same.any()) else self.importance[others]
        return float(pool.mean()) if len(pool) else 0.0

    def record_training(self, memory_indices: torch.Tensor) -> None:
        """Memory samples a step trained on: the next measurement credits them."""
        self.trained = torch.cat([self.trained, memory_indices.cpu().long()])

    def measure(self, losses: torch.Tensor) -> None:
        """The loss of every stored sample now (aligned with indices): update the importances."""
        losses = losses.detach().cpu().double()
        decrease = common_loss_decrease(
            self.measured_indices, self.measured_losses, self.indices, losses
        )
        if decrease is not None and len(self.trained):
            slots, found = _positions(self.indices, self.trained)
            self.importance = importance_update(self.importance, slots[found], decrease, self.rate)
        self.measured_indices, self.measured_losses = self.indices.clone(), losses
        self.trained = self.trained[:0]

    def importance_of(self, indices: torch.Tensor) -> torch.Tensor:
        """The importance of stored training-set indices (NaN for those not stored)."""
        slots, found = _positions(self.indices, indices)
        values = torch.full((len(indices),), float("nan"), dtype=torch.float64)
        values[found] = self.importance[slots[found]]
        return values

    def update_report(self) -> dict[str, object]:
        if len(self) == 0:
            return {}
        return {"importance_mean": float(self.importance.mean())}

    def extra_state(self) -> dict[str, np.ndarray | int | float]:
        return {
            "importance": self.importance.numpy(),
            "measured_indices": self.measured_indices.numpy(),
            "measured_losses": self.measured_losses.numpy(),
            "trained": self.trained.numpy(),
        }

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        self.importance = torch.from_numpy(np.asarray(state["importance"], dtype=np.float64))
        self.measured_indices = torch.from_numpy(np.asarray(state["measured_indices"], np.int64))
        self.measured_losses = torch.from_numpy(np.asarray(state["measured_losses"], np.float64))
        self.trained = torch.from_numpy(np.asarray(state["trained"], dtype=np.int64))
