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
    """A fixed-capacity memory of training-set indices with their labels and payloads.

    Streaming managers (`streaming = True`) update on every incoming batch of an online stream
    (`add`, which calls the manager's `observe`); the others choose once per task in `end_task`,
    from the task's samples plus the memory (the manager's `select`).

    Payloads are extra per-sample tensors a method stores beside the samples (DER's logits at
    insertion, task ids, features): one row per stored sample, kept aligned with `indices`
    through every replacement, whatever the manager does (a training-set index names a sample),
    and saved in checkpoints. Rows of samples added without a value are NaN (floats) or -1.
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
        self.payloads: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def add(
        self,
        indices: torch.Tensor,
        labels: torch.Tensor,
        n_exposed: int,
        payloads: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Offer an incoming batch to the manager (payloads: one row per incoming sample)."""
        if not payloads and not self.payloads:
            self.observe(indices, labels, n_exposed)
            return
        before = self.indices.clone()  # managers may replace slots in place
        self.observe(indices, labels, n_exposed)
        self._realign_payloads(before, indices, payloads or {})

    def observe(self, indices: torch.Tensor, labels: torch.Tensor, n_exposed: int) -> None:
        """The manager's intake of an incoming batch (streaming managers)."""
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
                self.add(task_indices, task_labels, context.n_exposed)
            return
        before = self.indices
        candidates = torch.cat([self.indices, task_indices])
        candidate_labels = torch.cat([self.labels, task_labels])
        keep = self.select(candidates, candidate_labels, context)
        self.indices, self.labels = candidates[keep], candidate_labels[keep]
        if self.payloads:
            self._realign_payloads(before, task_indices, {})

    def payload(self, name: str, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored rows of payload `name` for training-set indices, and which were stored.

        Rows of indices not in the memory are NaN/-1 and marked False.
        """
        stored = self.payloads[name]
        slots, found = _positions(self.indices, indices)
        return _blank_missing(_rows_at(stored, slots), found.to(stored.device)), found

    def update_report(self) -> dict[str, object]:
        """What the last update measured, for the run's logs (uncertainty scoring time, ...)."""
        return {}

    def _realign_payloads(
        self, before: torch.Tensor, incoming: torch.Tensor, incoming_rows: dict[str, torch.Tensor]
    ) -> None:
        """Payload rows for the current indices: a sample kept from before keeps its row; a
        sample taken in gets its incoming row (blank when none was given)."""
        names = set(self.payloads) | set(incoming_rows)
        old_slots, was_stored = _positions(before, self.indices)
        new_slots, was_incoming = _positions(incoming, self.indices)
        for name in names:
            old = self.payloads.get(name)
            new = incoming_rows.get(name)
            template = old if old is not None else new
            old = _blank_like(template, len(before)) if old is None else old
            new = _blank_like(template, len(incoming)) if new is None else new.detach()
            old, new = _same_width(old, new.to(old.device))
            from_old, from_new = _rows_at(old, old_slots), _rows_at(new, new_slots)
            taken_in = (was_incoming & ~was_stored).to(old.device)
            rows = torch.where(_expand(taken_in, from_old), from_new, from_old)
            self.payloads[name] = _blank_missing(rows, (was_stored | was_incoming).to(old.device))

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
        state.update({f"payload_{k}": v.cpu().numpy() for k, v in self.payloads.items()})
        state["rng"] = np.frombuffer(
            repr(self.rng.bit_generator.state).encode(), dtype=np.uint8
        ).copy()
        state.update({f"extra_{k}": np.asarray(v) for k, v in self.extra_state().items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.indices = torch.from_numpy(np.asarray(state["indices"], dtype=np.int64))
        self.labels = torch.from_numpy(np.asarray(state["labels"], dtype=np.int64))
        self.rng.bit_generator.state = ast.literal_eval(bytes(state["rng"]).decode())
        self.payloads = {
            key[len("payload_") :]: torch.from_numpy(np.array(value))
            for key, value in state.items()
            if key.startswith("payload_")
        }
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


def _positions(haystack: torch.Tensor, needles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each needle sits in haystack (-1 if absent), and whether it was found."""
    if len(haystack) == 0:
        return torch.full_like(needles, -1), torch.zeros(len(needles), dtype=torch.bool)
    order = torch.argsort(haystack)
    ordered = haystack[order]
    spot = torch.searchsorted(ordered, needles).clamp(max=len(haystack) - 1)
    found = ordered[spot] == needles
    return torch.where(found, order[spot], -1), found


def _rows_at(rows: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """rows at slots, any row where the slot is -1 (none: blanks when rows is empty)."""
    if len(rows) == 0:
        return _blank_like(rows, len(slots))
    return rows.index_select(0, slots.clamp(min=0).to(rows.device))


def _blank_value(rows: torch.Tensor) -> float:
    return float("nan") if rows.is_floating_point() else -1


def _blank_like(template: torch.Tensor, n_rows: int) -> torch.Tensor:
    shape = (n_rows, *template.shape[1:])
    return torch.full(shape, _blank_value(template), dtype=template.dtype, device=template.device)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _blank_missing(rows: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    return torch.where(_expand(present, rows), rows, _blank_like(rows, len(rows)))


def _widen(rows: torch.Tensor, width: int) -> torch.Tensor:
    if rows.shape[-1] == width:
        return rows
    padded = rows.new_full((*rows.shape[:-1], width), _blank_value(rows))
    padded[..., : rows.shape[-1]] = rows
    return padded


def _same_width(old: torch.Tensor, new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the narrower last dimension with blanks (stored logits widen as the head grows)."""
    if old.dim() < 2:
        return old, new
    width = max(old.shape[-1], new.shape[-1])
    return _widen(old, width), _widen(new, width)


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
