"""Switches every mode accepts, as Avalanche's plugins: gradient clipping and early stopping.

grad_clip wraps the step of the run's precision (after adjust_gradients, on unscaled
gradients); patience holds a validation share out of each task's training samples and stops
the task's offline epochs when the accuracy on it stops improving. The learning-rate schedule's
granularity (lr_schedule_per) lives in runner/schedule.py.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.methods.base import Precision
from rainbow_runner.runner.evaluation import evaluate_test_set
from rainbow_runner.runner.schema import ConfigError

if TYPE_CHECKING:
    from rainbow_runner.runner.trainer import Trainer

log = logging.getLogger(__name__)


class GradientClipping:
    """The run's precision, whose step() first clips the total gradient norm of the optimizer's
    parameters to max_norm (torch.nn.utils.clip_grad_norm_, as Avalanche's trainers do)."""

    def __init__(self, precision: Precision, max_norm: float) -> None:
        self.precision, self.max_norm = precision, max_norm

    def __getattr__(self, name: str) -> Any:  # autocast, backward, scaler, mode, ...
        return getattr(self.precision, name)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip, then step: backward() has already unscaled fp16 gradients."""
        grads = [
            p for group in optimizer.param_groups for p in group["params"] if p.grad is not None
        ]
        if grads:
            torch.nn.utils.clip_grad_norm_(grads, self.max_norm)
        self.precision.step(optimizer)


def with_gradient_clipping(precision: Precision, max_norm: float | None) -> Precision:
    """The precision itself when grad_clip is off (0 or null): the default path is unchanged."""
    return GradientClipping(precision, float(max_norm)) if max_norm else precision


def check_early_stopping(cfg: DictConfig, online: bool) -> None:
    """patience needs offline epochs: an online task is one pass, with nothing to stop early."""
    if int(cfg.get("patience") or 0) > 0 and online:
        raise ConfigError(
            f"patience={cfg.patience} stops a task's offline epochs early, but stream=online "
            f"trains each task in one pass (mode={cfg.mode.name}); use stream=offline with "
            f"n_epoch > 1, or patience=0."
        )


def validation_split(cfg: DictConfig, split: TaskSplit) -> tuple[TaskSplit, list | None]:
    """With patience > 0, the split less each task's validation rows, and those rows."""
    if int(cfg.get("patience") or 0) == 0:
        return split, None
    return hold_out_validation(split, float(cfg.val_share), int(cfg.split_seed))


def hold_out_validation(split: TaskSplit, share: float, seed: int) -> tuple[TaskSplit, list]:
    """Each task's training samples less a share held out for validation (drawn from seed:
    the same rows for every run of the split), and the held-out rows per task."""
    generator = torch.Generator().manual_seed(seed)
    kept, held_out = [], []
    for task in split.train_tasks:
        n_held = min(len(task) - 1, max(1, round(share * len(task)))) if len(task) > 1 else 0
        held = torch.zeros(len(task), dtype=torch.bool)
        held[torch.randperm(len(task), generator=generator)[:n_held]] = True
        kept.append(task[~held])  # the stream keeps its order
        held_out.append(task[held])
    return dataclasses.replace(split, train_tasks=kept), held_out


class EarlyStopping:
    """Stops a task's offline epochs after `patience` epochs without a better accuracy on the
    held-out rows of the tasks so far (the accuracy before the first epoch is the first best).

    restore_best: the task ends with the weights of its best validation accuracy (Avalanche
    0.6.0's EarlyStoppingPlugin reloads them when it stops); false keeps the last weights.
    """

    def __init__(
        self,
        patience: int,
        restore_best: bool,
        held_out: list[torch.Tensor],
        validation_accuracy: Callable[[torch.Tensor], float],
        model: torch.nn.Module,
    ) -> None:
        self.patience, self.restore_best, self.held_out = patience, restore_best, held_out
        self.validation_accuracy, self.model = validation_accuracy, model
        self.epochs_trained: list[int] = []  # per task: offline epochs run before it stopped
        self.task, self.ended = -1, True
        self.rows = held_out[0][:0]
        self.best, self.best_state, self.since_best = float("-inf"), None, 0

    def begin_task(self, task_id: int) -> None:
        """Measure the starting accuracy on the held-out rows of tasks 0..task_id."""
        self.task, self.ended = task_id, False
        self.rows = torch.cat(self.held_out[: task_id + 1])
        self.best, self.since_best, self.best_state = float("-inf"), 0, None
        self.epochs_trained.append(0)
        self._measure()

    def after_epoch(self) -> bool:
        """After each offline epoch: True when `patience` epochs have brought no improvement."""
        self.epochs_trained[-1] += 1
        return self._measure() >= self.patience

    def end_task(self, task_id: int) -> None:
        """Once per task (a run resumed after it has ended it already): the best weights back."""
        if self.ended:
            return
        self.ended = True
        if self.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        log.info(
            "early stopping: task %d trained %d epoch(s), best validation accuracy %.2f%%",
            task_id + 1,
            self.epochs_trained[-1],
            self.best,
        )

    def state_dict(self) -> dict[str, Any]:
        """The count and best so far, for a checkpoint inside a task."""
        return {
            "task": self.task,
            "ended": self.ended,
            "epochs_trained": list(self.epochs_trained),
            "best": self.best,
            "since_best": self.since_best,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task, self.ended = int(state["task"]), bool(state["ended"])
        self.epochs_trained = [int(n) for n in state["epochs_trained"]]
        self.best, self.since_best = float(state["best"]), int(state["since_best"])
        self.best_state = state["best_state"]
        if self.task >= 0:
            self.rows = torch.cat(self.held_out[: self.task + 1])

    def _measure(self) -> int:
        """Validation accuracy now; returns the epochs since the best one."""
        accuracy = self.validation_accuracy(self.rows)
        if accuracy > self.best:
            self.best, self.since_best = accuracy, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.since_best += 1
        return self.since_best


def make_early_stopping(trainer: Trainer, held_out: list | None) -> EarlyStopping | None:
    """The trainer's early stopping over the held-out rows (None when patience is 0)."""
    if held_out is None:
        return None

    def accuracy(rows: torch.Tensor) -> float:
        """The method's accuracy (its predict) on training rows, unaugmented, as on the test set."""
        return evaluate_test_set(
            trainer.model,
            trainer.method.predict,
            trainer.fetch_images(rows),
            trainer.train_labels_cpu.index_select(0, rows).to(trainer.device),
            split=trainer.split,
            n_groups=trainer.context.n_groups,
            n_exposed=trainer.n_exposed,
            topk=1,
            batchsize=int(trainer.cfg.eval_batchsize),
            device=trainer.device,
            normalize=trainer.augmenter.normalize,
            precision=trainer.precision,
        ).accuracy

    cfg = trainer.cfg
    return EarlyStopping(
        int(cfg.patience), bool(cfg.restore_best), held_out, accuracy, trainer.model
    )
