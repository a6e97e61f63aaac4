"""The weight-penalty family (EWC, RWalk): experience replay plus a quadratic penalty that
anchors the weights of earlier tasks; the mathematics is in methods/functional.py."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import MethodContext, TrainBatch, with_prefix, without_prefix
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import penalized_parameters, quadratic_penalty


class RegularizedReplay(ExperienceReplay):
    """Experience replay plus penalty_scale · Σ importance · (θ − θ*)², added once per step."""

    penalty_scale: float  # each subclass sets it from its options, once (steps use it)

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.anchors: dict[str, torch.Tensor] = {}
        self.importance: dict[str, torch.Tensor] = {}
        # Every trainable parameter but the growing head's: only the (excluded) head changes.
        self.penalized = penalized_parameters(self.model)

    def penalty(self) -> torch.Tensor:
        return self.penalty_scale * quadratic_penalty(self.penalized, self.anchors, self.importance)

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        loss, logits = super().loss(batch)
        if self.anchors:
            loss = loss + self.penalty()
        return loss, logits

    def consolidate(self, importance: dict[str, torch.Tensor]) -> None:
        """Anchor the penalty at the current weights with the given importances."""
        self.anchors = {name: param.detach().clone() for name, param in self.penalized.items()}
        self.importance = {name: value.detach().clone() for name, value in importance.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return with_prefix("anchor.", self.anchors) | with_prefix("importance.", self.importance)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.context.device
        self.anchors = without_prefix(state, "anchor.", device)
        self.importance = without_prefix(state, "importance.", device)
