"""mode=rm: Rainbow Memory (Bang et al., CVPR 2021): half-stream, half-memory batches."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from rainbow_runner.methods.base import METHODS, NO_ROWS, Method

log = logging.getLogger(__name__)


@METHODS.register("rm")
class RainbowMemory(Method):
    """Every step trains on the incoming stream batch plus as many memory samples.

    The memory (mem_manage=default: uncertainty) is updated once the task's stream has been
    trained on; online, n_epoch epochs on the memory alone follow. Augmentation (the paper's
    cutmix + autoaug) is the top-level trans list. Each memory update is timed into
    results/memory_updates.csv and TensorBoard (memory/scoring_seconds, memory/update_seconds).
    """

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        if not self.context.settings.online or len(self.memory) == 0:
            return NO_ROWS  # offline, the pool already holds the memory (offline_pool)
        return self.memory.sample(len(stream_indices))

    def offline_pool(self, task_indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The task's samples plus the memory cycled to as many, so batches are half and half."""
        n_memory, n_stream = len(self.memory), len(task_indices)
        if n_memory == 0:
            return task_indices, n_stream
        rounds = -(-n_stream // n_memory)
        cycled = np.concatenate([self.memory.rng.permutation(n_memory) for _ in range(rounds)])
        replayed = self.memory.indices[torch.from_numpy(cycled[:n_stream])]
        return torch.cat([task_indices, replayed]), n_stream

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        started = time.perf_counter()
        super().end_stream(task_id, task_indices, streamed)
        update_seconds = time.perf_counter() - started
        report = self.memory.update_report()
        scoring_seconds = float(report.get("scoring_seconds", 0.0))
        writer = self.context.writer
        writer.scalar("memory/update_seconds", update_seconds, task_id, "task")
        writer.scalar("memory/scoring_seconds", scoring_seconds, task_id, "task")
        uncertainty = report.get("uncertainty")
        if uncertainty is not None and len(uncertainty):
            writer.histogram("memory/candidate_uncertainty", np.asarray(uncertainty), task_id)
        memory_name = self.context.settings.memory_name
        log.info(
            "memory update (%s) after task %d: %d kept, %.2fs (uncertainty scoring %.2fs)",
            memory_name,
            task_id + 1,
            len(self.memory),
            update_seconds,
            scoring_seconds,
        )
        row = {
            "task": task_id,
            "mem_manage": memory_name,
            "n_stream": len(task_indices),
            "memory_size": len(self.memory),
            "update_seconds": round(update_seconds, 4),
            "scoring_seconds": round(scoring_seconds, 4),
        }
        writer.write_task_row("memory_updates", row)
