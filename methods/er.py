"""mode=er: experience replay, each step mixing stream and memory samples."""

import torch

from rainbow_runner.methods.base import METHODS, Method


@METHODS.register("er")
class ExperienceReplay(Method):
    """Online: each incoming batch plus mem_batchsize memory samples; offline: stream ∪ memory."""

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        self.mem_batchsize = int(trainer.cfg.mem_batchsize)  # read once: a config read is ~7 us

    def online_batch(self, stream_indices: torch.Tensor) -> torch.Tensor:
        if len(self.memory) == 0:
            return stream_indices
        return torch.cat([stream_indices, self.memory.sample(self.mem_batchsize)])

    def offline_pool(self, task_indices: torch.Tensor) -> torch.Tensor:
        return torch.cat([task_indices, self.memory.indices])
