"""mem_manage=parametric: a capacity, a grouping and a selection strategy per group, composed.

Every named preset (random, class_balanced, experience_balanced, ring, herding,
closest_to_center, cluster, prototype, uncertainty) is this class with its parts fixed;
`mem_manage=parametric mem_manage.groupby=... mem_manage.select=...` builds any other.
"""

from __future__ import annotations

import torch

from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.memory.base import MEMORIES, Memory, SelectionContext, extract_features
from rainbow_runner.memory.grouping import group_keys, group_quota, resolve_grouping
from rainbow_runner.memory.strategies import GroupQuota, needs_features, resolve_strategy

INTAKES = ("stream", "task")


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
        self.strategy = resolve_strategy(select)
        self.select_name = select if isinstance(select, str) else select.__name__
        self.streaming = intake == "stream"
        self.uses_features = needs_features(self.strategy)
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
        keep = self.choose(pool, pool_labels, pool_tasks, n_exposed, None)
        self.indices, self.labels = pool[keep], pool_labels[keep]

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
