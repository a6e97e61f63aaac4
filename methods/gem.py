"""mode=gem: Gradient Episodic Memory (Lopez-Paz & Ranzato, NeurIPS 2017): a step may not
increase, to first order, the loss on any earlier task's episodic memory."""

from __future__ import annotations

import torch

from rainbow_runner.methods.agem import AveragedGEM
from rainbow_runner.methods.base import METHODS, MethodContext, TrainBatch
from rainbow_runner.methods.gradients import (
    assign_flat_gradient,
    flat_gradient,
    loss_gradient,
    project_on_cone,
)


@METHODS.register("gem")
class GradientEpisodicMemory(AveragedGEM):
    """One constraint per earlier task: the gradient G_k of CE on up to patterns_per_experience
    of task k's stored samples. When the stream gradient g has g·G_k < 0 for some k, it is
    replaced by the solution of GEM's dual QP (functional.project_on_cone, margin
    memory_strength); otherwise it is left as it is.

    The memory's task ids say which task a stored sample belongs to (the stream's tasks, in
    blurry splits too), so the memory must keep them (the default: GEM's ring buffer with a
    fixed share per task). As in A-GEM (whose reference forward, stepwise draws and stream-only
    training this reuses), memory samples are augmented as training rows and forwarded in
    the model's current mode, and memory rows are never trained on.
    """

    needs_task_boundaries = True  # one constraint per earlier task

    def __init__(
        self,
        context: MethodContext,
        patterns_per_experience: int = 256,
        memory_strength: float = 0.5,
    ) -> None:
        if patterns_per_experience < 1:
            raise ValueError(
                f"mode.patterns_per_experience={patterns_per_experience} must be 1 or more."
            )
        if memory_strength < 0:
            raise ValueError(f"mode.memory_strength={memory_strength} must be 0 or more.")
        if not context.memory.keeps_task_ids and context.memory.capacity > 0:
            raise ValueError(
                f"mode=gem keeps one constraint per earlier task and needs a memory that keeps "
                f"each sample's task id (ring, experience_balanced, class_balanced, random, "
                f"herding, ...), not mem_manage={context.settings.memory_name}."
            )
        super().__init__(context, patterns_per_experience)
        self.memory_strength = float(memory_strength)

    def adjust_gradients(self, batch: TrainBatch) -> None:
        groups = self.task_groups()
        if not groups:
            return
        parameters = [param for param in self.model.parameters() if param.grad is not None]
        memories = torch.stack(
            [loss_gradient(self.reference_loss(indices), parameters) for indices in groups]
        )
        projected = project_on_cone(flat_gradient(parameters), memories, self.memory_strength)
        assign_flat_gradient(parameters, projected)

    def task_groups(self) -> list[torch.Tensor]:
        """Per earlier task with stored samples, up to patterns_per_experience of them (drawn
        by the memory's generator when more are stored)."""
        stored, task_ids = self.memory.indices, self.memory.stored_task_ids()
        groups = []
        for task in range(self.context.task_id):
            mine = stored[task_ids == task]
            if len(mine) > self.sample_size:
                drawn = self.memory.rng.choice(len(mine), self.sample_size, replace=False)
                mine = mine.index_select(0, torch.from_numpy(drawn))
            if len(mine):
                groups.append(mine)
        return groups
