"""mode=gdumb: GDumb (Prabhu et al., ECCV 2020): a greedy class-balanced memory and a model
trained from scratch on that memory alone at every evaluation point."""

from __future__ import annotations

import torch
from torch import nn

from rainbow_runner.methods.base import METHODS, Method


def reinitialize(model: nn.Module) -> None:
    """Fresh random weights in place (every layer's own init, the growing head's included)."""
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()


@METHODS.register("gdumb")
class GDumb(Method):
    """The stream only fills the memory; then the model is re-initialised, given a new
    optimizer, and trained n_epoch epochs on the memory (whatever stream= says)."""

    offline_only = True

    def offline_pool(self, task_indices: torch.Tensor) -> torch.Tensor:
        return task_indices[:0]  # nothing is learned from the stream itself

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        super().end_stream(task_id, task_indices, streamed)
        reinitialize(self.model)
        self.trainer.new_optimizer()

    def memory_epochs(self, online: bool) -> int:
        return int(self.trainer.cfg.n_epoch)
