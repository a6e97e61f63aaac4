"""The one training loop: tasks, online or offline streams, memory epochs and evaluation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import partial

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from rainbow_runner.datasets.augment.pipeline import Augmenter, MixedBatch
from rainbow_runner.datasets.base import ImageData
from rainbow_runner.datasets.devices import to_device_async
from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.memory import MEMORIES, SelectionContext
from rainbow_runner.methods import METHODS
from rainbow_runner.runner.checkpoint import Checkpointer
from rainbow_runner.runner.config_check import ConfigError
from rainbow_runner.runner.evaluation import Evaluation, evaluate_test_set, record_task
from rainbow_runner.runner.models import (
    MixedPrecision,
    keep_freed_memory,
    optimize_model,
    switch_setting,
)
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

log = logging.getLogger(__name__)
# Steps whose loss and predictions may wait for the window's flush to be added up: bounds their
# memory at a large log_every. The sums are taken at fixed steps (checkpoints keep the pending
# steps), so a resumed run adds up the same numbers in the same order.
MAX_PENDING_STEPS = 512


class NonFiniteLossError(RuntimeError):
    """Training diverged; results of the finished tasks are already on disk."""


class Trainer:
    """Wires data, model, method and memory, and runs the task sequence."""

    def __init__(
        self,
        cfg: DictConfig,
        data: ImageData,
        split: TaskSplit,
        device: torch.device,
        writer: ResultWriter,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.writer = writer
        self.method = METHODS.get(cfg.mode.name)(self)
        self.split = self.method.prepare_split(split)
        self.n_groups = split.n_classes // split.classes_per_task
        self.train_x = self._to_device(data.train_x)
        self.test_x = self._to_device(data.test_x)
        self.train_labels_cpu = split.relabel(data.train_y)
        self.train_labels = self.train_labels_cpu.to(device)
        self.test_labels = split.relabel(data.test_y).to(device)
        self.n_exposed = self.split.exposed[0]
        self.model = instantiate(cfg.model, in_shape=data.image_shape, n_classes=self.n_exposed).to(
            device
        )
        memory_options = {k: v for k, v in cfg.mem_manage.items() if k != "name"}
        capacity = int(cfg.mem_size) if self.method.uses_memory else 0
        self.memory = MEMORIES.get(cfg.mem_manage.name)(
            capacity=capacity, seed=int(cfg.seed), **memory_options
        )
        self.online = cfg.stream.name == "online" and not self.method.offline_only
        self.global_step = 0
        self.task_epoch = 0  # passes so far in the current task (for warmup_epochs)
        self.warm_lrs: list[float] | None = None  # the lrs a warm-up pass lowered
        self.record = RunRecord()
        self.checkpointer: Checkpointer | None = None  # set by runner.app; None: no checkpoints
        self.resume = ResumePoint()  # where load_state_dict() says the run picks up
        self.run_started = self.task_started = time.perf_counter()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.progress: tqdm | None = None
        self._setup_speed(data)
        self._reset_running()

    def _to_device(self, images):
        return images.to(self.device) if isinstance(images, torch.Tensor) else images

    def fetch_images(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 training images on the device, for any index tensor."""
        if isinstance(self.train_x, torch.Tensor):
            if indices.device != self.train_x.device:
                indices = indices.to(self.train_x.device)
            if indices.dim() == 1 and indices.dtype in (torch.int64, torch.int32):
                return self.train_x.index_select(0, indices)  # ~7x faster than [] for small batches
            return self.train_x[indices]
        return self.train_x[indices].to(self.device, non_blocking=True)

    def selection_context(self) -> SelectionContext:
        return SelectionContext(
            model=self.model,
            fetch_images=self.fetch_images,
            normalize=self.augmenter.normalize,
            n_exposed=self.n_exposed,
            task_id=self.task_id,
            device=self.device,
            batchsize=int(self.cfg.eval_batchsize),
        )

    def new_optimizer(self) -> None:
        """A fresh optimizer and scheduler per task, as in the paper (the head may have grown)."""
        self.optimizer = instantiate(self.cfg.optimizer)(self.model.parameters())
        self.scheduler = instantiate(self.cfg.scheduler)(self.optimizer)

    def _setup_speed(self, data: ImageData) -> None:
        """Settings the step reads, fixed once: AMP, memory format, compile, plain config values.

        Interpolations are resolved in place first: reading a `${...}` value costs ~0.1 ms, and
        methods read some (mem_batchsize) on every step.
        """
        if not OmegaConf.is_readonly(self.cfg):
            OmegaConf.resolve(self.cfg)
        self.log_every = int(self.cfg.log_every)
        # Steps whose augmentation runs as one call when their batches are known ahead.
        self.steps_ahead = max(1, int(self.cfg.augment_chunk) // int(self.cfg.batchsize))
        keep_freed_memory()
        on_gpu = self.device.type == "cuda"
        # CUDA: the step's index tensors go to the GPU without a host sync when the data is there.
        self.pin_indices = on_gpu and isinstance(self.train_x, torch.Tensor)
        if on_gpu:  # fastest convolution algorithms for the (fixed) batch shapes
            torch.backends.cudnn.benchmark = True
        try:
            self.precision = MixedPrecision(self.cfg.get("amp", "off"), self.device)
            speed = optimize_model(
                self.model,
                self.device,
                self.cfg.get("channels_last", "auto"),
                self.cfg.get("compile", False),
            )
            graphs = switch_setting(self.cfg.get("cuda_graphs", True), "cuda_graphs") != "off"
        except ValueError as error:
            raise ConfigError(str(error)) from error
        self.augmenter = Augmenter(
            list(self.cfg.trans),
            data.mean,
            data.std,
            data.hflip,
            data.image_shape[-1],
            self.device,
            cuda_graphs=graphs,
        )
        log.info(
            "speed: amp %s | %s | cuda_graphs %s",
            self.precision.mode,
            speed,
            "on" if on_gpu and graphs else "off",
        )

    # --- steps and epochs -------------------------------------------------------------------

    def _reset_running(self) -> None:
        """Zero the log window's and the task's running sums (run_state.RUNNING_STATE)."""
        zero = torch.zeros((), device=self.device)
        self.loss_sum, self.correct_sum, self.seen_sum = zero.clone(), zero.clone(), 0
        self.window_steps = 0
        self.task_loss_sum, self.task_steps = zero.clone(), 0
        self.step_losses: list[torch.Tensor] = []  # steps not yet in loss_sum and correct_sum
        self.step_predictions: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _indices_for_data(self, indices: torch.Tensor) -> torch.Tensor:
        return to_device_async(indices, self.device) if self.pin_indices else indices

    def batches_ahead(self, planned: list[torch.Tensor]) -> list[MixedBatch]:
        """The training batches of the planned steps' indices, from one call for all of them.

        Every image still draws its own augmentation and every step mixes within its own batch;
        a call costs about as much for 8 small batches as for one (the cost of a small batch is
        its count of tensor operations, not its pixels).
        """
        indices = self._indices_for_data(planned[0] if len(planned) == 1 else torch.cat(planned))
        images = self.augmenter.augment_images(self.fetch_images(indices))
        if indices.device != self.train_labels.device:
            indices = indices.to(self.train_labels.device)
        labels = self.train_labels.index_select(0, indices)
        return self.augmenter.finish_steps(images, labels, [len(b) for b in planned])

    def _run_steps(self, planned: list[torch.Tensor]) -> None:
        """A step on each of the planned batches, prepared together (augment_chunk)."""
        if self.steps_ahead > 1:
            for batch in self.batches_ahead(planned):
                self.train_step(batch)
        else:  # augment_chunk=0: each step prepares its own batch
            for indices in planned:
                self.train_step(self.batches_ahead([indices])[0])

    def step(self, indices: torch.Tensor) -> None:
        """One gradient step on the given training-set indices."""
        self._run_steps([indices])

    def train_step(self, batch: MixedBatch) -> None:
        """One gradient step on a prepared batch; no host sync (_flush_window syncs)."""
        single = len(batch.y) == 1  # BatchNorm cannot normalise one sample: use running stats
        if single or not self.model.training:  # train() walks every module: only when needed
            self.model.train(not single)
        with self.precision.autocast():
            loss, logits = self.method.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward_and_step(loss, self.optimizer)
        self.method.after_step()
        self.global_step += 1
        # Added up once per log window (_add_up_steps): one kernel per step, not six.
        self.step_losses.append(loss.detach())
        self.step_predictions.append((logits.argmax(1), batch.y))
        if len(self.step_losses) >= MAX_PENDING_STEPS:
            self._add_up_steps()
        self.task_steps += 1
        self.seen_sum += len(batch.y)
        self.window_steps += 1
        if self.progress is not None:
            self.progress.update(1)
        if self.window_steps >= self.log_every:
            self._flush_window()

    def _add_up_steps(self) -> None:
        """Take the steps' losses and correct predictions into the log window's running sums."""
        if not self.step_losses:
            return
        self.loss_sum += torch.stack(self.step_losses).sum()
        columns = zip(*self.step_predictions, strict=True)
        predicted, labels = (torch.cat(column) for column in columns)
        self.correct_sum += (predicted == labels).sum()
        self.step_losses, self.step_predictions = [], []

    def _flush_window(self) -> None:
        """Sync once per window: check the loss, log it, update the progress bar."""
        if self.window_steps == 0:
            return
        self._add_up_steps()
        mean_loss = (self.loss_sum / self.window_steps).item()
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"the training loss became {mean_loss} in task {self.task_id} (steps up to "
                f"{self.global_step}); lower lr={self.cfg.lr} or check the data. Results of "
                f"the {len(self.record.task_accuracy)} finished task(s) are in results/."
            )
        accuracy = 100.0 * self.correct_sum.item() / max(int(self.seen_sum), 1)
        lr = self.optimizer.param_groups[0]["lr"]
        self.writer.scalar("train/loss", mean_loss, self.global_step)
        self.writer.scalar("train/accuracy", accuracy, self.global_step)
        self.writer.scalar("train/lr", lr, self.global_step)
        if self.progress is not None:
            self.progress.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{accuracy:.1f}")
        self.task_loss_sum += self.loss_sum
        self.loss_sum.zero_()
        self.correct_sum.zero_()
        self.seen_sum = 0
        self.window_steps = 0

    def _plan_steps(self, n_steps: int) -> None:
        if self.progress is not None:
            self.progress.total = (self.progress.total or 0) + n_steps
            self.progress.refresh()

    def run_epoch(
        self,
        pool: torch.Tensor,
        phase: int = STREAM_PHASE,
        epoch: int = 0,
        resume_at: StreamPosition | None = None,
    ) -> None:
        """One shuffled pass over the pool of training-set indices, then a scheduler step.

        A resumed run passes resume_at: the epoch's saved order and how far it had got.
        """
        batchsize = int(self.cfg.batchsize)
        if resume_at is None:
            order, first = pool[torch.randperm(len(pool))], 0
        else:
            order, first = resume_at.order, resume_at.batch
        self._plan_steps(max(0, math.ceil((len(order) - first) / batchsize)))
        warm = self._begin_epoch() if resume_at is None else resume_at.warm
        batches = [
            order[start : start + batchsize] for start in range(first, len(order), batchsize)
        ]
        # Checkpoints only between chunks: a resumed run augments the same chunks.
        for done in range(0, len(batches), self.steps_ahead):
            chunk = batches[done : done + self.steps_ahead]
            self._run_steps(chunk)
            reached = first + (done + len(chunk)) * batchsize
            self._checkpoint_inside(phase, epoch, reached, order, warm)
        self._end_epoch(warm)

    def _begin_epoch(self) -> bool:
        """warmup_epochs: a task's first passes run at 0.1*lr (the paper's code does one)."""
        warm = self.task_epoch < int(self.cfg.get("warmup_epochs", 0))
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
        else:
            self.scheduler.step()

    def online_pass(
        self, task_indices: torch.Tensor, resume_at: StreamPosition | None = None
    ) -> None:
        """Each incoming batch once, in stream order, with online_iter steps per batch."""
        batchsize, repeats = int(self.cfg.batchsize), int(self.cfg.stream.online_iter)
        first = 0 if resume_at is None else resume_at.batch
        self._plan_steps(max(0, math.ceil((len(task_indices) - first) / batchsize)) * repeats)
        warm = self._begin_epoch() if resume_at is None else resume_at.warm
        starts = range(first, len(task_indices), batchsize)
        per_chunk = max(1, self.steps_ahead // repeats)
        for done in range(0, len(starts), per_chunk):  # checkpoints only between chunks
            chunk = [task_indices[start : start + batchsize] for start in starts[done:][:per_chunk]]
            self._online_chunk(chunk, repeats)
            reached = first + (done + len(chunk)) * batchsize
            self._checkpoint_inside(STREAM_PHASE, 0, reached, None, warm)
        self._end_epoch(warm)

    def _online_chunk(self, chunk: list[torch.Tensor], repeats: int) -> None:
        """The steps of a few incoming batches, drawn first and augmented in one call.

        Neither online_batch nor observe_stream depends on the steps (a memory chooses from
        indices and labels, never from the model), so the chunk's batches are drawn first, in
        the order a step-by-step pass draws them: each incoming batch's online_batch calls,
        then its observe_stream. Every step gets exactly the indices it would have got.
        """
        planned = []
        for incoming in chunk:
            planned += [self.method.online_batch(incoming) for _ in range(repeats)]
            self.method.observe_stream(incoming)
        self._run_steps(planned)

    def _run_epochs(self, phase: int, n_epochs: int, make_pool: Callable[[], torch.Tensor]) -> None:
        """Shuffled epochs over make_pool()'s indices, skipping those a resumed run has done."""
        for epoch in range(n_epochs):
            if self.resume.already_done(phase, epoch):
                continue
            resume_at = self.resume.continue_at(phase, epoch)
            pool = resume_at.order if resume_at else make_pool()
            if len(pool):
                self.run_epoch(pool, phase, epoch, resume_at)

    def train_task(self, task_id: int, task_indices: torch.Tensor) -> None:
        """Everything that happens between two evaluations (from self.resume when resuming)."""
        self.task_id = task_id
        self.n_exposed = self.split.exposed[task_id]
        if self.resume.position is None:  # a run resumed inside the task has restored all this
            self.model.grow(self.n_exposed)
            self.new_optimizer()
            self.task_epoch = 0
            self.method.before_task(task_id)
        if self.online:
            if not self.resume.already_done(STREAM_PHASE, 0):
                self.online_pass(task_indices, self.resume.continue_at(STREAM_PHASE, 0))
        else:
            offline_pool = partial(self.method.offline_pool, task_indices)
            self._run_epochs(STREAM_PHASE, int(self.cfg.n_epoch), offline_pool)
        if self.resume.position is None:  # else it stopped in a memory epoch, after this update
            self.method.end_stream(task_id, task_indices, streamed=self.online)
        memory_epochs = self.method.memory_epochs(self.online)
        self._run_epochs(MEMORY_PHASE, memory_epochs, self.method.memory_pool)
        self._flush_window()
        self.method.after_task(task_id)

    # --- evaluation -------------------------------------------------------------------------

    def evaluate(self) -> Evaluation:
        """Accuracy on the test samples of the exposed classes, per class and per task group."""
        return evaluate_test_set(
            self.model,
            self.method.predict,
            self.test_x,
            self.test_labels,
            split=self.split,
            n_groups=self.n_groups,
            n_exposed=self.n_exposed,
            topk=int(self.cfg.topk),
            batchsize=int(self.cfg.eval_batchsize),
            device=self.device,
            normalize=self.augmenter.normalize,
            precision=self.precision,
        )

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> RunRecord:
        """Train and evaluate every task, writing results after each one."""
        if self.resume.first_task == 0 and self.resume.position is None:
            self.task_id = 0
            self.record.untrained_group_accuracy = self.evaluate().group_accuracy
        started = self.run_started = time.perf_counter() - self.record.seconds
        for task_id, task_indices in enumerate(self.split.train_tasks):
            if task_id < self.resume.first_task:
                continue
            done_before = 0.0 if self.resume.position is None else self.resume.position.seconds
            task_started = self.task_started = time.perf_counter() - done_before
            self.progress = tqdm(
                total=0,
                desc=f"task {task_id + 1}/{self.split.n_tasks}",
                disable=not self.cfg.progress,
                leave=False,
                dynamic_ncols=True,
            )
            try:
                self.train_task(task_id, task_indices)
            finally:
                self.progress.close()
                self.progress = None
            evaluation = self.evaluate()
            self._record_task(task_id, task_indices, evaluation, time.perf_counter() - task_started)
            self._reset_running()
            if self.checkpointer is not None:
                self.checkpointer.save(self.state_dict(StreamPosition(task=task_id + 1)))
        self.record.seconds = time.perf_counter() - started
        return self.record

    # --- checkpoints (runner/run_state.py says what they hold, runner/checkpoint.py writes them)

    def _checkpoint_inside(
        self, phase: int, epoch: int, batch: int, order: torch.Tensor | None, warm: bool
    ) -> None:
        """A mid-task checkpoint once checkpoint_every steps have passed since the last one."""
        if self.checkpointer is None or not self.checkpointer.due(self.global_step):
            return
        seconds = time.perf_counter() - self.task_started
        position = StreamPosition(self.task_id, True, phase, epoch, batch, order, warm, seconds)
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
        train_loss = (self.task_loss_sum / max(self.task_steps, 1)).item()
        record_task(
            self.record,
            self.writer,
            evaluation,
            task_id=task_id,
            n_exposed=self.n_exposed,
            n_train_samples=len(task_indices),
            memory=self.memory,
            train_loss=train_loss,
            steps=self.global_step,
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
