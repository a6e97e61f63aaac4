"""mode=si: Synaptic Intelligence (Zenke et al., ICML 2017) on top of experience replay."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, MethodContext
from rainbow_runner.methods.functional import path_integral_importance
from rainbow_runner.methods.regularization import RegularizedReplay


@METHODS.register("si")
class SynapticIntelligence(RegularizedReplay):
    """Every step: path ω += −g·δθ, g the task loss's gradient (the penalty's own gradient is
    taken out). After each task: Ω ← min(Ω + max(ω, 0)/(Δ² + eps), clip_to), Δ the task's
    whole change, θ* ← θ. Penalty: si_lambda/2 · Σ Ω (θ − θ*)², all parameters but the head.
    """

    checkpointed = ("previous", "task_start", "path")

    def __init__(
        self,
        context: MethodContext,
        si_lambda: float = 1.0,
        eps: float = 1e-7,
        clip_to: float = 1e-3,
    ) -> None:
        super().__init__(context)
        self.penalty_scale = float(si_lambda) / 2.0
        self.eps, self.clip_to = float(eps), float(clip_to)
        self.task_start: dict[str, torch.Tensor] = {}
        self.path: dict[str, torch.Tensor] = {}

    def before_task(self, task_id: int) -> None:
        self.start_walk()
        self.task_start = {name: value.clone() for name, value in self.previous.items()}
        self.path = {name: torch.zeros_like(value) for name, value in self.previous.items()}

    @torch.no_grad()
    def after_step(self) -> None:
        for name, gradient, delta in self.walk_step():
            self.path[name] -= gradient * delta

    @torch.no_grad()
    def after_task(self, task_id: int) -> None:
        importance = {}
        for name, param in self.penalized.items():
            change = param - self.task_start[name]
            task = path_integral_importance(self.path[name], change, self.eps)
            total = task + self.importance[name] if name in self.importance else task
            importance[name] = total.clamp(max=self.clip_to)
        self.consolidate(importance)
