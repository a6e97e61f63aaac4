"""A run's state between steps: what it measured, where it stands, and its checkpoint content.

runner/checkpoint.py writes and reads the file; this module says what goes into it and how the
trainer is put back from it. The keys are the checkpoint format: renaming one breaks resuming.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rainbow_runner.runner.checkpoint import rng_state, set_rng_state

if TYPE_CHECKING:
    from rainbow_runner.runner.trainer import Trainer

STREAM_PHASE, MEMORY_PHASE = 0, 1  # a task's stream (online pass or epochs), then memory epochs


@dataclass
class RunRecord:
    """What the run has measured so far: enough to compute every metric."""

    task_accuracy: list[float] = field(default_factory=list)
    acc_matrix: list[np.ndarray] = field(default_factory=list)
    untrained_group_accuracy: np.ndarray | None = None
    seconds: float = 0.0

    def state_dict(self, seconds: float) -> dict[str, Any]:
        """The record as checkpoint content, with the run's wall-clock seconds so far."""
        return {
            "task_accuracy": list(self.task_accuracy),
            "acc_matrix": list(self.acc_matrix),
            "untrained_group_accuracy": self.untrained_group_accuracy,
            "seconds": seconds,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RunRecord:
        """The record a checkpoint holds (tensors back to numpy)."""
        return cls(
            task_accuracy=list(state["task_accuracy"]),
            acc_matrix=[np.asarray(row) for row in state["acc_matrix"]],
            untrained_group_accuracy=np.asarray(state["untrained_group_accuracy"]),
            seconds=float(state["seconds"]),
        )


@dataclass
class StreamPosition:
    """Where a checkpointed run stands: a task and, inside it, how far its data stream got."""

    task: int = 0
    inside: bool = False  # False: at the start of `task`; True: inside it, as below
    phase: int = STREAM_PHASE
    epoch: int = 0  # epoch within the phase
    batch: int = 0  # samples of the epoch (or online pass) already trained on
    order: torch.Tensor | None = None  # the epoch's shuffled order (None for the online pass)
    warm: bool = False  # the epoch runs at the warm-up lr
    seconds: float = 0.0  # wall-clock seconds the task had run
    memory_flags: torch.Tensor | None = None  # which rows of `order` are memory samples


@dataclass
class ResumePoint:
    """Where a run picks up: its first task and, if it stopped inside that task, how far it got."""

    first_task: int = 0
    position: StreamPosition | None = None  # None: at the start of first_task (or a fresh run)

    @classmethod
    def at(cls, position: StreamPosition) -> ResumePoint:
        """Continue from a saved position, at a task's start or inside it."""
        return cls(position.task, position if position.inside else None)

    def already_done(self, phase: int, epoch: int) -> bool:
        """Whether a run resumed inside this task had finished this epoch before it stopped."""
        at = self.position
        return at is not None and (phase, epoch) < (at.phase, at.epoch)

    def continue_at(self, phase: int, epoch: int) -> StreamPosition | None:
        """The saved position if the resumed run stopped inside this epoch (handed out once)."""
        at = self.position
        if at is None or (at.phase, at.epoch) != (phase, epoch):
            return None
        self.position = None
        return at


def trainer_state_dict(trainer: Trainer, position: StreamPosition) -> dict[str, Any]:
    """Everything needed to continue the trainer's run exactly from `position`."""
    # Each task starts with a fresh optimizer, so only a checkpoint inside a task needs one
    # (or any checkpoint of a task-free stream, whose optimizer runs through the periods).
    with_optimizer = position.inside or not trainer.task_boundaries
    return {
        "position": dict(vars(position)),
        "global_step": trainer.steps.global_step,
        "head_size": trainer.model.n_classes,
        "model": trainer.model.state_dict(),
        **trainer.schedule.state_dict(with_optimizer=with_optimizer),
        "method": trainer.method.state_dict(),
        "memory": trainer.memory.state_dict(),
        "running": trainer.steps.running.state_dict(),
        "record": trainer.record.state_dict(time.perf_counter() - trainer.run_started),
        "results": trainer.writer.state_dict(),
        "anytime": trainer.anytime.state_dict(),
        "rng": rng_state(),
        "early_stopping": stopping.state_dict() if (stopping := trainer.early_stopping) else None,
    }


def load_trainer_state(trainer: Trainer, state: dict[str, Any]) -> None:
    """Put the trainer back as trainer_state_dict() found it; the random streams come last."""
    position = StreamPosition(**state["position"])
    trainer.steps.global_step = int(state["global_step"])
    trainer.n_exposed = trainer.context.n_exposed = int(state["head_size"])
    trainer.task_id = trainer.context.task_id = position.task
    trainer.model.grow(trainer.n_exposed)
    trainer.model.load_state_dict(state["model"])
    if state["optimizer"] is not None:  # inside a task (or task-free): as train_task built it
        trainer.method.prepare_model()
        trainer.new_optimizer()
    trainer.schedule.load_state_dict(state)
    trainer.method.load_state_dict(state["method"])
    trainer.memory.load_state_dict({k: np.asarray(v) for k, v in state["memory"].items()})
    trainer.steps.running.load_state_dict(state["running"])
    if trainer.early_stopping is not None and state.get("early_stopping") is not None:
        trainer.early_stopping.load_state_dict(state["early_stopping"])
    trainer.record = RunRecord.from_state_dict(state["record"])
    trainer.writer.load_state_dict(state["results"])
    trainer.anytime.load_state_dict(state.get("anytime"))  # absent from older checkpoints
    trainer.resume = ResumePoint.at(position)
    if trainer.checkpointer is not None:
        trainer.checkpointer.last_step = trainer.steps.global_step
    set_rng_state(state["rng"])


def checkpoint_inside(
    trainer: Trainer,
    phase: int,
    epoch: int,
    batch: int,
    order: torch.Tensor | None,
    warm: bool,
    flags: torch.Tensor | None = None,
) -> None:
    """A mid-task checkpoint once checkpoint_every steps have passed since the last one."""
    if trainer.checkpointer is None or not trainer.checkpointer.due(trainer.steps.global_step):
        return
    seconds = time.perf_counter() - trainer.task_started
    position = StreamPosition(trainer.task_id, True, phase, epoch, batch, order, warm, seconds)
    position.memory_flags = flags
    trainer.checkpointer.save(trainer_state_dict(trainer, position))
