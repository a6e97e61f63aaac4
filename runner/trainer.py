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
from functools import partial

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rainbow_runner.datasets.base import ImageData
from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.methods import METHODS
from rainbow_runner.methods.base import MethodContext
from rainbow_runner.runner.anytime import AnytimeEvaluation
from rainbow_runner.runner.assembly import DeviceImages, run_settings, speed_and_augmenter
from rainbow_runner.runner.checkpoint import Checkpointer
from rainbow_runner.runner.evaluation import Evaluation, evaluate_test_set, record_task
from rainbow_runner.runner.options import build_memory, method_options
from rainbow_runner.runner.plugins import (
    make_early_stopping,
    validation_split,
    with_gradient_clipping,
)
from rainbow_runner.runner.reporting.results import ResultWriter
from rainbow_runner.runner.run_state import (
    MEMORY_PHASE,
    STREAM_PHASE,
    ResumePoint,
    RunRecord,
    StreamPosition,
    checkpoint_inside,
    load_trainer_state,
    trainer_state_dict,
)
from rainbow_runner.runner.running import NonFiniteLossError
from rainbow_runner.runner.schedule import TaskSchedule
from rainbow_runner.runner.steps import PlannedStep, StepRunner, planned_task_steps
from rainbow_runner.runner.task_free import acts_at_task_ends, grow_head, trains_online

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
        # patience > 0: a validation share of each task is held out of everything (never trained)
        self.split, held_out = validation_split(cfg, method_class.prepare_split(split))
        self.online = trains_online(cfg)
        self.fetch_images = DeviceImages(data.train_x, device)
        self.train_x = self.fetch_images.images
        self.test_x = DeviceImages(data.test_x, device).images
        self.train_labels_cpu = split.relabel(data.train_y)
        self.test_labels = split.relabel(data.test_y).to(device)
        # i-Blurry online: a class is exposed when its first sample arrives (labels follow first
        # appearance, so the first sample's class is label 0); else as the split says per task.
        self.stream_exposure = self.online and self.split.stream_exposure
        self.n_exposed = 1 if self.stream_exposure else self.split.exposed[0]
        self.anytime = AnytimeEvaluation(int(cfg.get("eval_period", 0) or 0))
        sizes = [len(task) for task in self.split.train_tasks]
        self.stream_offsets = [sum(sizes[:task]) for task in range(len(sizes))]
        self.model = instantiate(cfg.model, in_shape=data.image_shape, n_classes=self.n_exposed)
        self.model.to(device)
        capacity = int(cfg.mem_size) if method_class.uses_memory else 0
        self.memory = build_memory(cfg, capacity, split.n_classes, self.split.n_tasks)
        self.precision, self.augmenter = speed_and_augmenter(cfg, data, self.model, device)
        # i-Blurry online: the periods act as tasks only for a mode that needs them (checked
        # against exp.task_boundaries); for the others the optimizer, before_task, memory epochs
        # and after_task belong to the run, not to each period.
        self.task_boundaries = not self.stream_exposure or acts_at_task_ends(
            method_class, self.memory
        )
        self.precision = with_gradient_clipping(self.precision, cfg.grad_clip)
        self.schedule = TaskSchedule(
            instantiate(cfg.optimizer),
            instantiate(cfg.scheduler),
            int(cfg.warmup_epochs),
            str(cfg.lr_schedule_per),
        )
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
            settings=run_settings(cfg, self.online),
            precision=self.precision,
            new_optimizer=self.new_optimizer,
            n_exposed=self.n_exposed,
        )
        self.method = method_class(self.context, **method_options(cfg))
        if self.memory.intake_uses_model:  # GSS: gradients of the current model at intake
            self.memory.bind_context(self.context.selection)
        self.steps = StepRunner(
            self.method,
            self.model,
            self.augmenter,
            self.fetch_images,
            self.train_labels_cpu.to(device),
            int(cfg.log_every),
            self._where,
            writer,
            self.schedule.lr,
            pin_indices=device.type == "cuda" and isinstance(self.train_x, torch.Tensor),
        )
        # Steps drawn ahead and prepared in one call when their batches are known ahead.
        self.steps_ahead = max(1, int(cfg.augment_chunk) // int(cfg.batchsize))
        self.task_id = 0
        self.early_stopping = make_early_stopping(self, held_out)  # None: patience=0
        self.record = RunRecord()
        self.checkpointer: Checkpointer | None = None  # set by runner.app; None: no checkpoints
        self.resume = ResumePoint()  # where load_state_dict() says the run picks up
        self.run_started = self.task_started = time.perf_counter()

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        return self.schedule.optimizer

    @property
    def task_epoch(self) -> int:
        return self.schedule.task_epoch

    def new_optimizer(self) -> None:
        """A fresh optimizer and schedule over the method's parameter_groups() (every task, as
        in the paper: the head may have grown)."""
        self.schedule.build(self.method.parameter_groups(), self.task_id)
        self.context.optimizer = self.schedule.optimizer

    # --- epochs and passes --------------------------------------------------------------------

    def _where(self) -> str:
        return (
            f"in task {self.task_id + 1}/{self.split.n_tasks} (steps up to "
            f"{self.steps.global_step}); lower lr={self.cfg.lr} or check the data. Results of "
            f"the {len(self.record.task_accuracy)} finished task(s) are in results/."
        )

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
        A method that draws with the model (stepwise_draws) gets each step's replay() right
        before that step, as online.
        """
        batchsize = int(self.cfg.batchsize)
        if resume_at is None:
            shuffle = torch.randperm(len(pool))
            order, first = pool[shuffle], 0
            flags = shuffle >= n_stream if 0 < n_stream < len(pool) else None
        else:
            order, first, flags = resume_at.order, resume_at.batch, resume_at.memory_flags
        self.steps.expect(max(0, math.ceil((len(order) - first) / batchsize)))
        warm = self.schedule.begin_epoch() if resume_at is None else resume_at.warm
        starts = range(first, len(order), batchsize)
        replaying = phase == STREAM_PHASE and flags is None  # the pool holds no memory rows
        per_chunk = 1 if replaying and self.method.stepwise_draws else self.steps_ahead
        # Checkpoints only between chunks: a resumed run augments the same chunks.
        for done in range(0, len(starts), per_chunk):
            chunk = [slice(start, start + batchsize) for start in starts[done:][:per_chunk]]
            replay = self.method.replay if replaying else None
            planned = [PlannedStep.from_pool(order, flags, rows, replay) for rows in chunk]
            self.steps.run(planned, together=self.steps_ahead > 1)
            reached = first + (done + len(planned)) * batchsize
            checkpoint_inside(self, phase, epoch, reached, order, warm, flags)
        self.schedule.end_epoch(warm)

    def online_pass(
        self, task_indices: torch.Tensor, resume_at: StreamPosition | None = None
    ) -> None:
        """Each incoming batch once, in stream order, with method.online_steps() steps each.

        Unless the method draws with the model (stepwise_draws), a chunk of incoming batches is
        drawn first, in the order a step-by-step pass draws them (each batch's replay() calls,
        then its observe_stream()), and trained on after: every step gets the same indices.
        A method that trains on the memory alone (trains_on_stream=False) observes each batch
        before its steps, and its steps hold replay()'s rows only.
        """
        batchsize, method = int(self.cfg.batchsize), self.method
        first = 0 if resume_at is None else resume_at.batch
        remaining = max(0, len(task_indices) - first)
        full, rest = divmod(remaining, batchsize)
        self.steps.expect(
            full * method.online_steps(batchsize) + (method.online_steps(rest) if rest else 0)
        )
        warm = self.schedule.begin_epoch() if resume_at is None else resume_at.warm
        starts = range(first, len(task_indices), batchsize)
        # A memory whose intake uses the model (GSS) must see it after each batch's steps.
        stepwise = method.stepwise_draws or self.memory.intake_uses_model
        repeats = method.online_steps(batchsize)
        per_chunk = 1 if stepwise else max(1, self.steps_ahead // max(1, repeats))
        with_stream = method.trains_on_stream
        for done in range(0, len(starts), per_chunk):  # checkpoints only between chunks
            chunk = starts[done:][:per_chunk]
            planned, intake_exposed = [], self.n_exposed
            for start in chunk:
                incoming = task_indices[start : start + batchsize]
                grow = self._new_exposure(incoming, intake_exposed)
                intake_exposed = grow or intake_exposed
                if grow and stepwise:  # the draw may use the model: grow before it
                    self._expose(grow)
                if not with_stream:  # memory-only training: the batch is stored first
                    self._observe(incoming, intake_exposed)
                steps = self._batch_steps(incoming, stepwise)
                before = partial(self._expose, grow) if grow and not stepwise else None
                after = self._anytime_hook(start, len(incoming))
                if steps:  # grow when its steps come, evaluate after them
                    steps[0].before, steps[-1].after = before, after
                    planned.extend(steps)
                elif before or after:  # its steps ran already (stepwise), or it has none
                    if planned:
                        self.steps.run(planned, together=self.steps_ahead > 1)
                    planned = []
                    for hook in filter(None, (before, after)):
                        hook()
                if with_stream:  # stepwise: after its steps (DER's logits)
                    self._observe(incoming, intake_exposed)
            if planned:  # stepwise draws ran theirs already
                self.steps.run(planned, together=self.steps_ahead > 1)
            reached = first + (done + len(chunk)) * batchsize
            checkpoint_inside(self, STREAM_PHASE, 0, reached, None, warm)
        self.schedule.end_epoch(warm, step=self.task_boundaries)

    def _batch_steps(self, incoming: torch.Tensor, stepwise: bool) -> list[PlannedStep]:
        """An incoming batch's online steps; stepwise draws run each at once and return none."""
        steps = []
        for _ in range(self.method.online_steps(len(incoming))):
            replayed = self.method.replay(incoming)
            if self.method.trains_on_stream:
                steps.append(PlannedStep.of(incoming, replayed))
            elif len(replayed):  # memory-only training: the replayed rows alone
                steps.append(PlannedStep(replayed, 0))
            if steps and stepwise:
                self.steps.run([steps.pop()], together=True)
        return steps

    def _observe(self, incoming: torch.Tensor, intake_exposed: int) -> None:
        """The memory takes the batch in knowing the classes it brings (i-Blurry growth)."""
        trained_exposed, self.context.n_exposed = self.context.n_exposed, intake_exposed
        self.method.observe_stream(incoming)
        self.context.n_exposed = trained_exposed

    def _new_exposure(self, incoming: torch.Tensor, exposed: int) -> int | None:
        """The class count once `incoming` arrives, if it brings new classes (i-Blurry online)."""
        if not self.stream_exposure or not len(incoming):
            return None
        needed = int(self.train_labels_cpu[incoming].max()) + 1
        return needed if needed > exposed else None

    def _expose(self, n_exposed: int) -> None:
        """A task-free stream met new classes: grow the head now, mid-task."""
        grow_head(self.model, self.optimizer, n_exposed)
        self.n_exposed = self.context.n_exposed = n_exposed

    def _anytime_hook(self, start: int, n_incoming: int) -> Callable[[], None] | None:
        """The evaluation to run after a batch's steps, if the batch crosses an eval point."""
        seen_before = self.stream_offsets[self.task_id] + start
        if not self.anytime.due(seen_before, seen_before + n_incoming):
            return None
        return partial(self._anytime_point, seen_before + n_incoming)

    def _anytime_point(self, n_samples_seen: int) -> None:
        def accuracy() -> float:  # inside measure(): the random streams it uses are restored
            with torch.enable_grad():  # a predictor may train (GDumb's copy)
                predictor = self.method.anytime_predictor()
            return self.evaluate(predictor).accuracy

        row = self.anytime.measure(
            self.model,
            accuracy,
            n_samples_seen=n_samples_seen,
            task=self.task_id,
            n_seen_classes=self.n_exposed,
        )
        if self.writer.opened:
            self.anytime.write(self.writer.results_dir)
        self.writer.scalar("anytime/acc", row["accuracy"], n_samples_seen, "samples")

    def _run_epochs(
        self,
        phase: int,
        n_epochs: int,
        make_pool: Callable[[], tuple[torch.Tensor, int]],
        stop_after: Callable[[], bool] | None = None,
    ) -> None:
        """Shuffled epochs over make_pool()'s indices, skipping those a resumed run has done,
        until stop_after() says so (early stopping)."""
        for epoch in range(n_epochs):
            if self.resume.already_done(phase, epoch):
                continue
            resume_at = self.resume.continue_at(phase, epoch)
            pool, n_stream = make_pool() if resume_at is None else (resume_at.order, 0)
            if len(pool):
                self.run_epoch(pool, n_stream, phase, epoch, resume_at)
            if stop_after is not None and stop_after():
                break

    def begin_task(self) -> None:
        """grow the head -> prepare_model -> optimizer over parameter_groups -> before_task."""
        self.model.grow(self.n_exposed)
        self.method.prepare_model()
        self.new_optimizer()
        self.schedule.task_epoch = 0
        self.method.before_task(self.task_id)

    def train_task(self, task_id: int, task_indices: torch.Tensor) -> None:
        """Everything that happens between two evaluations (from self.resume when resuming)."""
        self.task_id = self.context.task_id = task_id
        if not self.stream_exposure:  # else the stream exposes its classes as they come
            self.n_exposed = self.context.n_exposed = self.split.exposed[task_id]
        self.memory.begin_task(task_id)  # the task of the samples it takes in from now on
        # A run resumed inside the task has restored all this; a task-free run does it once.
        if self.resume.position is None and (self.task_boundaries or task_id == 0):
            self.begin_task()
        if self.online:
            if not self.resume.already_done(STREAM_PHASE, 0):
                self.online_pass(task_indices, self.resume.continue_at(STREAM_PHASE, 0))
        else:
            epochs, stopping = int(self.cfg.n_epoch), self.early_stopping
            if stopping is not None and self.resume.position is None:  # else restored
                stopping.begin_task(task_id)
            stop_after = None if stopping is None else stopping.after_epoch
            pool = lambda: self.method.offline_pool(task_indices)  # noqa: E731
            self._run_epochs(STREAM_PHASE, epochs, pool, stop_after)
            if stopping is not None:
                stopping.end_task(task_id)
        if self.resume.position is None:  # else it stopped in a memory epoch, after this update
            self.method.end_stream(task_id, task_indices, streamed=self.online)
        memory_pool = self.method.memory_pool
        memory_epochs = self.method.memory_epochs() if self.task_boundaries else 0
        self._run_epochs(MEMORY_PHASE, memory_epochs, lambda: (memory_pool(), 0))
        self.steps.flush_window()
        if self.task_boundaries:
            self.method.after_task(task_id)

    # --- evaluation and the run ---------------------------------------------------------------

    def evaluate(self, predictor: torch.nn.Module | None = None) -> Evaluation:
        """Accuracy on the test samples of the exposed classes, per class and per task group
        (of the method's predictions, or of a separate predictor's scores)."""
        return evaluate_test_set(
            self.model if predictor is None else predictor,
            self.method.predict if predictor is None else predictor,
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
            n_seen_tasks=self.task_id + 1,
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
            description = f"task {task_id + 1}/{self.split.n_tasks}"
            planned = (
                0
                if self.resume.position is not None
                else planned_task_steps(
                    self.cfg, self.online, len(task_indices), len(self.memory), self.method
                )
            )
            with self.steps.progress_bar(description, self.cfg, planned):
                self.train_task(task_id, task_indices)
            record_task(
                self.record,
                self.writer,
                self.evaluate(),
                task_id=task_id,
                n_tasks=self.split.n_tasks,
                n_exposed=self.n_exposed,
                n_train_samples=len(task_indices),
                memory=self.memory,
                train_loss=self.steps.running.task_loss(),
                steps=self.steps.global_step,
                seconds=time.perf_counter() - task_started,
                topk=int(self.cfg.topk),
            )
            self.steps.running.reset()
            if self.checkpointer is not None:
                self.checkpointer.save(self.state_dict(StreamPosition(task=task_id + 1)))
        self.record.seconds = time.perf_counter() - started
        return self.record

    def state_dict(self, position: StreamPosition) -> dict:
        """Everything needed to continue this run exactly from `position`."""
        return trainer_state_dict(self, position)

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint (before run()); the random streams are restored last."""
        load_trainer_state(self, state)
