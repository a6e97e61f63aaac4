"""mode=ewc: online EWC (Schwarz et al. 2018) on top of experience replay, as in the paper."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, MethodContext
from rainbow_runner.methods.functional import diagonal_fisher
from rainbow_runner.methods.regularization import RegularizedReplay


@METHODS.register("ewc")
class EWC(RegularizedReplay):
    """After each task F ← gamma·F + F_task and θ* ← θ; every step adds reg_coef/2·Σ F(θ−θ*)².

    F_task is the diagonal Fisher on up to fisher_samples samples of the task ∪ the memory.
    The head is left out of the penalty (its rows grow with the classes).
    """

    needs_task_boundaries = True  # Fisher and anchor taken at each task's end

    def __init__(
        self,
        context: MethodContext,
        reg_coef: float = 100.0,
        gamma: float = 1.0,
        fisher_samples: int = 0,
    ) -> None:
        super().__init__(context)
        self.penalty_scale = float(reg_coef) / 2.0
        self.gamma, self.fisher_samples = float(gamma), int(fisher_samples)

    def after_task(self, task_id: int) -> None:
        task_fisher = self.task_fisher(self.context.split.train_tasks[task_id])
        importance = {
            name: self.gamma * self.importance[name] + value if name in self.importance else value
            for name, value in task_fisher.items()
        }
        self.consolidate(importance)

    def task_fisher(self, task_indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """The Fisher of the task just trained, on a random subset of task ∪ memory samples."""
        pool = torch.cat([task_indices, self.memory.indices])
        if 0 < self.fisher_samples < len(pool):
            pool = pool[torch.randperm(len(pool))[: self.fisher_samples]]
        return diagonal_fisher(self.model, self.input_batches(pool), list(self.penalized))
