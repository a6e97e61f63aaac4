"""mode=gdumb: GDumb (Prabhu et al., ECCV 2020): a greedy class-balanced memory and a model
trained from scratch on that memory alone at every evaluation point."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, Method
from rainbow_runner.methods.functional import reinitialize


@METHODS.register("gdumb")
class GDumb(Method):
    """The stream only fills the memory; then the model is re-initialised, given a new
    optimizer, and trained n_epoch epochs on the memory (whatever stream= says)."""

    needs_task_boundaries = True  # retrains from scratch on the memory at each task's end

    offline_only = True

    def offline_pool(self, task_indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        return task_indices[:0], 0  # nothing is learned from the stream itself

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        super().end_stream(task_id, task_indices, streamed)
        reinitialize(self.model)
        self.context.new_optimizer()

    def memory_epochs(self) -> int:
        return self.context.settings.n_epoch
