"""mode=gdumb: GDumb (Prabhu et al., ECCV 2020): a greedy class-balanced memory and a model
trained from scratch on that memory alone at every evaluation point."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from rainbow_runner.methods.base import METHODS, Method, MethodContext
from rainbow_runner.methods.functional import reinitialize


@METHODS.register("gdumb")
class GDumb(Method):
    """The stream only fills the memory; then the model is re-initialised, given a new
    optimizer, and trained n_epoch epochs on the memory (whatever stream= says).

    With eval_period on an online stream (the CLIB paper's protocol), the memory takes the
    stream in as it flows and each anytime point trains a copy of the model from scratch on
    the memory of that moment for anytime_epochs epochs, scores it and discards it.
    """

    needs_task_boundaries = True  # retrains from scratch on the memory at each task's end

    offline_only = True
    anytime_online = True
    trains_on_stream = False  # online (under eval_period): the stream only fills the memory

    def __init__(self, context: MethodContext, anytime_epochs: int = 256) -> None:
        super().__init__(context)
        if anytime_epochs < 1:
            raise ValueError(
                f"mode.anytime_epochs={anytime_epochs} must be a positive number of epochs on "
                f"the memory at each anytime point (the paper's code: 256)."
            )
        self.anytime_epochs = anytime_epochs

    def offline_pool(self, task_indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        return task_indices[:0], 0  # nothing is learned from the stream itself

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        super().end_stream(task_id, task_indices, streamed)
        reinitialize(self.model)
        self.context.new_optimizer()

    def memory_epochs(self) -> int:
        return self.context.settings.n_epoch

    def anytime_predictor(self) -> nn.Module | None:
        """A copy of the model, re-initialised and trained on the memory as it is now: as the
        paper's code, one warm-up epoch at lr/10, then cosine-annealed epochs at the run's
        optimizer settings; the run's model, optimizer and memory are left untouched."""
        indices, context = self.memory.indices, self.context
        if not len(indices) or context.optimizer is None:
            return None
        model = copy.deepcopy(self.model)
        reinitialize(model)
        model.train()
        optimizer = type(context.optimizer)(model.parameters(), **context.optimizer.defaults)
        lr = optimizer.defaults["lr"]
        batchsize = context.settings.batchsize
        labels = context.labels(indices)
        for epoch in range(self.anytime_epochs):
            rest = max(1, self.anytime_epochs - 1)
            scale = 0.1 if epoch == 0 else 0.5 * (1 + math.cos(math.pi * (epoch - 1) / rest))
            for group in optimizer.param_groups:
                group["lr"] = lr * scale
            order = torch.randperm(len(indices))
            for start in range(0, len(order), batchsize):
                rows = order[start : start + batchsize]
                images = context.fetch_images(indices[rows])
                x = context.normalize(context.augment(images))
                loss = F.cross_entropy(model(x), labels[rows.to(labels.device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return model
