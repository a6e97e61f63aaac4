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


# The payload that holds each stored sample's task id, for memories that keep them.
TASK_PAYLOAD = "task_id"


class Memory:
    """A fixed-capacity memory of training-set indices with their labels and payloads.

    Streaming managers (`streaming = True`) update on every incoming batch of an online stream
    (`add`, which calls the manager's `observe`); the others choose once per task in `end_task`,
    from the task's samples plus the memory (the manager's `select`).

    Payloads are extra per-sample tensors a method stores beside the samples (DER's logits at
    insertion, task ids, features): one row per stored sample, kept aligned with `indices`
    through every replacement, whatever the manager does (a training-set index names a sample),
    and saved in checkpoints. Rows of samples added without a value are NaN (floats) or -1.

    A memory with `keeps_task_ids` stores each sample's task id as the payload `task_id`: the
    one given to add(), else the task the runner announced with begin_task().
    """

    name = "memory"
    streaming = False
    keeps_task_ids = False
    # True: the intake scores candidates with the model (GSS): the runner binds a context
    # provider (bind_context) and trains, then observes, one incoming batch at a time.
    intake_uses_model = False

    def __init__(self, capacity: int, seed: int) -> None:
        if capacity < 0:
            raise ValueError(f"mem_size={capacity} is negative; use 0 for no memory or a size > 0.")
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.indices = torch.empty(0, dtype=torch.long)
        self.labels = torch.empty(0, dtype=torch.long)
        self.payloads: dict[str, torch.Tensor] = {}
        self.task_id = 0  # the task of samples added without task ids
        self.incoming_task_ids = torch.empty(0, dtype=torch.long)  # of the batch being added
        self.context_provider: Callable[[], SelectionContext] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def add(
        self,
        indices: torch.Tensor,
        labels: torch.Tensor,
        n_exposed: int,
        payloads: dict[str, torch.Tensor] | None = None,
        task_ids: torch.Tensor | int | None = None,
    ) -> None:
        """Offer an incoming batch to the manager (payloads: one row per incoming sample).

        task_ids: the task of each incoming sample, or one for all (default: the current task,
        see begin_task); kept by memories with `keeps_task_ids`.
        """
        if self.keeps_task_ids:
            self.incoming_task_ids = self._task_column(len(indices), task_ids)
            payloads = {**(payloads or {}), TASK_PAYLOAD: self.incoming_task_ids}
        if not payloads and not self.payloads:
            self.observe(indices, labels, n_exposed)
            return
        before = self.indices.clone()  # managers may replace slots in place
        self.observe(indices, labels, n_exposed)
        self._realign_payloads(before, indices, payloads or {})
        self.incoming_task_ids = self.incoming_task_ids[:0]

    def begin_task(self, task_id: int) -> None:
        """The task that samples added from now on, without task ids, belong to."""
        self.task_id = int(task_id)

    def bind_context(self, provider: Callable[[], SelectionContext]) -> None:
        """Where a memory whose intake uses the model (`intake_uses_model`) gets it from."""
        self.context_provider = provider

    def stored_task_ids(self) -> torch.Tensor:
        """The task id of every stored sample (-1 where unknown)."""
        stored = self.payloads.get(TASK_PAYLOAD)
        if stored is None or len(stored) != len(self):
            return torch.full((len(self),), -1, dtype=torch.long)
        return stored.long().cpu()

    def _task_column(self, n: int, task_ids: torch.Tensor | int | None) -> torch.Tensor:
        if task_ids is None:
            task_ids = self.task_id
        if isinstance(task_ids, int):
            return torch.full((n,), task_ids, dtype=torch.long)
        column = torch.as_tensor(task_ids, dtype=torch.long).cpu().reshape(-1)
        return column.expand(n).clone() if len(column) == 1 else column

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
                self.add(task_indices, task_labels, context.n_exposed, task_ids=context.task_id)
            return
        before = self.indices
        candidates = torch.cat([self.indices, task_indices])
        candidate_labels = torch.cat([self.labels, task_labels])
        incoming = {}
        if self.keeps_task_ids:
            self.incoming_task_ids = self._task_column(len(task_indices), context.task_id)
            incoming[TASK_PAYLOAD] = self.incoming_task_ids
        keep = self.select(candidates, candidate_labels, context)
        self.keep_positions(candidates, candidate_labels, keep, before, task_indices, incoming)

    def keep_positions(
        self,
        candidates: torch.Tensor,
        candidate_labels: torch.Tensor,
        keep: torch.Tensor,
        before: torch.Tensor,
        incoming: torch.Tensor,
        incoming_rows: dict[str, torch.Tensor],
    ) -> None:
        """Store candidates[keep] (memory ∪ incoming), payload rows following their samples."""
        self.indices, self.labels = candidates[keep], candidate_labels[keep]
        if self.payloads or incoming_rows:
            self._realign_payloads(before, incoming, incoming_rows)

    def payload(self, name: str, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored rows of payload `name` for training-set indices, and which were stored.

        Rows of indices not in the memory are blank (NaN, or -1 for integers) and marked False.
        """
        slots, found = _positions(self.indices, indices)
        return _rows(self.payloads[name], slots), found

    def update_report(self) -> dict[str, object]:
        """What the last update measured, for the run's logs (uncertainty scoring time, ...)."""
        return {}

    def _realign_payloads(
        self, before: torch.Tensor, incoming: torch.Tensor, incoming_rows: dict[str, torch.Tensor]
    ) -> None:
        """Payload rows for the current indices: a sample kept from before keeps its row; a
        sample taken in gets its incoming row (blank when none was given)."""
        old_slots, was_stored = _positions(before, self.indices)
        new_slots, _ = _positions(incoming, self.indices)
        new_slots = torch.where(was_stored, -1, new_slots)  # a kept sample keeps its own row
        for name in set(self.payloads) | set(incoming_rows):
            old, new = self.payloads.get(name), incoming_rows.get(name)
            template = old if old is not None else new
            old = _blank_like(template, len(before)) if old is None else old
            new = _blank_like(template, len(incoming)) if new is None else new.detach()
            old, new = _same_width(old, new.to(old.device))
            from_old, from_new = _rows(old, old_slots), _rows(new, new_slots)
            kept = _expand(was_stored.to(old.device), old)
            self.payloads[name] = torch.where(kept, from_old, from_new)

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
        state["task"] = np.asarray(self.task_id, dtype=np.int64)
        state.update({f"extra_{k}": np.asarray(v) for k, v in self.extra_state().items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.indices = torch.from_numpy(np.asarray(state["indices"], dtype=np.int64))
        self.labels = torch.from_numpy(np.asarray(state["labels"], dtype=np.int64))
        self.rng.bit_generator.state = ast.literal_eval(bytes(state["rng"]).decode())
        self.task_id = int(state["task"]) if "task" in state else 0
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


def _blank_value(rows: torch.Tensor) -> float:
    return float("nan") if rows.is_floating_point() else -1


def _blank_like(template: torch.Tensor, n_rows: int) -> torch.Tensor:
    shape = (n_rows, *template.shape[1:])
    return torch.full(shape, _blank_value(template), dtype=template.dtype, device=template.device)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _rows(stored: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """stored[slot] for each slot, a blank row where slot is -1."""
    padded = torch.cat([stored, _blank_like(stored, 1)])
    return padded.index_select(0, torch.where(slots < 0, len(stored), slots).to(stored.device))


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


@torch.inference_mode()
def extract_features(
    indices: torch.Tensor, context: SelectionContext, layer: str = ""
) -> torch.Tensor:
    """The model's features of training samples, in eval mode, batch by batch on the device.

    layer: a submodule's name (`backbone.3`, as in model.named_modules()) whose output,
    flattened per sample, is the feature; "" = the penultimate features, model.features(x).
    """
    model = context.model
    if not layer:
        extract = model.features
    else:
        extract = _layer_output(model, layer)
    chunks = context.map_batches(indices, lambda images: extract(context.normalize(images)))
    if not chunks:
        return torch.empty(0, getattr(model, "feature_dim", 0), device=context.device)
    return torch.cat(chunks)


def _layer_output(model: torch.nn.Module, layer: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function that runs the model and returns one submodule's output, flattened."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        names = ", ".join(name for name, _ in model.named_modules() if name)
        raise ValueError(
            f"mem_manage.layer={layer!r} is not a layer of the model; its layers are: {names}."
        ) from None

    def run(x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        # A copy: a later in-place layer (ReLU(inplace=True)) would overwrite the output.
        hook = module.register_forward_hook(
            lambda _m, _i, output: captured.append(output.detach().flatten(1).clone())
        )
        try:
            model(x)
        finally:
            hook.remove()
        return captured[0]

    return run
