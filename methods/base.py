"""The method contract: what a CL method sees (MethodContext), what it trains on (TrainBatch),
and the hooks the one loop (runner/trainer.py) calls. A method is one file that overrides only
the hooks where it differs from plain training.

Construction, once per run: the split (Method.prepare_split, a classmethod) -> the data on the
device -> the model -> the memory -> the augmenter -> the context -> Method(context, **options),
where options are the keys of conf/mode/<name>.yaml (checked against the constructor before the
run starts). The model, memory and split exist when __init__ runs.

Per task: context.task_id/n_exposed are set -> the head grows -> prepare_model() -> a new
optimizer over parameter_groups() -> before_task(); then the stream: online (per incoming batch:
replay() per step, observe_stream()) or offline epochs over offline_pool() (with replay() per
step unless the pool already holds the memory); each step is update(batch) (default: loss ->
backward -> adjust_gradients -> optimizer step) then after_step(); then end_stream() (the
memory update), memory_epochs() epochs over memory_pool(), after_task(), and the evaluation
through predict(). The loop keeps the bookkeeping: running sums, progress, checkpoints and the
non-finite loss check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from rainbow_runner.datasets.augment.batches import MixedBatch
from rainbow_runner.datasets.choices import Registry
from rainbow_runner.datasets.scenarios import SCENARIOS, restrict_to_task
from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.memory.base import Memory, SelectionContext
from rainbow_runner.methods.functional import mixed_cross_entropy

NO_ROWS = torch.empty(0, dtype=torch.long)


@dataclass
class TrainBatch(MixedBatch):
    """A prepared training batch and where its rows came from.

    Rows [0, n_stream) came from the stream and the rest from the memory, unless memory_flags
    (one bool per row, for pools that shuffle stream and memory together) says otherwise.
    indices are the rows' training-set indices (host).
    """

    indices: torch.Tensor = NO_ROWS
    n_stream: int = 0
    memory_flags: torch.Tensor | None = None

    @property
    def from_memory(self) -> torch.Tensor:
        """One bool per row on the batch's device: True where the row was replayed."""
        if self.memory_flags is not None:
            return self.memory_flags.to(self.y.device)
        rows = torch.arange(len(self.y), device=self.y.device)
        return rows >= self.n_stream

    @property
    def memory_indices(self) -> torch.Tensor:
        """Training-set indices of the replayed rows (host)."""
        if self.memory_flags is not None:
            return self.indices[self.memory_flags.cpu()]
        return self.indices[self.n_stream :]


class RunWriter(Protocol):
    """The part of the run's result writer a method may use."""

    def scalar(self, tag: str, value: float, step: int) -> None: ...

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None: ...

    def write_task_row(self, table: str, row: dict) -> None: ...


class Precision(Protocol):
    """Mixed precision as the loop set it up: autocast, scaled backward, step."""

    def autocast(self) -> AbstractContextManager: ...

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None: ...

    def step(self, optimizer: torch.optim.Optimizer) -> None: ...


@dataclass(frozen=True)
class RunSettings:
    """Run-wide settings a method may read (resolved once: a config read costs microseconds)."""

    batchsize: int
    mem_batchsize: int
    eval_batchsize: int
    n_epoch: int
    memory_epochs: int  # the stream's epochs on the memory alone after each task (online)
    online: bool
    replay: str  # offline epochs: per_step (memory drawn into every step) or concat
    seed: int
    memory_name: str
    online_iter: int = 1  # stream.online_iter: gradient steps per incoming batch (online)


@dataclass
class MethodContext:
    """What a method reads and uses; the loop keeps task_id, n_exposed and optimizer current."""

    model: nn.Module
    memory: Memory
    split: TaskSplit
    device: torch.device
    train_labels: torch.Tensor  # host: the whole training set's labels (class-order positions)
    fetch_images: Callable[[torch.Tensor], torch.Tensor]  # indices -> uint8 batch on device
    augment: Callable[[torch.Tensor], torch.Tensor]  # uint8 -> uint8: base crop/flip + TRANS
    normalize: Callable[[torch.Tensor], torch.Tensor]  # uint8 -> the model's float input
    writer: RunWriter
    settings: RunSettings
    precision: Precision
    new_optimizer: Callable[[], None]  # a fresh optimizer over parameter_groups() (GDumb)
    optimizer: torch.optim.Optimizer | None = None
    task_id: int = 0
    n_exposed: int = 0  # classes exposed so far (the head's size)

    @property
    def classes_per_task(self) -> int:
        return self.split.classes_per_task

    @property
    def n_groups(self) -> int:
        """Task groups of classes (columns of the accuracy matrix)."""
        return self.split.n_groups

    @property
    def n_old(self) -> int:
        """Classes of the earlier tasks' groups: label < task_id · classes_per_task.

        In disjoint splits these are exactly the classes seen before; in blurry splits, where
        every class is exposed from the start, they are the classes earlier tasks were about.
        """
        return min(self.task_id * self.classes_per_task, self.n_exposed)

    @property
    def n_seen(self) -> int:
        """Classes of the groups up to this task's."""
        return min(self.n_exposed, (self.task_id + 1) * self.classes_per_task)

    def task_logits(
        self, logits: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The logits a loss may use: task_incremental keeps each row's task's classes only."""
        return restrict_to_task(
            logits, labels, self.split.scenario, self.split.classes_per_task, partner
        )

    def labels(self, indices: torch.Tensor) -> torch.Tensor:
        """Labels of training-set indices, on the device."""
        return self.train_labels.index_select(0, indices.cpu()).to(self.device)

    def inputs(self, indices: torch.Tensor) -> torch.Tensor:
        """The model's input for training-set indices, not augmented."""
        return self.normalize(self.fetch_images(indices))

    def selection(self) -> SelectionContext:
        """What a memory (or a model-aware draw) consults when it chooses."""
        return SelectionContext(
            model=self.model,
            fetch_images=self.fetch_images,
            normalize=self.normalize,
            n_exposed=self.n_exposed,
            task_id=self.task_id,
            device=self.device,
            batchsize=self.settings.eval_batchsize,
        )


class Method:
    """Plain training; subclasses override only the hooks where they differ."""

    name = "method"
    uses_memory: ClassVar[bool] = True  # False: the memory is never filled (mem_size ignored)
    offline_only: ClassVar[bool] = False  # True: trains offline whatever stream= says
    # True (with offline_only): under eval_period an online stream is taken in as it flows,
    # memory only (no steps on it), and each anytime point asks anytime_predictor() (GDumb).
    anytime_online: ClassVar[bool] = False
    # True: replay() or the memory's intake depends on the model or on a step's outputs (MIR,
    # DER): the loop then draws, trains and observes one incoming batch (offline: one step) at
    # a time instead of drawing a chunk of steps ahead.
    stepwise_draws: ClassVar[bool] = False
    # True: the method acts at task boundaries (consolidates, snapshots, corrects or retrains at
    # a task's end): exp.task_boundaries=false refuses it (docs/task_free.md says which and why).
    needs_task_boundaries: ClassVar[bool] = False
    # False: online steps train on replay() alone (memory-only training, CLIB): the loop hands
    # the incoming batch to observe_stream() before drawing its steps, and a step whose
    # replay() is empty is skipped. Offline epochs are unchanged (stream rows + replay()).
    trains_on_stream: ClassVar[bool] = True
    # The scenarios (datasets/scenarios.py) the method can run in; others are refused before
    # the run starts, naming these.
    scenarios: ClassVar[tuple[str, ...]] = SCENARIOS

    def __init__(self, context: MethodContext) -> None:
        self.context = context

    @property
    def model(self) -> nn.Module:
        return self.context.model

    @property
    def memory(self) -> Memory:
        return self.context.memory

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def prepare_split(cls, split: TaskSplit) -> TaskSplit:
        """The task sequence this method trains on (joint merges all tasks into one)."""
        return split

    def prepare_model(self) -> None:
        """After the head has grown for the task, before the optimizer is built (freeze, wrap)."""

    def parameter_groups(self) -> Iterable[torch.nn.Parameter] | list[dict[str, Any]]:
        """What the task's optimizer updates: parameters or per-group dicts (learning rates).

        None at all (an empty list): the loop builds no optimizer or schedule, and the method
        owns update() (SLDA's closed-form statistics).
        """
        return self.model.parameters()

    # --- the stream ---------------------------------------------------------------------------

    def before_task(self, task_id: int) -> None:
        """After the head has grown and the optimizer was built for the task."""

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        """Memory indices to train on beside one step's stream batch (none by default).

        Unless stepwise_draws, it must not depend on the model: the loop draws a chunk of
        steps before training on them, in step-by-step order.
        """
        return NO_ROWS

    def online_steps(self, n_incoming: int) -> int:
        """Gradient steps an incoming online batch of n_incoming samples gets (online_iter)."""
        return self.context.settings.online_iter

    def observe_stream(self, stream_indices: torch.Tensor) -> None:
        """Let a streaming memory take in the incoming batch once its steps are drawn."""
        if self.memory.streaming and self.uses_memory:
            labels = self.context.train_labels.index_select(0, stream_indices)
            self.memory.add(stream_indices, labels, self.context.n_exposed)

    def offline_pool(self, task_indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        """An offline epoch's pool and how many of its first entries are stream samples.

        The rest are memory samples shuffled in with them (replay=concat). When the pool holds
        stream samples only, each step gets replay() as online steps do.
        """
        return task_indices, len(task_indices)

    # --- a step -------------------------------------------------------------------------------

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss of a batch and the logits it came from."""
        logits = self.model(batch.x)
        masked = self.context.task_logits(logits, batch.y, batch.y_mix)
        return mixed_cross_entropy(masked, batch), logits

    def update(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step: forward and loss, backward, adjust_gradients, optimizer step.

        A method may own the whole update (inner/outer loops, closed-form statistics); it
        returns the loss and logits the loop adds to its running sums.
        """
        context = self.context
        with context.precision.autocast():
            loss, logits = self.loss(batch)
        context.optimizer.zero_grad(set_to_none=True)
        context.precision.backward(loss, context.optimizer)
        self.adjust_gradients(batch)
        context.precision.step(context.optimizer)
        return loss, logits

    def adjust_gradients(self, batch: TrainBatch) -> None:
        """Between backward (gradients unscaled) and the optimizer step: projections, masks."""

    def after_step(self) -> None:
        """After the update; gradients are still in .grad (path integrals, EMAs)."""

    # --- after the stream ---------------------------------------------------------------------

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        """The memory update once the task's stream has been trained on."""
        if self.uses_memory:
            labels = self.context.train_labels[task_indices]
            self.memory.end_task(task_indices, labels, self.context.selection(), streamed)

    def memory_epochs(self) -> int:
        """Epochs on the memory alone after the memory update."""
        if not self.context.settings.online or not self.uses_memory:
            return 0
        return self.context.settings.memory_epochs

    def memory_pool(self) -> torch.Tensor:
        """Training-set indices that each memory epoch shuffles over (bic holds some out)."""
        return self.memory.indices

    def after_task(self, task_id: int) -> None:
        """After the task's training, before its evaluation."""

    def anytime_predictor(self) -> nn.Module | None:
        """The model an anytime evaluation point scores (None: the run's model, via predict()).

        A method may build a separate model here (GDumb trains a copy from scratch on the
        memory); it is evaluated and discarded, and the global random streams it used are
        restored afterwards, so the run trains as without eval_period.
        """
        return None

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores used for evaluation (highest wins)."""
        return self.model(x)

    # --- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Method state to checkpoint (tensors only)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        return None


def with_prefix(prefix: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """values under prefix-ed keys, to share one flat checkpoint dict with other entries."""
    return {prefix + name: value for name, value in values.items()}


def without_prefix(
    state: dict[str, torch.Tensor], prefix: str, device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    """The entries saved under prefix, the prefix removed (moved to device when given)."""
    return {
        key[len(prefix) :]: value if device is None else value.to(device)
        for key, value in state.items()
        if key.startswith(prefix)
    }


METHODS: Registry[Method] = Registry("mode")
