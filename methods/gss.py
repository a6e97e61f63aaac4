"""mode=gss: Gradient-based Sample Selection, greedy variant (Aljundi et al., NeurIPS 2019):
experience replay from a memory that keeps the samples whose gradients are the least alike."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, MethodContext, TrainBatch
from rainbow_runner.methods.er import ExperienceReplay


@METHODS.register("gss")
class GradientSampleSelection(ExperienceReplay):
    """ER whose memory (default mem_manage=gss, memory/gss.py) scores each incoming sample by
    the model's gradients; the trainer binds the memory to the model and, online, trains then
    offers one incoming batch at a time.

    Offline, each stream sample is offered to the memory once, right after the first step that
    trained on it (as online, and as Avalanche's plugin takes in every training batch), instead
    of the whole task at once at its end: GSS-greedy's batch test and its replacements are
    per incoming batch. Draws are then step by step (stepwise_draws), so replay sees the memory
    as it is.
    """

    stepwise_draws = True

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        # Offline, a streaming memory takes samples in step by step (another chooses per task).
        self.per_step_intake = not context.settings.online and context.memory.streaming
        self.offered = torch.zeros(len(context.train_labels), dtype=torch.bool)

    def update(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        result = super().update(batch)
        if self.per_step_intake:
            stream = ~batch.memory_flags.cpu() if batch.memory_flags is not None else None
            self.offer(batch.indices[: batch.n_stream] if stream is None else batch.indices[stream])
        return result

    def offer(self, indices: torch.Tensor) -> None:
        """Stream samples not offered before go to the memory, in their order."""
        fresh = indices[~self.offered[indices]]
        if len(fresh) and self.uses_memory:
            self.offered[fresh] = True
            self.observe_stream(fresh)

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        if self.per_step_intake:  # every step offered its samples (none left but with 0 epochs)
            self.offer(task_indices)
        else:
            super().end_stream(task_id, task_indices, streamed)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"offered": self.offered}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.offered = state["offered"].cpu().bool()
