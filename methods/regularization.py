"""The regularisation family on top of experience replay: weight penalties that anchor the
weights of earlier tasks (EWC, RWalk, SI, MAS) and terms that keep the model close to its own
frozen copy from the end of the previous task (LwF, LFL). The mathematics is in
methods/functional.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
from torch import nn

from rainbow_runner.methods.base import MethodContext, TrainBatch, with_prefix, without_prefix
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import (
    frozen_copy,
    penalized_parameters,
    quadratic_penalty,
    teacher_from_state,
)


class RegularizedReplay(ExperienceReplay):
    """Experience replay plus penalty_scale · Σ importance · (θ − θ*)², added once per step."""

    needs_task_boundaries = True  # importances consolidated and anchor taken at each task's end

    penalty_scale: float  # each subclass sets it from its options, once (steps use it)
    # Per-parameter dicts (attributes) a checkpoint keeps beside anchors and importances.
    checkpointed: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.anchors: dict[str, torch.Tensor] = {}
        self.importance: dict[str, torch.Tensor] = {}
        self.previous: dict[str, torch.Tensor] = {}  # θ before the step (path integrals)
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

    def input_batches(self, indices: torch.Tensor) -> Iterator[torch.Tensor]:
        """The model's un-augmented input for training-set indices, a training batch at a time."""
        for chunk in indices.split(self.context.settings.batchsize):
            yield self.context.inputs(chunk)

    # --- path integrals (RWalk, SI) -----------------------------------------------------------

    def start_walk(self) -> None:
        """Take the current weights as the start of the next step."""
        self.previous = {name: param.detach().clone() for name, param in self.penalized.items()}

    @torch.no_grad()
    def walk_step(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """(name, g, δθ) for each penalised parameter the last step gave a gradient: g is the
        task loss's gradient at the step's start (the penalty's own gradient taken out), δθ the
        step. Every parameter's start then moves to where the step left it."""
        for name, param in self.penalized.items():
            before = self.previous[name]
            if param.grad is not None:
                gradient = param.grad
                if name in self.anchors:  # d/dθ of the penalty at the step's starting point
                    gradient = gradient - 2.0 * self.penalty_scale * self.importance[name] * (
                        before - self.anchors[name]
                    )
                yield name, gradient, param - before
            before.copy_(param)

    # --- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = with_prefix("anchor.", self.anchors) | with_prefix("importance.", self.importance)
        for name in self.checkpointed:
            state.update(with_prefix(f"{name}.", getattr(self, name)))
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.context.device
        self.anchors = without_prefix(state, "anchor.", device)
        self.importance = without_prefix(state, "importance.", device)
        for name in self.checkpointed:
            setattr(self, name, without_prefix(state, f"{name}.", device))


class DistilledReplay(ExperienceReplay):
    """Experience replay plus a term, from the second task on, towards the teacher: a frozen
    copy of the model taken at the end of the previous task (LwF's logits, LFL's features)."""

    needs_task_boundaries = True  # the teacher is the model at the previous task's end

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.teacher: nn.Module | None = None

    def after_task(self, task_id: int) -> None:
        self.teacher = frozen_copy(self.model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.teacher is None else with_prefix("teacher.", self.teacher.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        saved = without_prefix(state, "teacher.")
        self.teacher = teacher_from_state(self.model, saved) if saved else None


def per_task_values(option: str, value: float | Sequence[float]) -> tuple[float, ...]:
    """A knob given as one number or as one number per task (Avalanche's lists), checked."""
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not values or not numeric or any(v < 0 for v in values):
        raise ValueError(
            f"mode.{option}={value!r} is not a weight: give one number >= 0 (every task) or a "
            f"non-empty list of numbers >= 0, one per task (the last one serves the later tasks)."
        )
    return tuple(float(v) for v in values)


def for_task(values: tuple[float, ...], task_id: int) -> float:
    """The task's entry of a per-task knob; tasks past the list's end take its last entry."""
    return values[min(task_id, len(values) - 1)]
