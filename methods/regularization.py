"""Quadratic weight penalties shared by EWC and RWalk: anchors θ*, importances, the penalty."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from rainbow_runner.datasets.augment.pipeline import MixedBatch
from rainbow_runner.methods.base import with_prefix, without_prefix
from rainbow_runner.methods.er import ExperienceReplay

HEAD_PREFIX = "head."


def penalized_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every trainable parameter except the growing head's (its rows change with the classes)."""
    return {
        name: param
        for name, param in model.named_parameters()
        if param.requires_grad and not name.startswith(HEAD_PREFIX)
    }


def _overlap(param: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """The leading slice of a parameter that existed when it was anchored (heads may grow)."""
    if param.shape == anchor.shape:
        return param
    return param[tuple(slice(0, n) for n in anchor.shape)]


def quadratic_penalty(
    params: dict[str, torch.Tensor],
    anchors: dict[str, torch.Tensor],
    importance: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Σ importance · (θ − θ*)² over the anchored parameters."""
    terms = [
        (importance[name] * (_overlap(params[name], anchor) - anchor).pow(2)).sum()
        for name, anchor in anchors.items()
    ]
    if not terms:
        return torch.zeros((), device=next(iter(params.values())).device)
    return torch.stack(terms).sum()


def diagonal_fisher(
    model: nn.Module, batches: Iterable[torch.Tensor], names: list[str]
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher as the reference estimates it: squared gradients of mini-batch CE at
    the model's own predictions, weighted by batch size, averaged over all samples (eval mode).
    """
    was_training = model.training
    model.eval()
    params = {name: param for name, param in model.named_parameters() if name in names}
    fisher = {name: torch.zeros_like(param) for name, param in params.items()}
    n_samples = 0
    for x in batches:
        logits = model(x)
        loss = F.cross_entropy(logits, logits.argmax(1).detach())
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for name, gradient in zip(params, grads, strict=True):
            if gradient is not None:
                fisher[name] += gradient.pow(2) * len(x)
        n_samples += len(x)
    model.train(was_training)
    return {name: value / max(n_samples, 1) for name, value in fisher.items()}


class RegularizedReplay(ExperienceReplay):
    """Experience replay plus penalty_scale · Σ importance · (θ − θ*)², added once per step."""

    penalty_scale: float  # each subclass sets it from its config, read once (steps use it)

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        self.anchors: dict[str, torch.Tensor] = {}
        self.importance: dict[str, torch.Tensor] = {}
        self._penalized: dict[str, torch.nn.Parameter] | None = None

    @property
    def penalized(self) -> dict[str, torch.nn.Parameter]:
        """penalized_parameters(model), looked up once: only the (excluded) head ever changes."""
        if self._penalized is None:
            self._penalized = penalized_parameters(self.model)
        return self._penalized

    def penalty(self) -> torch.Tensor:
        return self.penalty_scale * quadratic_penalty(self.penalized, self.anchors, self.importance)

    def loss(self, batch: MixedBatch) -> tuple[torch.Tensor, torch.Tensor]:
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
        self.anchors = without_prefix(state, "anchor.", self.trainer.device)
        self.importance = without_prefix(state, "importance.", self.trainer.device)
