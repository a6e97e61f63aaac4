"""mem_manage=parametric: a capacity, a grouping and a selection strategy per group, composed.

Every named preset (random, class_balanced, experience_balanced, ring, herding,
closest_to_center, cluster, prototype, uncertainty) is this class with its parts fixed;
`mem_manage=parametric mem_manage.groupby=... mem_manage.select=...` builds any other.
"""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.memory.base import MEMORIES, Memory, SelectionContext, extract_features
from rainbow_runner.memory.group_reservoir import group_reservoir
from rainbow_runner.memory.grouping import group_keys, group_quota, resolve_grouping
from rainbow_runner.memory.quota import GroupQuota
from rainbow_runner.memory.strategies import needs_features, resolve_strategy

INTAKES = ("stream", "task")
RESERVOIR = "reservoir"  # the one selection that is not a strategy: it keeps counters


@MEMORIES.register("parametric")
class ParametricMemory(Memory):
    """Keeps, per group, what the selection strategy picks from memory ∪ the incoming samples.

    intake=stream re-selects after every incoming batch (online streams), intake=task once at
    the end of each task from memory ∪ the task's samples, with the current model's features
    (at `layer`; "" = the penultimate ones) for strategies that read features. Quotas: see
    memory/grouping.py (`fixed`, `fill`); n_classes and n_tasks (the run's totals, for fixed
    quotas) are supplied by the runner.
    """

    keeps_task_ids = True

    def __init__(
        self,
        capacity: int,
        seed: int,
        groupby: str = "class",
        select: str = "random",
        intake: str = "stream",
        fixed: bool = False,
        fill: bool = True,
        layer: str = "",
        n_classes: int = 0,
        n_tasks: int = 0,
    ) -> None:
        super().__init__(capacity, seed)
        if intake not in INTAKES:
            raise ChoiceError(
                f"unknown mem_manage.intake '{intake}'; valid choices are: {', '.join(INTAKES)}."
            )
        self.groupby = resolve_grouping(groupby)
        self.select_name = select if isinstance(select, str) else select.__name__
        self.streaming = intake == "stream"
        # select=reservoir: a reservoir per group, each with its count of samples seen.
        self.reservoir = select == RESERVOIR
        if self.reservoir and not self.streaming:
            raise ChoiceError(
                "mem_manage.select=reservoir samples a stream: use mem_manage.intake=stream."
            )
        self.seen: dict[int, int] = {}
        self.strategy = None if self.reservoir else resolve_strategy(select)
        self.uses_features = not self.reservoir and needs_features(self.strategy)
        if self.streaming and self.uses_features:
            raise ChoiceError(
                f"mem_manage.select={self.select_name} chooses by the model's features, which "
                "the runner computes once per task: use mem_manage.intake=task (or a strategy "
                "without features: random, fifo)."
            )
        self.fixed, self.fill, self.layer = bool(fixed), bool(fill), layer
        self.fixed_share = self._fixed_share(int(n_classes), int(n_tasks)) if fixed else None

    def _fixed_share(self, n_classes: int, n_tasks: int) -> int:
        """capacity // the run's number of groups (classes, tasks), seen or not."""
        totals = {"class": n_classes, "experience": n_tasks, "none": 1}
        total = totals.get(self.groupby) if isinstance(self.groupby, str) else None
        if not total:
            raise ValueError(
                f"mem_manage.fixed=true needs the run's number of groups for groupby="
                f"{self.groupby!r}: it is known for class (n_classes) and experience (n_tasks)."
            )
        return self.capacity // total

    def choose(
        self,
        indices: torch.Tensor,
        labels: torch.Tensor,
        task_ids: torch.Tensor,
        n_exposed: int,
        features: torch.Tensor | None,
    ) -> torch.Tensor:
        """Positions of the candidates to keep (the strategy on the grouped quotas)."""
        return self.strategy(
            features, labels, task_ids, self.quota(indices, labels, task_ids, n_exposed), self.rng
        )

    def quota(
        self, indices: torch.Tensor, labels: torch.Tensor, task_ids: torch.Tensor, n_exposed: int
    ) -> GroupQuota:
        keys = group_keys(self.groupby, indices, labels, task_ids)
        n_seen = n_exposed if self.groupby == "class" else 0
        return group_quota(keys, len(indices), self.capacity, n_seen, self.fixed_share, self.fill)

    def observe(self, indices: torch.Tensor, labels: torch.Tensor, n_exposed: int) -> None:
        if self.capacity == 0:
            return
        incoming = self.incoming_task_ids
        if len(incoming) != len(indices):  # observe() called without add(): the current task
            incoming = self._task_column(len(indices), None)
        pool = torch.cat([self.indices, indices])
        pool_labels = torch.cat([self.labels, labels])
        pool_tasks = torch.cat([self.stored_task_ids(), incoming])
        if self.reservoir:
            keep = self._reservoir_keep(pool, pool_labels, pool_tasks, n_exposed)
        else:
            keep = self.choose(pool, pool_labels, pool_tasks, n_exposed, None)
        self.indices, self.labels = pool[keep], pool_labels[keep]

    def _reservoir_keep(
        self, pool: torch.Tensor, labels: torch.Tensor, task_ids: torch.Tensor, n_exposed: int
    ) -> torch.Tensor:
        """Reservoir sampling per group on memory ∪ incoming; counts the incoming as seen."""
        keys = group_keys(self.groupby, pool, labels, task_ids)
        keys = torch.zeros(len(pool), dtype=torch.long) if keys is None else keys
        present, groups = torch.unique(keys, return_inverse=True)
        quota = self.quota(pool, labels, task_ids, n_exposed)
        seen = np.array([self.seen.get(int(key), 0) for key in present], dtype=np.int64)
        groups_np, n_stored = groups.numpy(), len(self)
        keep = group_reservoir(groups_np, n_stored, quota.counts.numpy(), seen, self.rng)
        arrived = np.bincount(groups_np[n_stored:], minlength=len(present))
        for key, count in zip(present.tolist(), arrived.tolist(), strict=True):
            self.seen[key] = self.seen.get(key, 0) + count
        return torch.from_numpy(keep)

    def extra_state(self) -> dict[str, np.ndarray | int | float]:
        keys = sorted(self.seen)
        return {"seen": np.array([[key, self.seen[key]] for key in keys], dtype=np.int64)}

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        seen = np.asarray(state.get("seen", np.zeros((0, 2))), dtype=np.int64).reshape(-1, 2)
        self.seen = {int(key): int(count) for key, count in seen}

    def select(
        self, indices: torch.Tensor, labels: torch.Tensor, context: SelectionContext
    ) -> torch.Tensor:
        incoming = self._task_column(len(indices) - len(self), context.task_id)
        task_ids = torch.cat([self.stored_task_ids(), incoming])
        features = self.selection_features(indices, context) if self.uses_features else None
        return self.choose(indices, labels, task_ids, context.n_exposed, features).cpu()

    def selection_features(self, indices: torch.Tensor, context: SelectionContext) -> torch.Tensor:
        """What a strategy that reads features ranks the candidates by: the model's features."""
        return extract_features(indices, context, self.layer)
