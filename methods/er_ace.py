"""mode=er_ace: experience replay with the asymmetric cross-entropy (Caccia et al., ICLR 2022):
the stream batch's CE does not push the logits of classes it does not hold."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, MethodContext, TrainBatch
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import asymmetric_cross_entropy

OFFLINE_INTAKES = ("start", "end")


@METHODS.register("er_ace")
class AsymmetricExperienceReplay(ExperienceReplay):
    """ER's batches (stream rows + mem_batchsize memory rows, or the concat pool); the stream
    rows' CE is over the classes present among them only (the other logits are masked and get
    no gradient), the memory rows' CE is over every exposed class; the loss is the mean of the
    two terms. Rows of a memory epoch are all memory rows: plain CE.

    Offline, the memory takes the task's samples in at the task's start (offline_intake=start,
    Avalanche's ER_ACE): the memory rows then include the new classes, and their full CE ranks
    them against the old ones while the task trains; `end` is er's update after the task.
    """

    def __init__(self, context: MethodContext, offline_intake: str = "start") -> None:
        super().__init__(context)
        if offline_intake not in OFFLINE_INTAKES:
            valid = ", ".join(OFFLINE_INTAKES)
            raise ValueError(f"mode.offline_intake={offline_intake!r} is not one of {valid}.")
        self.intake_at_start = offline_intake == "start" and not context.settings.online

    def before_task(self, task_id: int) -> None:
        super().before_task(task_id)
        if self.intake_at_start:
            super().end_stream(task_id, self.context.split.train_tasks[task_id], streamed=False)

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        if not self.intake_at_start:  # else taken in at the task's start
            super().end_stream(task_id, task_indices, streamed)

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch.x)
        if batch.memory_flags is None:
            stream, memory = slice(0, batch.n_stream), slice(batch.n_stream, None)
        else:
            memory = batch.from_memory
            stream = ~memory
        return asymmetric_cross_entropy(logits, batch, stream, memory), logits
