"""mode=rm: Rainbow Memory (Bang et al., CVPR 2021): half-stream, half-memory batches."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from rainbow_runner.methods.base import METHODS, Method
from rainbow_runner.runner.reporting.results import write_csv_atomically

log = logging.getLogger(__name__)


@METHODS.register("rm")
class RainbowMemory(Method):
    """Every step trains on the incoming stream batch plus as many memory samples.

    The memory (mem_manage=default: uncertainty) is updated once the task's stream has been
    trained on; online, n_epoch epochs on the memory alone follow. Augmentation (the paper's
    cutmix + autoaug) is the top-level trans list. Each memory update is timed into
    results/memory_updates.csv and TensorBoard (memory/scoring_seconds, memory/update_seconds).
    """

    def online_batch(self, stream_indices: torch.Tensor) -> torch.Tensor:
        if len(self.memory) == 0:
            return stream_indices
        return torch.cat([stream_indices, self.memory.sample(len(stream_indices))])

    def offline_pool(self, task_indices: torch.Tensor) -> torch.Tensor:
        """The task's samples plus the memory cycled to as many, so batches are half and half."""
        n_memory, n_stream = len(self.memory), len(task_indices)
        if n_memory == 0:
            return task_indices
        rounds = -(-n_stream // n_memory)
        cycled = np.concatenate([self.memory.rng.permutation(n_memory) for _ in range(rounds)])
        return torch.cat([task_indices, self.memory.indices[torch.from_numpy(cycled[:n_stream])]])

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        started = time.perf_counter()
        super().end_stream(task_id, task_indices, streamed)
        update_seconds = time.perf_counter() - started
        scoring_seconds = float(getattr(self.memory, "scoring_seconds", 0.0))
        writer = self.trainer.writer
        writer.scalar("memory/update_seconds", update_seconds, task_id)
        writer.scalar("memory/scoring_seconds", scoring_seconds, task_id)
        uncertainty = getattr(self.memory, "last_uncertainty", None)
        if uncertainty is not None and len(uncertainty):
            writer.histogram("memory/candidate_uncertainty", uncertainty.numpy(), task_id)
        log.info(
            "memory update (%s) after task %d: %d kept, %.2fs (uncertainty scoring %.2fs)",
            self.trainer.cfg.mem_manage.name,
            task_id + 1,
            len(self.memory),
            update_seconds,
            scoring_seconds,
        )
        self._write_update_row(task_id, len(task_indices), update_seconds, scoring_seconds)

    def _write_update_row(
        self, task_id: int, n_stream: int, update_seconds: float, scoring_seconds: float
    ) -> None:
        """Rewrite memory_updates.csv keeping earlier tasks' rows (also those of a resumed run)."""
        path = self.trainer.writer.results_dir / "memory_updates.csv"
        rows = pd.read_csv(path) if path.exists() else pd.DataFrame()
        if len(rows):
            rows = rows[rows["task"] < task_id]
        row = {
            "task": task_id,
            "mem_manage": self.trainer.cfg.mem_manage.name,
            "n_stream": n_stream,
            "memory_size": len(self.memory),
            "update_seconds": round(update_seconds, 4),
            "scoring_seconds": round(scoring_seconds, 4),
        }
        frame = pd.concat([rows, pd.DataFrame([row])]) if len(rows) else pd.DataFrame([row])
        write_csv_atomically(frame, path)
