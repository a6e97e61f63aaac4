"""The one training loop: tasks, online or offline streams, memory epochs and evaluation.

Methods change it only through the contract in methods/base.py (its docstring gives the order
of construction and of the hooks); runner/steps.py runs the steps, runner/run_state.py says
what a checkpoint holds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from rainbow_runner.datasets.augment.pipeline import Augmenter
from rainbow_runner.datasets.base import ImageData
from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.memory import MEMORIES
from rainbow_runner.methods import METHODS
from rainbow_runner.methods.base import MethodContext, RunSettings
from rainbow_runner.runner.checkpoint import Checkpointer
from rainbow_runner.runner.config_check import ConfigError
from rainbow_runner.runner.evaluation import Evaluation, evaluate_test_set, record_task
from rainbow_runner.runner.models import (
    MixedPrecision,
    keep_freed_memory,
    optimize_model,
    switch_setting,
)
from rainbow_runner.runner.options import memory_options, method_options
from rainbow_runner.runner.reporting.results import ResultWriter
from rainbow_runner.runner.run_state import (
    MEMORY_PHASE,
    STREAM_PHASE,
    ResumePoint,
    RunRecord,
    StreamPosition,
    load_trainer_state,
    trainer_state_dict,
)
from rainbow_runner.runner.running import NonFiniteLossError, WindowStats
from rainbow_runner.runner.steps import PlannedStep, StepRunner

__all__ = ["NonFiniteLossError", "RunRecord", "Trainer"]

log = logging.getLogger(__name__)


class Trainer:
    """Wires data, model, memory and method (in that order), and runs the task sequence."""

    def __init__(
        self,
        cfg: DictConfig,
        data: ImageData,
        split: TaskSplit,
        device: torch.device,
        writer: ResultWriter,
    ) -> None:
        if not OmegaConf.is_readonly(cfg):  # `${...}` reads cost ~0.1 ms: resolve them once
            OmegaConf.resolve(cfg)
        self.cfg, self.device, self.writer = cfg, device, writer
        method_class = METHODS.get(cfg.mode.name)
        self.split = method_class.prepare_split(split)
        self.online = cfg.stream.name == "online" and not method_class.offline_only
        self.train_x = _on(data.train_x, device)
        self.test_x = _on(data.test_x, device)
        self.train_labels_cpu = split.relabel(data.train_y)
        self.test_labels = split.relabel(data.test_y).to(device)
        self.n_exposed = self.split.exposed[0]
        self.model = instantiate(cfg.model, in_shape=data.image_shape, n_classes=self.n_exposed)
        self.model.to(device)
        capacity = int(cfg.mem_size) if method_class.uses_memory else 0
        self.memory = MEMORIES.get(cfg.mem_manage.name)(
            capacity=capacity, seed=int(cfg.seed), **memory_options(cfg)
        )
        self.augmenter = self._setup_speed(data)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.context = MethodContext(
            model=self.model,
            memory=self.memory,
            split=self.split,
            device=device,
            train_labels=self.train_labels_cpu,
            fetch_images=self.fetch_images,
            augment=self.augmenter.augment_images,
            normalize=self.augmenter.normalize,
            writer=writer,
            settings=self._settings(),
            precision=self.precision,
            new_optimizer=self.new_optimizer,
            n_exposed=self.n_exposed,
        )
        self.method = method_class(self.context, **method_options(cfg))
        self.steps = StepRunner(
            self.method,
            self.model,
            self.augmenter,
            self.fetch_images,
            self.train_labels_cpu.to(device),
            int(cfg.log_every),
            self._log_window,
            self._where,
            pin_indices=device.type == "cuda" and isinstance(self.train_x, torch.Tensor),
        )
        # Steps drawn ahead and prepared in one call when their batches are known ahead.
        self.steps_ahead = max(1, int(cfg.augment_chunk) // int(cfg.batchsize))
        self.task_id = 0
        self.task_epoch = 0  # passes so far in the current task (for warmup_epochs)
        self.warm_lrs: list[float] | None = None  # the lrs a warm-up pass lowered
        self.record = RunRecord()
        self.checkpointer: Checkpointer | None = None  # set by runner.app; None: no checkpoints
        self.resume = ResumePoint()  # where load_state_dict() says the run picks up
        self.run_started = self.task_started = time.perf_counter()

    def _settings(self) -> RunSettings:
        cfg = self.cfg
        return RunSettings(
            batchsize=int(cfg.batchsize),
            mem_batchsize=int(cfg.mem_batchsize),
            eval_batchsize=int(cfg.eval_batchsize),
            n_epoch=int(cfg.n_epoch),
            memory_epochs=int(cfg.stream.memory_epochs),
            online=self.online,
            replay=str(cfg.replay),
            seed=int(cfg.seed),
            memory_name=str(cfg.mem_manage.name),
        )

    def _setup_speed(self, data: ImageData) -> Augmenter:
        """AMP, memory format, compile and the augmenter's CUDA graphs, fixed once."""
        keep_freed_memory()
        on_gpu = self.device.type == "cuda"
        if on_gpu:  # fastest convolution algorithms for the (fixed) batch shapes
            torch.backends.cudnn.benchmark = True
        cfg = self.cfg
        try:
            self.precision = MixedPrecision(cfg.get("amp", "off"), self.device)
            speed = optimize_model(self.model, self.device, cfg.channels_last, cfg.compile)
            graphs = switch_setting(cfg.get("cuda_graphs", True), "cuda_graphs") != "off"
        except ValueError as error:
            raise ConfigError(str(error)) from error
        padding = None if cfg.crop_padding == "auto" else int(cfg.crop_padding)
        hflip = data.hflip if cfg.flip == "auto" else bool(cfg.flip)
        augmenter = Augmenter(
            list(cfg.trans),
            data.mean,
            data.std,
            hflip,
            data.image_shape[-1],
            self.device,
            padding=padding,
            cuda_graphs=graphs,
        )
        log.info(
            "speed: amp %s | %s | cuda_graphs %s",
            self.precision.mode,
            speed,
            "on" if on_gpu and graphs else "off",
        )
        return augmenter

    def fetch_images(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 training images on the device, for any index tensor."""
        if isinstance(self.train_x, torch.Tensor):
            if indices.device != self.train_x.device:
                indices = indices.to(self.train_x.device)
            if indices.dim() == 1 and indices.dtype in (torch.int64, torch.int32):
                return self.train_x.index_select(0, indices)  # ~7x faster than [] for small batches
            return self.train_x[indices]
        return self.train_x[indices].to(self.device, non_blocking=True)

    def new_optimizer(self) -> None:
        """A fresh optimizer and scheduler over the method's parameters (every task, as in the
        paper: the head may have grown); none for a method with nothing to optimise (SLDA)."""
        groups = list(self.method.parameter_groups())
        self.optimizer = instantiate(self.cfg.optimizer)(groups) if groups else None
        self.scheduler = instantiate(self.cfg.scheduler)(self.optimizer) if groups else None
        self.context.optimizer = self.optimizer

    # --- epochs and passes --------------------------------------------------------------------

    def _log_window(self, stats: WindowStats) -> None:
        step = self.steps.global_step
        self.writer.scalar("train/loss", stats.loss, step)
        self.writer.scalar("train/accuracy", stats.accuracy, step)
        if self.optimizer is not None:
            self.writer.scalar("train/lr", self.optimizer.param_groups[0]["lr"], step)

    def _where(self) -> str:
        return (
            f"in task {self.task_id + 1}/{self.split.n_tasks} (steps up to "
            f"{self.steps.global_step}); lower lr={self.cfg.lr} or check the data. Results of "
            f"the {len(self.record.task_accuracy)} finished task(s) are in results/."
        )

    def _plan_steps(self, n_steps: int) -> None:
        progress = self.steps.progress
        if progress is not None:
            progress.total = (progress.total or 0) + n_steps
            progress.refresh()

    def run_epoch(
        self,
        pool: torch.Tensor,
        n_stream: int,
        phase: int = STREAM_PHASE,
        epoch: int = 0,
        resume_at: StreamPosition | None = None,
    ) -> None:
        """One shuffled pass over a pool of training-set indices (its first n_stream from the
        stream), then a scheduler step. A pool of stream samples only gets replay() per step.

        A resumed run passes resume_at: the epoch's saved order and how far it had got.
        """
        batchsize = int(self.cfg.batchsize)
        if resume_at is None:
            shuffle = torch.randperm(len(pool))
            order, first = pool[shuffle], 0
            flags = shuffle >= n_stream if 0 < n_stream < len(pool) else None
        else:
            order, first, flags = resume_at.order, resume_at.batch, resume_at.memory_flags
        self._plan_steps(max(0, math.ceil((len(order) - first) / batchsize)))
        warm = self._begin_epoch() if resume_at is None else resume_at.warm
        starts = range(first, len(order), batchsize)
        replaying = phase == STREAM_PHASE and flags is None  # the pool holds no memory rows
        # Checkpoints only between chunks: a resumed run augments the same chunks.
        for done in range(0, len(starts), self.steps_ahead):
            planned = []
            for start in starts[done:][: self.steps_ahead]:
                rows = order[start : start + batchsize]
                if replaying:
                    planned.append(PlannedStep.of(rows, self.method.replay(rows)))
                elif flags is None:  # memory epochs: every row is a memory sample
                    planned.append(PlannedStep(rows, 0))
                else:
                    planned.append(PlannedStep(rows, 0, flags[start : start + batchsize]))
            self.steps.run(planned, together=self.steps_ahead > 1)
            reached = first + (done + len(planned)) * batchsize
            self._checkpoint_inside(phase, epoch, reached, order, warm, flags)
        self._end_epoch(warm)

    def _begin_epoch(self) -> bool:
        """warmup_epochs: a task's first passes run at 0.1*lr (the paper's code does one)."""
        warm = self.optimizer is not None and self.task_epoch < int(self.cfg.warmup_epochs)
        self.task_epoch += 1
        if warm:
            self.warm_lrs = [group["lr"] for group in self.optimizer.param_groups]
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.1
        return warm

    def _end_epoch(self, warm: bool) -> None:
        """Restore the lr after a warm-up pass (the schedule starts after it), else step it."""
        if warm:
            for group, lr in zip(self.optimizer.param_groups, self.warm_lrs, strict=True):
                group["lr"] = lr
        elif self.scheduler is not None:
            self.scheduler.step()

    def online_pass(
        self, task_indices: torch.Tensor, resume_at: StreamPosition | None = None
    ) -> None:
        """Each incoming batch once, in stream order, with online_iter steps per batch.

        Unless the method draws with the model (stepwise_draws), a chunk of incoming batches is
        drawn first, in the order a step-by-step pass draws them (each batch's replay() calls,
        then its observe_stream()), and trained on after: every step gets the same indices.
        """
        batchsize, repeats = int(self.cfg.batchsize), int(self.cfg.stream.online_iter)
        first = 0 if resume_at is None else resume_at.batch
        self._plan_steps(max(0, math.ceil((len(task_indices) - first) / batchsize)) * repeats)
        warm = self._begin_epoch() if resume_at is None else resume_at.warm
        starts = range(first, len(task_indices), batchsize)
        stepwise = self.method.stepwise_draws
        per_chunk = 1 if stepwise else max(1, self.steps_ahead // repeats)
        for done in range(0, len(starts), per_chunk):  # checkpoints only between chunks
            chunk = [task_indices[start : start + batchsize] for start in starts[done:][:per_chunk]]
            planned = []
            for incoming in chunk:
                for _ in range(repeats):
                    step = PlannedStep.of(incoming, self.method.replay(incoming))
                    if stepwise:
                        self.steps.run([step], together=True)
                    else:
                        planned.append(step)
                self.method.observe_stream(incoming)  # stepwise: after its steps (DER's logits)
            if planned:  # stepwise: every step has run already
                self.steps.run(planned, together=self.steps_ahead > 1)
            reached = first + (done + len(chunk)) * batchsize
            self._checkpoint_inside(STREAM_PHASE, 0, reached, None, warm)
        self._end_epoch(warm)

    def _run_epochs(
        self, phase: int, n_epochs: int, make_pool: Callable[[], tuple[torch.Tensor, int]]
    ) -> None:
        """Shuffled epochs over make_pool()'s indices, skipping those a resumed run has done."""
        for epoch in range(n_epochs):
            if self.resume.already_done(phase, epoch):
                continue
            resume_at = self.resume.continue_at(phase, epoch)
            pool, n_stream = make_pool() if resume_at is None else (resume_at.order, 0)
            if len(pool):
                self.run_epoch(pool, n_stream, phase, epoch, resume_at)

    def begin_task(self) -> None:
        """grow the head -> prepare_model -> optimizer over parameter_groups -> before_task."""
        self.model.grow(self.n_exposed)
        self.method.prepare_model()
        self.new_optimizer()
        self.task_epoch = 0
        self.method.before_task(self.task_id)

    def train_task(self, task_id: int, task_indices: torch.Tensor) -> None:
        """Everything that happens between two evaluations (from self.resume when resuming)."""
        self.task_id = self.context.task_id = task_id
        self.n_exposed = self.context.n_exposed = self.split.exposed[task_id]
        if self.resume.position is None:  # a run resumed inside the task has restored all this
            self.begin_task()
        if self.online:
            if not self.resume.already_done(STREAM_PHASE, 0):
                self.online_pass(task_indices, self.resume.continue_at(STREAM_PHASE, 0))
        else:
            epochs = int(self.cfg.n_epoch)
            self._run_epochs(STREAM_PHASE, epochs, lambda: self.method.offline_pool(task_indices))
        if self.resume.position is None:  # else it stopped in a memory epoch, after this update
            self.method.end_stream(task_id, task_indices, streamed=self.online)
        memory_pool = self.method.memory_pool
        self._run_epochs(MEMORY_PHASE, self.method.memory_epochs(), lambda: (memory_pool(), 0))
        self.steps.flush_window()
        self.method.after_task(task_id)

    # --- evaluation and the run ---------------------------------------------------------------

    def evaluate(self) -> Evaluation:
        """Accuracy on the test samples of the exposed classes, per class and per task group."""
        return evaluate_test_set(
            self.model,
            self.method.predict,
            self.test_x,
            self.test_labels,
            split=self.split,
            n_groups=self.context.n_groups,
            n_exposed=self.n_exposed,
            topk=int(self.cfg.topk),
            batchsize=int(self.cfg.eval_batchsize),
            device=self.device,
            normalize=self.augmenter.normalize,
            precision=self.precision,
        )

    def run(self) -> RunRecord:
        """Train and evaluate every task, writing results after each one."""
        if self.resume.first_task == 0 and self.resume.position is None:
            self.record.untrained_group_accuracy = self.evaluate().group_accuracy
        started = self.run_started = time.perf_counter() - self.record.seconds
        for task_id, task_indices in enumerate(self.split.train_tasks):
            if task_id < self.resume.first_task:
                continue
            done_before = 0.0 if self.resume.position is None else self.resume.position.seconds
            task_started = self.task_started = time.perf_counter() - done_before
            self.steps.progress = tqdm(
                total=0,
                desc=f"task {task_id + 1}/{self.split.n_tasks}",
                disable=not self.cfg.progress,
                leave=False,
                dynamic_ncols=True,
            )
            try:
                self.train_task(task_id, task_indices)
            finally:
                self.steps.progress.close()
                self.steps.progress = None
            evaluation = self.evaluate()
            self._record_task(task_id, task_indices, evaluation, time.perf_counter() - task_started)
            self.steps.running.reset()
            if self.checkpointer is not None:
                self.checkpointer.save(self.state_dict(StreamPosition(task=task_id + 1)))
        self.record.seconds = time.perf_counter() - started
        return self.record

    def _checkpoint_inside(
        self,
        phase: int,
        epoch: int,
        batch: int,
        order: torch.Tensor | None,
        warm: bool,
        flags: torch.Tensor | None = None,
    ) -> None:
        """A mid-task checkpoint once checkpoint_every steps have passed since the last one."""
        if self.checkpointer is None or not self.checkpointer.due(self.steps.global_step):
            return
        seconds = time.perf_counter() - self.task_started
        position = StreamPosition(self.task_id, True, phase, epoch, batch, order, warm, seconds)
        position.memory_flags = flags
        self.checkpointer.save(self.state_dict(position))

    def state_dict(self, position: StreamPosition) -> dict:
        """Everything needed to continue this run exactly from `position`."""
        return trainer_state_dict(self, position)

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint (before run()); the random streams are restored last."""
        load_trainer_state(self, state)

    def _record_task(
        self, task_id: int, task_indices: torch.Tensor, evaluation: Evaluation, seconds: float
    ) -> None:
        train_loss = self.steps.running.task_loss()
        record_task(
            self.record,
            self.writer,
            evaluation,
            task_id=task_id,
            n_exposed=self.n_exposed,
            n_train_samples=len(task_indices),
            memory=self.memory,
            train_loss=train_loss,
            steps=self.steps.global_step,
            seconds=seconds,
            topk=int(self.cfg.topk),
        )
        log.info(
            "task %d/%d | classes %d | train %d | memory %d | test acc %.2f%% | loss %.4f | %.1fs",
            task_id + 1,
            self.split.n_tasks,
            self.n_exposed,
            len(task_indices),
            len(self.memory),
            evaluation.accuracy,
            train_loss,
            seconds,
        )


def _on(images, device: torch.device):
    """Tensor images move to the device; lazy folder readers stay where they are."""
    return images.to(device) if isinstance(images, torch.Tensor) else images
