"""Training steps: planned index sets -> prepared batches (a chunk per call) -> method updates."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from rainbow_runner.datasets.augment.pipeline import Augmenter
from rainbow_runner.datasets.devices import to_device_async
from rainbow_runner.methods.base import Method, RunWriter, TrainBatch
from rainbow_runner.runner.running import RunningSums


@dataclass
class PlannedStep:
    """The training-set indices of one step, stream rows first (unless memory_flags says)."""

    indices: torch.Tensor
    n_stream: int
    memory_flags: torch.Tensor | None = None
    # Run right before / after the step, its batch already prepared (a task-free stream grows
    # the head before the step of a class's first batch; anytime evaluation runs after one).
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None

    @classmethod
    def of(cls, stream: torch.Tensor, replayed: torch.Tensor) -> PlannedStep:
        """A step on a stream batch plus the memory rows the method replays with it."""
        if len(replayed) == 0:
            return cls(stream, len(stream))
        return cls(torch.cat([stream, replayed]), len(stream))

    @classmethod
    def from_pool(
        cls,
        order: torch.Tensor,
        flags: torch.Tensor | None,
        rows: slice,
        replay: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> PlannedStep:
        """A step on rows of an epoch's order: stream rows with what replay() adds to them, or
        rows whose memory_flags say which are memory samples (none: all are, memory epochs)."""
        indices = order[rows]
        if replay is not None:
            return cls.of(indices, replay(indices))
        return cls(indices, 0, None if flags is None else flags[rows])


class StepRunner:
    """Prepares planned steps' batches in one call and runs the method's update on each."""

    def __init__(
        self,
        method: Method,
        model: torch.nn.Module,
        augmenter: Augmenter,
        fetch_images: Callable[[torch.Tensor], torch.Tensor],
        train_labels: torch.Tensor,
        log_every: int,
        where: Callable[[], str],
        writer: RunWriter,
        lr: Callable[[], float | None],
        pin_indices: bool,
    ) -> None:
        self.method, self.model, self.augmenter = method, model, augmenter
        self.fetch_images, self.train_labels = fetch_images, train_labels
        self.log_every, self.where, self.writer, self.lr = log_every, where, writer, lr
        self.pin_indices = pin_indices  # CUDA: index tensors go over without a host sync
        self.running = RunningSums(train_labels.device)
        self.global_step = 0
        self.progress: tqdm | None = None
        self.announced = 0  # steps the passes of the current task have announced (expect)
        self.task_first_step = 0

    def batches_ahead(self, planned: list[PlannedStep]) -> list[TrainBatch]:
        """The training batches of the planned steps, from one call for all of them.

        Every image still draws its own augmentation and every step mixes within its own batch;
        a call costs about as much for 8 small batches as for one (the cost of a small batch is
        its count of tensor operations, not its pixels).
        """
        rows = [step.indices for step in planned]
        indices = rows[0] if len(rows) == 1 else torch.cat(rows)
        if self.pin_indices:
            indices = to_device_async(indices, self.train_labels.device)
        images = self.augmenter.augment_images(self.fetch_images(indices))
        if indices.device != self.train_labels.device:
            indices = indices.to(self.train_labels.device)
        labels = self.train_labels.index_select(0, indices)
        mixed = self.augmenter.finish_steps(images, labels, [len(r) for r in rows])
        return [
            TrainBatch(b.x, b.y, b.y_mix, b.lam, step.indices, step.n_stream, step.memory_flags)
            for b, step in zip(mixed, planned, strict=True)
        ]

    def run(self, planned: list[PlannedStep], together: bool) -> None:
        """A step on each planned batch; together: their batches are prepared in one call."""
        if not planned:  # stepwise draws: online_pass has run each step as it was drawn
            return
        if together:
            for step, batch in zip(planned, self.batches_ahead(planned), strict=True):
                self.hooked_step(step, batch)
        else:  # augment_chunk=0: each step prepares its own batch
            for step in planned:
                self.hooked_step(step, self.batches_ahead([step])[0])

    def hooked_step(self, step: PlannedStep, batch: TrainBatch) -> None:
        """train_step between the planned step's before and after hooks."""
        if step.before is not None:
            step.before()
        self.train_step(batch)
        if step.after is not None:
            step.after()

    def train_step(self, batch: TrainBatch) -> None:
        """The method's update on a prepared batch; no host sync (flush_window syncs)."""
        single = len(batch.y) == 1  # BatchNorm cannot normalise one sample: use running stats
        if single or not self.model.training:  # train() walks every module: only when needed
            self.model.train(not single)
        loss, logits = self.method.update(batch)
        self.method.after_step()
        self.global_step += 1
        self.running.add_step(loss, logits, batch.y)
        if self.progress is not None:
            self.progress.update(1)
        if self.running.window_steps >= self.log_every:
            self.flush_window()

    def flush_window(self) -> None:
        """Sync once per window: check the loss, log it, update the progress bar."""
        stats = self.running.flush(self.where)
        if stats is None:
            return
        if self.progress is not None:
            self.progress.set_postfix(
                loss=f"{stats.loss:.3f}", acc=f"{stats.accuracy:.1f}", run_step=self.global_step
            )
        self.writer.scalar("train/loss", stats.loss, self.global_step)
        self.writer.scalar("train/accuracy", stats.accuracy, self.global_step)
        lr = self.lr()
        if lr is not None:
            self.writer.scalar("train/lr", lr, self.global_step)

    @contextmanager
    def progress_bar(self, description: str, cfg: DictConfig, planned: int = 0) -> Iterator[None]:
        """A task's progress bar over its planned steps (progress=false: a silent one).

        planned: the task's steps as known when it starts (planned_task_steps); the total is
        set once, before the first step, and only corrected when a pass turns out longer than
        planned (expect) or the task ends short of it (bic's held-out memory).
        """
        self.progress = tqdm(
            total=planned,
            desc=description,
            disable=not cfg.progress,
            leave=False,
            dynamic_ncols=True,
        )
        self.announced = 0
        self.task_first_step = self.global_step
        try:
            yield
        finally:
            taken = self.global_step - self.task_first_step
            if self.progress.total != taken:
                self.progress.total = taken
                self.progress.refresh()
            self.progress.close()
            self.progress = None

    def expect(self, n_steps: int) -> None:
        """A pass of n_steps starts: the total grows only if the passes outrun the plan."""
        if self.progress is None:
            return
        self.announced += n_steps
        needed = self.global_step - self.task_first_step + n_steps
        if self.announced > (self.progress.total or 0) or needed > (self.progress.total or 0):
            self.progress.total = max(self.announced, needed)
            self.progress.refresh()


def planned_task_steps(
    cfg: DictConfig, online: bool, n_task: int, n_memory: int, method: Method
) -> int:
    """A task's steps as known at its start, for the progress bar: the stream pass(es), plus
    the memory epochs over the memory the update will leave (min(mem_size, memory + task)).

    Exact for online runs and offline runs whose pool is the task (replay=per_step); a pool
    with memory in it (concat, rm offline) or a held-out memory (bic) differs, and the bar
    corrects its total when that pass starts.
    """
    batchsize = int(cfg.batchsize)
    if online:
        full, rest = divmod(n_task, batchsize)
        stream = full * method.online_steps(batchsize) + (method.online_steps(rest) if rest else 0)
    else:
        stream = int(cfg.n_epoch) * math.ceil(n_task / batchsize)
    memory_after = min(int(cfg.mem_size), n_memory + n_task)
    return stream + method.memory_epochs() * math.ceil(memory_after / batchsize)
