"""The running training loss and accuracy: one kernel per step, added up once per log window."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# Steps whose loss and predictions may wait for the window's flush to be added up: bounds their
# memory at a large log_every. The sums are taken at fixed steps (checkpoints keep the pending
# steps), so a resumed run adds up the same numbers in the same order.
MAX_PENDING_STEPS = 512


class NonFiniteLossError(RuntimeError):
    """Training diverged; results of the finished tasks are already on disk."""


@dataclass
class WindowStats:
    """A log window's mean training loss and accuracy (%)."""

    loss: float
    accuracy: float


class RunningSums:
    """The log window's and the task's running sums; no host sync until a window is flushed."""

    # The checkpoint keys (runner/run_state.py): renaming one breaks resuming older runs.
    STATE = ("loss_sum", "correct_sum", "seen_sum", "window_steps", "task_loss_sum")
    STATE += ("task_steps", "step_losses", "step_predictions")

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        """Zero the window's and the task's sums (a task starts)."""
        zero = torch.zeros((), device=self.device)
        self.loss_sum, self.correct_sum, self.seen_sum = zero.clone(), zero.clone(), 0
        self.window_steps = 0
        self.task_loss_sum, self.task_steps = zero.clone(), 0
        self.step_losses: list[torch.Tensor] = []  # steps not yet in loss_sum and correct_sum
        self.step_predictions: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add_step(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Record one step: its loss and predictions wait for the window's flush."""
        self.step_losses.append(loss.detach())
        self.step_predictions.append((logits.argmax(1), labels))
        if len(self.step_losses) >= MAX_PENDING_STEPS:
            self._add_up_steps()
        self.task_steps += 1
        self.seen_sum += len(labels)
        self.window_steps += 1

    def _add_up_steps(self) -> None:
        """Take the pending steps' losses and correct predictions into the window's sums."""
        if not self.step_losses:
            return
        self.loss_sum += torch.stack(self.step_losses).sum()
        columns = zip(*self.step_predictions, strict=True)
        predicted, labels = (torch.cat(column) for column in columns)
        self.correct_sum += (predicted == labels).sum()
        self.step_losses, self.step_predictions = [], []

    def flush(self, where: Callable[[], str]) -> WindowStats | None:
        """Close the window (one host sync): its means, or None if it had no steps.

        A non-finite mean loss raises NonFiniteLossError, completed by where()'s text.
        """
        if self.window_steps == 0:
            return None
        self._add_up_steps()
        mean_loss = (self.loss_sum / self.window_steps).item()
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(f"the training loss became {mean_loss} {where()}")
        accuracy = 100.0 * self.correct_sum.item() / max(int(self.seen_sum), 1)
        self.task_loss_sum += self.loss_sum
        self.loss_sum.zero_()
        self.correct_sum.zero_()
        self.seen_sum = 0
        self.window_steps = 0
        return WindowStats(mean_loss, accuracy)

    def task_loss(self) -> float:
        """Mean training loss over the task's flushed steps."""
        return (self.task_loss_sum / max(self.task_steps, 1)).item()

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, _on_device(value, self.device))


def _on_device(value: Any, device: torch.device) -> Any:
    """A copy of value with its tensors (also inside lists and tuples) on the device."""
    if isinstance(value, torch.Tensor):
        return value.to(device, copy=True)
    if isinstance(value, list | tuple):
        return type(value)(_on_device(item, device) for item in value)
    return value
