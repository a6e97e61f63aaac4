"""mode=ewc: online EWC (Schwarz et al. 2018) on top of experience replay, as in the paper."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS
from rainbow_runner.methods.regularization import RegularizedReplay, diagonal_fisher


@METHODS.register("ewc")
class EWC(RegularizedReplay):
    """After each task F ← gamma·F + F_task and θ* ← θ; every step adds reg_coef/2·Σ F(θ−θ*)².

    F_task is the diagonal Fisher on up to fisher_samples samples of the task ∪ the memory.
    The head is left out of the penalty (its rows grow with the classes).
    """

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        self.penalty_scale = float(self.options.reg_coef) / 2.0

    def after_task(self, task_id: int) -> None:
        task_fisher = self.task_fisher(self.trainer.split.train_tasks[task_id])
        gamma = float(self.options.gamma)
        importance = {
            name: gamma * self.importance[name] + value if name in self.importance else value
            for name, value in task_fisher.items()
        }
        self.consolidate(importance)

    def task_fisher(self, task_indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """The Fisher of the task just trained, on a random subset of task ∪ memory samples."""
        pool = torch.cat([task_indices, self.memory.indices])
        n_samples = int(self.options.fisher_samples)
        if 0 < n_samples < len(pool):
            pool = pool[torch.randperm(len(pool))[:n_samples]]
        trainer = self.trainer
        batches = (
            trainer.augmenter.normalize(trainer.fetch_images(chunk))
            for chunk in pool.split(int(trainer.cfg.batchsize))
        )
        return diagonal_fisher(self.model, batches, list(self.penalized))
