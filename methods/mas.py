"""mode=mas: Memory Aware Synapses (Aljundi et al., ECCV 2018) on top of experience replay."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, MethodContext
from rainbow_runner.methods.functional import output_norm_importance
from rainbow_runner.methods.regularization import RegularizedReplay


@METHODS.register("mas")
class MAS(RegularizedReplay):
    """After each task: Ω_task = mean |∇ ‖f(x)‖₂| over the task's samples (no labels needed),
    Ω ← alpha·Ω + (1 − alpha)·Ω_task (Ω = 0 before the first task), θ* ← θ.
    Penalty: lambda_reg/2 · Σ Ω (θ − θ*)², all parameters but the head.
    """

    def __init__(self, context: MethodContext, lambda_reg: float = 1.0, alpha: float = 0.5) -> None:
        super().__init__(context)
        self.penalty_scale = float(lambda_reg) / 2.0
        self.alpha = float(alpha)

    def after_task(self, task_id: int) -> None:
        task_indices = self.context.split.train_tasks[task_id]
        names = list(self.penalized)
        current = output_norm_importance(self.model, self.input_batches(task_indices), names)
        previous = self.importance or {name: torch.zeros_like(v) for name, v in current.items()}
        alpha = self.alpha
        self.consolidate(
            {name: alpha * previous[name] + (1.0 - alpha) * current[name] for name in current}
        )
