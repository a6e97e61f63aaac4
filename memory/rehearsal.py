"""RehearsalMemory: the memory library on tensors, with no trainer or Hydra.

    memory = RehearsalMemory(500, select="herding", groupby="class")
    memory.add(x, y, t, features)      # one selection over memory ∪ (x, y, t)
    x, y, t = memory.get()             # everything stored
    x, y, t = memory.sample(32)        # a random batch for replay
    memory.save("memory.npz")          # no pickle: RehearsalMemory.from_file("memory.npz")

It wraps the composed manager (memory/parametric.py): samples get ids, the inputs and the
features ride along as payloads, kept aligned through every replacement.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rainbow_runner.memory.base import TASK_PAYLOAD, SelectionContext, extract_features
from rainbow_runner.memory.parametric import ParametricMemory

INPUTS, FEATURES = "x", "features"
_SETTINGS = ("capacity", "select", "groupby", "fixed", "fill", "n_classes", "n_tasks", "layer")


class RehearsalMemory:
    """A rehearsal memory of tensors: a capacity, a grouping and a selection strategy.

    Args:
        capacity: samples kept in all.
        select: random, herding, closest_to_center, cluster, rainbow, fifo, a function's import
            path, or the function itself (memory/strategies.py gives the signature).
        groupby: class, experience, none, or a key function (or its import path).
        fixed: a fixed quota per group, capacity // n_classes (or n_tasks) over the whole run;
            else the capacity is shared among the groups seen so far.
        fill: flexible quotas only: groups that cannot fill their share leave it to the others.
        model: if given, features are the model's (at `layer`) on the stored and incoming
            inputs, recomputed at every add; otherwise the `features` given to add(), else the
            inputs themselves.
    """

    def __init__(
        self,
        capacity: int,
        select: str | Callable = "random",
        groupby: str | Callable = "class",
        fixed: bool = False,
        fill: bool = True,
        n_classes: int = 0,
        n_tasks: int = 0,
        seed: int = 0,
        model: torch.nn.Module | None = None,
        layer: str = "",
        batchsize: int = 1024,
    ) -> None:
        self.manager = ParametricMemory(
            capacity, seed, groupby, select, "task", fixed, fill, layer, n_classes, n_tasks
        )
        self.settings = {
            "capacity": capacity,
            "select": _name(select),
            "groupby": _name(groupby),
            "fixed": fixed,
            "fill": fill,
            "n_classes": n_classes,
            "n_tasks": n_tasks,
            "layer": layer,
        }
        self.model, self.batchsize = model, batchsize
        self.next_id = 0
        self.seen_classes = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.manager)

    @property
    def capacity(self) -> int:
        return self.manager.capacity

    def add(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor | int | None = None,
        features: torch.Tensor | None = None,
    ) -> None:
        """Offer samples; the memory keeps what its strategy picks from memory ∪ them.

        t: each sample's task id, or one for all (default 0); features: one row per sample for
        strategies that read features (kept, so later selections can use them again).
        """
        manager = self.manager
        y = torch.as_tensor(y, dtype=torch.long).cpu()
        ids = torch.arange(self.next_id, self.next_id + len(y))
        self.next_id += len(y)
        tasks = manager._task_column(len(y), 0 if t is None else t)
        self.seen_classes = torch.unique(torch.cat([self.seen_classes, y]))
        candidates = torch.cat([manager.indices, ids])
        labels = torch.cat([manager.labels, y])
        task_ids = torch.cat([manager.stored_task_ids(), tasks])
        rows = {INPUTS: x.detach(), TASK_PAYLOAD: tasks}
        if features is not None:
            rows[FEATURES] = features.detach()
        chosen_by = self._features(x, features) if manager.uses_features else None
        keep = manager.choose(candidates, labels, task_ids, len(self.seen_classes), chosen_by)
        before = manager.indices.clone()
        manager.keep_positions(candidates, labels, keep.cpu(), before, ids, rows)

    def _features(self, x: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """Features of memory ∪ incoming, stored ones first."""
        stored = self.manager.payloads
        if self.model is not None:
            everything = torch.cat([stored[INPUTS], x]) if INPUTS in stored else x
            device = next(self.model.parameters()).device
            context = SelectionContext(
                model=self.model,
                fetch_images=lambda positions: everything[positions.cpu()].to(device),
                normalize=lambda inputs: inputs,
                n_exposed=len(self.seen_classes),
                task_id=0,
                device=device,
                batchsize=self.batchsize,
            )
            return extract_features(torch.arange(len(everything)), context, self.manager.layer)
        if features is None:  # the inputs themselves
            inputs = torch.cat([stored[INPUTS], x]) if INPUTS in stored else x
            return inputs.reshape(len(inputs), -1).float()
        if len(self) and FEATURES not in stored:
            raise ValueError("features were given now but not for the samples already stored.")
        return torch.cat([stored[FEATURES], features]) if len(self) else features

    def get(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every stored sample: inputs, labels, task ids (in storage order)."""
        if not len(self):
            return (
                torch.empty(0),
                torch.empty(0, dtype=torch.long),
                torch.empty(0, dtype=torch.long),
            )
        return self.manager.payloads[INPUTS], self.manager.labels, self.manager.stored_task_ids()

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n stored samples drawn without replacement (all of them if fewer are stored)."""
        x, y, t = self.get()
        if len(self) <= n:
            return x, y, t
        drawn = torch.from_numpy(self.manager.rng.choice(len(self), n, replace=False))
        return x[drawn], y[drawn], t[drawn]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays (the manager's state, the settings, the counters): no pickle needed."""
        state = self.manager.state_dict()
        state["next_id"] = np.asarray(self.next_id, dtype=np.int64)
        state["seen_classes"] = self.seen_classes.numpy()
        for key, value in self.settings.items():
            state[f"setting_{key}"] = np.asarray(value)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.manager.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith("setting_")}
        )
        self.next_id = int(state["next_id"])
        self.seen_classes = torch.from_numpy(np.asarray(state["seen_classes"], dtype=np.int64))

    def save(self, path: str | Path) -> None:
        np.savez(path, **self.state_dict())

    def load(self, path: str | Path) -> None:
        """Replace this memory's contents and generator state by a saved one's."""
        with np.load(path, allow_pickle=False) as archive:
            self.load_state_dict({k: archive[k] for k in archive.files})

    @classmethod
    def from_file(cls, path: str | Path, model: torch.nn.Module | None = None) -> RehearsalMemory:
        """A memory rebuilt from a saved file: its settings, contents and generator state."""
        with np.load(path, allow_pickle=False) as archive:
            state = {k: archive[k] for k in archive.files}
        settings = {k: state[f"setting_{k}"].item() for k in _SETTINGS}
        memory = cls(model=model, **settings)
        memory.load_state_dict(state)
        return memory


def _name(thing: str | Callable) -> str:
    """A strategy's or key function's name as saved: itself, or its import path."""
    if isinstance(thing, str):
        return thing
    return f"{thing.__module__}:{thing.__qualname__}"
