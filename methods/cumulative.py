"""mode=cumulative: retrain on all the data seen so far at every task (Avalanche's Cumulative)."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, NO_ROWS, Method, MethodContext


@METHODS.register("cumulative")
class Cumulative(Method):
    """Offline: every epoch of task t shuffles all training samples of tasks 0..t (the earlier
    tasks' rows count as replayed). Online: each step of task t's stream adds mem_batchsize
    samples drawn uniformly (with replacement) from all training samples of tasks 0..t−1.
    The earlier tasks' data is kept whole: no memory, no memory epochs.
    """

    needs_task_boundaries = True  # the pool is every earlier task's data

    uses_memory = False

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.mem_batchsize = context.settings.mem_batchsize
        self.generator = torch.Generator().manual_seed(context.settings.seed)
        self._past: tuple[int, torch.Tensor] = (0, NO_ROWS)

    def past_indices(self) -> torch.Tensor:
        """Training-set indices of every task before the current one (cached per task)."""
        task_id = self.context.task_id
        if self._past[0] != task_id:
            tasks = self.context.split.train_tasks[:task_id]
            self._past = (task_id, torch.cat(tasks) if tasks else NO_ROWS)
        return self._past[1]

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        past = self.past_indices()
        if not self.context.settings.online or len(past) == 0:
            return NO_ROWS
        drawn = torch.randint(len(past), (self.mem_batchsize,), generator=self.generator)
        return past.index_select(0, drawn)

    def offline_pool(self, task_indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        return torch.cat([task_indices, self.past_indices()]), len(task_indices)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"].cpu())
