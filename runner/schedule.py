"""A task's optimizer and learning-rate schedule, with the paper's warm-up pass."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
SCHEDULE_PER = ("epoch", "task")  # lr_schedule_per: what one step of the schedule is


class TaskSchedule:
    """Re-created at every task (the head may have grown): optimizer, scheduler, warm-up.

    warmup_epochs: the task's first passes run at 0.1·lr and the schedule starts after them
    (the paper's code runs one). A method with nothing to optimise gets neither.
    per (lr_schedule_per): "epoch" restarts the schedule at every task and steps it after each
    epoch or pass (the paper's; Avalanche's LRSchedulerPlugin default); "task" steps it once per
    task and never restarts it: task t trains at the schedule's t-th value throughout.
    """

    def __init__(
        self,
        make_optimizer: OptimizerFactory,
        make_scheduler: SchedulerFactory,
        warmup: int,
        per: str = "epoch",
    ) -> None:
        if per not in SCHEDULE_PER:
            raise ValueError(f"lr_schedule_per={per}: use one of {', '.join(SCHEDULE_PER)}.")
        self.make_optimizer, self.make_scheduler, self.warmup = (
            make_optimizer,
            make_scheduler,
            warmup,
        )
        self.per = per
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.task_epoch = 0  # passes so far in the current task
        self.warm_lrs: list[float] | None = None  # the lrs a warm-up pass lowered

    def build(self, groups: Iterable, task_id: int = 0) -> None:
        """A fresh optimizer and scheduler over the given parameters (groups) for a task; per
        task, the schedule is stepped to task_id's value."""
        groups = list(groups)
        self.optimizer = self.make_optimizer(groups) if groups else None
        self.scheduler = self.make_scheduler(self.optimizer) if groups else None
        if self.scheduler is not None and self.per == "task":
            with warnings.catch_warnings():  # stepped ahead of any optimizer step, on purpose
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(task_id):
                    self.scheduler.step()

    def begin_epoch(self) -> bool:
        """Count the pass; a warm-up pass lowers the lr to a tenth. Returns whether it does."""
        warm = self.optimizer is not None and self.task_epoch < self.warmup
        self.task_epoch += 1
        if warm:
            self.warm_lrs = [group["lr"] for group in self.optimizer.param_groups]
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.1
        return warm

    def end_epoch(self, warm: bool, step: bool = True) -> None:
        """Restore the lr after a warm-up pass (the schedule starts after it), else step it
        (per epoch; per task, build() has stepped it; step=False: a task-free stream's periods
        are no epochs of its schedule)."""
        if warm:
            for group, lr in zip(self.optimizer.param_groups, self.warm_lrs, strict=True):
                group["lr"] = lr
        elif self.scheduler is not None and step and self.per == "epoch":
            self.scheduler.step()

    def lr(self) -> float | None:
        return None if self.optimizer is None else self.optimizer.param_groups[0]["lr"]

    def state_dict(self, with_optimizer: bool) -> dict[str, Any]:
        """Checkpoint content; the optimizer only inside a task (a new task builds its own)."""
        optimizing = with_optimizer and self.optimizer is not None
        return {
            "optimizer": self.optimizer.state_dict() if optimizing else None,
            "scheduler": self.scheduler.state_dict() if optimizing else None,
            "task_epoch": self.task_epoch,
            "warm_lrs": self.warm_lrs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """After build() when the checkpoint holds an optimizer."""
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.task_epoch = int(state["task_epoch"])
        if state["warm_lrs"] is not None:
            self.warm_lrs = list(state["warm_lrs"])
