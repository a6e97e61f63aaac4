"""mode=er: experience replay (Chaudhry et al. 2019), memory samples drawn into every step."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, NO_ROWS, Method, MethodContext


@METHODS.register("er")
class ExperienceReplay(Method):
    """Every step trains on its stream batch plus mem_batchsize random memory samples, online
    and offline. With replay=concat, offline epochs instead shuffle the memory in with the
    task's samples (the paper's protocol: memory rows are then a small share of each batch).
    """

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.mem_batchsize = context.settings.mem_batchsize
        self.concat = not context.settings.online and context.settings.replay == "concat"

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        if self.concat or len(self.memory) == 0:
            return NO_ROWS
        return self.memory.sample(self.mem_batchsize)

    def offline_pool(self, task_indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        if not self.concat:
            return task_indices, len(task_indices)
        return torch.cat([task_indices, self.memory.indices]), len(task_indices)
