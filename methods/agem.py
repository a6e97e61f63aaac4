"""mode=agem: A-GEM (Chaudhry et al., ICLR 2019): a step may not increase, to first order, the
loss on a sample of the episodic memory of earlier tasks; memory rows are never trained on."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rainbow_runner.methods.base import METHODS, Method, MethodContext, TrainBatch
from rainbow_runner.methods.gradients import (
    assign_flat_gradient,
    flat_gradient,
    loss_gradient,
    project_on_reference,
)


@METHODS.register("agem")
class AveragedGEM(Method):
    """Each step's stream gradient g is projected on the reference gradient g_ref of CE on
    sample_size memory samples of earlier tasks: g − (g·g_ref / g_ref·g_ref) g_ref when
    g·g_ref < 0, over every parameter with a gradient (the grown head's rows included).

    The reference is drawn when the step runs (stepwise_draws), from the memory's samples that
    are not the current task's (online, a streaming memory also holds the stream seen so far;
    A-GEM's constraint is about the past), augmented as training rows are and forwarded in the
    model's current mode: one more training forward, so BatchNorm's running statistics take
    one update from it, as in Avalanche and Mammoth. autograd.grad leaves .grad alone until
    the projected gradient is written back for the optimizer.
    """

    stepwise_draws = True

    def __init__(self, context: MethodContext, sample_size: int = 256) -> None:
        super().__init__(context)
        if sample_size < 1:
            raise ValueError(f"mode.sample_size={sample_size} must be 1 or more.")
        self.sample_size = sample_size

    def adjust_gradients(self, batch: TrainBatch) -> None:
        indices = self.reference_indices()
        if len(indices) == 0:
            return
        parameters = [param for param in self.model.parameters() if param.grad is not None]
        reference = loss_gradient(self.reference_loss(indices), parameters)
        projected = project_on_reference(flat_gradient(parameters), reference)
        assign_flat_gradient(parameters, projected)

    def reference_indices(self) -> torch.Tensor:
        """Up to sample_size memory samples of earlier tasks, drawn by the memory's generator."""
        stored = self.memory.indices
        current = self.context.split.train_tasks[self.context.task_id]
        past = stored[~torch.isin(stored, current)]
        if len(past) <= self.sample_size:
            return past
        drawn = self.memory.rng.choice(len(past), self.sample_size, replace=False)
        return past.index_select(0, torch.from_numpy(drawn))

    def reference_loss(self, indices: torch.Tensor) -> torch.Tensor:
        context = self.context
        x = context.normalize(context.augment(context.fetch_images(indices)))
        with context.precision.autocast():
            labels = context.labels(indices)
            return F.cross_entropy(context.task_logits(self.model(x), labels), labels)

    def memory_epochs(self) -> int:
        return 0  # A-GEM learns from the stream only; the memory constrains, it is not data
