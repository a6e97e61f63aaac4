"""mode=rwalk: Riemannian Walk (Chaudhry et al., ECCV 2018) on top of experience replay."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, MethodContext
from rainbow_runner.methods.regularization import RegularizedReplay


def normalized(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scale a set of non-negative importances so the largest over all tensors is 1."""
    peak = torch.stack([value.max() for value in values.values()]).max()
    return {name: value / peak.clamp(min=1e-12) for name, value in values.items()}


@METHODS.register("rwalk")
class RWalk(RegularizedReplay):
    """Every step: Fisher EMA F ← (1−alpha)·F + alpha·g² and path-integral score
    s += relu(−g·Δθ / (½·F·Δθ² + epsilon)), with g the task loss's gradient (the penalty's own
    gradient is taken out). After each task: S ← (S + s)/2 (S = s after the first task),
    importance = F/max F + S/max S, θ* ← θ. Penalty: reg_coef · Σ importance · (θ − θ*)².
    """

    checkpointed = ("fisher", "task_score", "score", "previous")
    needs_task_boundaries = True  # scores merged and anchor taken at each task's end

    def __init__(
        self,
        context: MethodContext,
        reg_coef: float = 1.0,
        alpha: float = 0.9,
        epsilon: float = 1e-3,
    ) -> None:
        super().__init__(context)
        self.fisher: dict[str, torch.Tensor] = {}
        self.task_score: dict[str, torch.Tensor] = {}
        self.score: dict[str, torch.Tensor] = {}
        self.penalty_scale = float(reg_coef)
        self.alpha, self.epsilon = float(alpha), float(epsilon)

    def before_task(self, task_id: int) -> None:
        self.start_walk()
        for name, param in self.penalized.items():
            self.task_score.setdefault(name, torch.zeros_like(param))

    @torch.no_grad()
    def after_step(self) -> None:
        alpha, epsilon = self.alpha, self.epsilon
        for name, gradient, delta in self.walk_step():
            squared = gradient.pow(2)
            fisher = self.fisher.get(name)
            fisher = squared if fisher is None else (1.0 - alpha) * fisher + alpha * squared
            self.fisher[name] = fisher
            path = -gradient * delta / (0.5 * fisher * delta.pow(2) + epsilon)
            self.task_score[name] += path.clamp(min=0.0)

    def after_task(self, task_id: int) -> None:
        if not self.fisher:
            return
        if self.score:
            self.score = {
                name: 0.5 * (self.score[name] + value) for name, value in self.task_score.items()
            }
        else:
            self.score = {name: value.clone() for name, value in self.task_score.items()}
        fisher, score = normalized(self.fisher), normalized(self.score)
        self.consolidate({name: fisher[name] + score[name] for name in fisher})
        self.task_score = {name: torch.zeros_like(value) for name, value in self.score.items()}
