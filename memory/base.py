"""The episodic memory API: indices into the training set, chosen by a named manager."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rainbow_runner.datasets.choices import Registry


@dataclass
class SelectionContext:
    """What a manager may consult when it chooses: the model, the data and the task so far."""

    model: torch.nn.Module
    fetch_images: Callable[[torch.Tensor], torch.Tensor]  # train indices -> uint8 batch on device
    normalize: Callable[[torch.Tensor], torch.Tensor]  # uint8 batch -> model input
    n_exposed: int  # classes exposed so far (the quota's denominator)
    task_id: int
    device: torch.device
    batchsize: int = 1024

    @torch.inference_mode()
    def map_batches(
        self,
        indices: torch.Tensor,
        apply: Callable[[torch.Tensor], torch.Tensor],
        batchsize: int | None = None,
    ) -> list[torch.Tensor]:
        """`apply` to the uint8 images of `indices`, batch by batch, with the model in eval mode.

        Batches hold `batchsize` indices (default: the context's `batchsize`).
        """
        size = self.batchsize if batchsize is None else max(1, int(batchsize))
        was_training = self.model.training
        self.model.eval()
        try:
            return [
                apply(self.fetch_images(indices[start : start + size]))
                for start in range(0, len(indices), size)
            ]
        finally:
            self.model.train(was_training)


class Memory:
    """A fixed-capacity memory of training-set indices with their labels.

    Streaming managers (`streaming = True`) update on every incoming batch of an online stream;
    the others choose once per task in `end_task`, from the task's samples plus the memory.
    """

    name = "memory"
    streaming = False

    def __init__(self, capacity: int, seed: int, class_balanced: bool = False) -> None:
        if capacity < 0:
            raise ValueError(f"mem_size={capacity} is negative; use 0 for no memory or a size > 0.")
        self.capacity = capacity
        self.class_balanced = class_balanced
        self.rng = np.random.default_rng(seed)
        self.indices = torch.empty(0, dtype=torch.long)
        self.labels = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def observe(self, indices: torch.Tensor, labels: torch.Tensor, n_exposed: int) -> None:
        """Take in an incoming batch (streaming managers)."""
        raise NotImplementedError

    def select(
        self, indices: torch.Tensor, labels: torch.Tensor, context: SelectionContext
    ) -> torch.Tensor:
        """Positions into `indices` to keep, at most `capacity` of them (per-task managers)."""
        raise NotImplementedError

    def end_task(
        self,
        task_indices: torch.Tensor,
        task_labels: torch.Tensor,
        context: SelectionContext,
        streamed: bool,
    ) -> None:
        """Consolidate at the end of a task; `streamed` says observe() already saw its samples."""
        if self.capacity == 0:
            return
        if self.streaming:
            if not streamed:
                self.observe(task_indices, task_labels, context.n_exposed)
            return
        candidates = torch.cat([self.indices, task_indices])
        candidate_labels = torch.cat([self.labels, task_labels])
        keep = self.select(candidates, candidate_labels, context)
        self.indices, self.labels = candidates[keep], candidate_labels[keep]

    def sample(self, n: int) -> torch.Tensor:
        """n memory indices drawn without replacement (all of them if fewer are stored)."""
        if len(self) <= n:
            return self.indices.clone()
        drawn = torch.from_numpy(self.rng.choice(len(self), n, replace=False))
        return self.indices.index_select(0, drawn)

    def class_counts(self, n_classes: int) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=n_classes)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays only, so checkpoints load without unpickling anything."""
        state = {"indices": self.indices.numpy(), "labels": self.labels.numpy()}
        state["rng"] = np.frombuffer(
            repr(self.rng.bit_generator.state).encode(), dtype=np.uint8
        ).copy()
        state.update({f"extra_{k}": np.asarray(v) for k, v in self.extra_state().items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.indices = torch.from_numpy(np.asarray(state["indices"], dtype=np.int64))
        self.labels = torch.from_numpy(np.asarray(state["labels"], dtype=np.int64))
        self.rng.bit_generator.state = ast.literal_eval(bytes(state["rng"]).decode())
        self.load_extra_state({k[6:]: v for k, v in state.items() if k.startswith("extra_")})

    def extra_state(self) -> dict[str, np.ndarray | int | float]:
        """Manager-specific counters to checkpoint (e.g. reservoir's samples seen)."""
        return {}

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        return None

    def save(self, path: str | Path) -> None:
        np.savez(path, **self.state_dict())

    def load(self, path: str | Path) -> None:
        with np.load(path, allow_pickle=False) as archive:
            self.load_state_dict({k: archive[k] for k in archive.files})


MEMORIES: Registry[Memory] = Registry("mem_manage")


def balanced_quota(class_counts: np.ndarray, capacity: int) -> np.ndarray:
    """How many of each class to keep so classes are as equal as possible within capacity.

    Water-filling: small classes keep everything; the rest share what is left equally, and
    the remainder goes to the largest classes first.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    if counts.sum() <= capacity:
        return counts.copy()
    quota = np.zeros_like(counts)
    remaining, active = capacity, counts > 0
    while active.any():
        share = remaining // int(active.sum())
        small = active & (counts - quota <= share)
        if not small.any() or share == 0:
            break
        remaining -= int((counts[small] - quota[small]).sum())
        quota[small] = counts[small]
        active &= ~small
    if active.any():
        share, leftover = divmod(remaining, int(active.sum()))
        quota[active] += share
        order = np.flatnonzero(active)[np.argsort(-counts[active], kind="stable")]
        quota[order[:leftover]] += 1
    return quota
