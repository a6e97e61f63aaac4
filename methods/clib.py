"""mode=clib: CLIB (Koh et al., "Online Continual Learning on Class Incremental Blurry Task
Configuration with Anytime Inference", ICLR 2022): a sample-wise importance memory
(memory/clib.py), training on the memory alone, and an adaptive learning rate."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from rainbow_runner.memory.clib import ImportanceMemory, common_loss_decrease
from rainbow_runner.methods.base import METHODS, NO_ROWS, Method, MethodContext, TrainBatch

SIGNIFICANCE = 0.05  # the authors' one-sided Welch t-test level
BURN_IN = 20  # ticks before loss decreases are recorded (the authors' train_count > 20)
INPUT_CACHE_BYTES = 256 * 2**20  # a larger memory's inputs are rebuilt at each measurement


def low_lr_wins_pvalue(low: list[float], high: list[float]) -> float:
    """One-sided Welch t-test p-value of "the low lr's loss decreases are larger"."""
    from scipy.stats import ttest_ind  # ~1-5 s to import: only when clib's test first runs

    return float(ttest_ind(low, high, equal_var=False, alternative="greater").pvalue)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """The model in eval mode inside the block, each module's mode restored after.

    The flags are set directly: Module.train() walks the model through Module.__setattr__
    (~0.2 ms for mlp400, a tenth of a measurement's forward pass, twice per step); a model
    with a module that overrides train() gets train() itself.
    """
    modules = list(model.modules())
    if any(type(module).train is not nn.Module.train for module in modules):
        was_training = model.training
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)
        return
    modes = [module.training for module in modules]
    for module in modules:
        object.__setattr__(module, "training", False)
    try:
        yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            object.__setattr__(module, "training", mode)


class AdaptiveLearningRate:
    """CLIB's learning rate: alternate a high and a low lr, keep the one that helps more.

    Every `period` ticks the lr switches between high and low; the memory's mean loss decrease
    over that period (samples stored throughout) is recorded for the lr that ran it, the
    last `length` records per lr kept. Once both have `length` records, a one-sided Welch
    t-test asks whether the low lr decreases the loss more: if so (p < 0.05) both move down
    (high ← low, low ← low·step); if the high lr does (p > 0.95) both move up (low ← high,
    high ← high/step); either way the records restart and the lr switches once more. A tick
    is one incoming sample's steps, as in the authors' code.
    """

    def __init__(self, lr: float, step: float, length: int, period: int) -> None:
        self.high, self.low, self.step = float(lr), float(lr) * step, float(step)
        self.length, self.period = int(length), int(period)
        self.is_high = True
        self.ticks = 0
        self.decreases: dict[bool, list[float]] = {True: [], False: []}  # by is_high
        self.mark_indices = torch.empty(0, dtype=torch.long)  # the memory at the last switch
        self.mark_losses = torch.empty(0, dtype=torch.float64)

    @property
    def lr(self) -> float:
        return self.high if self.is_high else self.low

    def tick(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """One tick, given the memory's samples and their current losses."""
        self.ticks += 1
        if self.ticks % self.period:
            return
        decrease = common_loss_decrease(self.mark_indices, self.mark_losses, indices, losses)
        if decrease is not None and self.ticks > BURN_IN:
            record = self.decreases[self.is_high]
            record.append(decrease)
            del record[: -self.length]
        self.mark_indices, self.mark_losses = indices.clone(), losses.clone()
        self.is_high = not self.is_high
        low, high = self.decreases[False], self.decreases[True]
        if len(low) == len(high) >= self.length:
            pvalue = low_lr_wins_pvalue(low, high)
            if pvalue < SIGNIFICANCE:
                self.high, self.low = self.low, self.low * self.step
            elif pvalue > 1 - SIGNIFICANCE:
                self.low, self.high = self.high, self.high / self.step
            else:
                return
            self.decreases = {True: [], False: []}
            self.is_high = not self.is_high

    def state_dict(self) -> dict[str, torch.Tensor]:
        scalars = [self.high, self.low, float(self.is_high), float(self.ticks)]
        return {
            "lr.scalars": torch.tensor(scalars, dtype=torch.float64),
            "lr.high_decreases": torch.tensor(self.decreases[True], dtype=torch.float64),
            "lr.low_decreases": torch.tensor(self.decreases[False], dtype=torch.float64),
            "lr.mark_indices": self.mark_indices,
            "lr.mark_losses": self.mark_losses,
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        high, low, is_high, ticks = state["lr.scalars"].tolist()
        self.high, self.low, self.is_high, self.ticks = high, low, bool(is_high), int(ticks)
        self.decreases = {
            True: state["lr.high_decreases"].tolist(),
            False: state["lr.low_decreases"].tolist(),
        }
        self.mark_indices = state["lr.mark_indices"].cpu()
        self.mark_losses = state["lr.mark_losses"].cpu()


@METHODS.register("clib")
class CLIB(Method):
    """Online: each incoming batch enters the importance memory first, then every step
    trains on batchsize samples drawn from the memory alone, online_iter steps per incoming
    sample (the paper's rate). Every imp_update_period steps the memory's loss is measured
    (eval mode, un-augmented) to update the importances; each incoming sample's steps tick
    the adaptive lr. Task-free: no memory epochs, and the lr carries over task boundaries.
    Offline (epochs over a task's samples), each step trains on the task's rows plus
    mem_batchsize memory rows, as er, with the same importances and lr, and the task's
    samples enter the memory at its end.
    """

    stepwise_draws = True  # the intake depends on importances the steps measure
    trains_on_stream = False

    def __init__(
        self,
        context: MethodContext,
        imp_update_period: int = 1,
        lr_step: float = 0.95,
        lr_length: int = 10,
        lr_period: int = 10,
    ) -> None:
        super().__init__(context)
        if not isinstance(context.memory, ImportanceMemory):
            raise ValueError(
                f"mode=clib ranks its memory by sample-wise importance and needs "
                f"mem_manage=clib (or mem_manage=default), not "
                f"mem_manage={context.settings.memory_name}."
            )
        if context.memory.capacity == 0:
            raise ValueError("mode=clib trains on its memory alone: set mem_size > 0.")
        if imp_update_period < 1 or lr_length < 1 or lr_period < 1 or not 0 < lr_step < 1:
            raise ValueError(
                f"mode=clib needs imp_update_period, lr_length, lr_period >= 1 and 0 < lr_step "
                f"< 1; got {imp_update_period}, {lr_length}, {lr_period} and {lr_step}."
            )
        self.imp_update_period = int(imp_update_period)
        self.lr_options = (float(lr_step), int(lr_length), int(lr_period))
        self.schedule: AdaptiveLearningRate | None = None  # made at the first optimizer
        self.steps = 0
        # The memory's model inputs and labels, for the indices they were made from.
        self.measured_inputs: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.measured_labels = torch.empty(0, dtype=torch.long)

    @property
    def memory(self) -> ImportanceMemory:
        return self.context.memory

    def online_steps(self, n_incoming: int) -> int:
        return self.context.settings.online_iter * n_incoming

    def memory_epochs(self) -> int:
        return 0  # task-free: nothing happens at a boundary

    def before_task(self, task_id: int) -> None:
        self.apply_lr()

    def apply_lr(self) -> None:
        """The schedule's lr on every group (a new task's optimizer, an epoch's scheduler)."""
        groups = self.context.optimizer.param_groups
        if self.schedule is None:  # the first optimizer's lr is the first high lr
            self.schedule = AdaptiveLearningRate(float(groups[0]["lr"]), *self.lr_options)
        for group in groups:
            group["lr"] = self.schedule.lr

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        if len(self.memory) == 0:
            return NO_ROWS
        settings = self.context.settings
        return self.memory.sample(settings.batchsize if settings.online else settings.mem_batchsize)

    def update(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if (
            self.schedule is None
            or self.context.optimizer.param_groups[0]["lr"] != self.schedule.lr
        ):
            self.apply_lr()
        loss, logits = super().update(batch)
        self.memory.record_training(batch.memory_indices)
        return loss, logits

    def after_step(self) -> None:
        self.steps += 1
        if self.steps % self.imp_update_period:
            return
        if len(self.memory):
            self.memory.measure(self.memory_losses())
        per_sample = self.context.settings.online_iter if self.context.settings.online else 1
        if self.steps % per_sample == 0:
            self.schedule.tick(self.memory.measured_indices, self.memory.measured_losses)
            self.apply_lr()

    def memory_losses(self) -> torch.Tensor:
        """Each stored sample's cross-entropy under the current model (eval, un-augmented).

        Batches of eval_batchsize, as an evaluation. The memory's inputs and labels are kept
        while the memory holds the same samples (an incoming batch's steps all measure the
        same memory), so a measurement is the forward pass alone.
        """
        context, indices = self.context, self.memory.indices
        if self.measured_inputs is None or not torch.equal(self.measured_inputs[0], indices):
            inputs = context.inputs(indices)
            keep = inputs.element_size() * inputs.nelement() <= INPUT_CACHE_BYTES
            self.measured_inputs = (indices.clone(), inputs if keep else None)
            self.measured_labels = context.labels(indices)
        else:
            inputs = self.measured_inputs[1]
        if inputs is None:  # too large to keep: the selection fetches batch by batch
            inputs = context.inputs(indices)
        with evaluating(self.model), torch.inference_mode(), context.precision.autocast():
            chunks = inputs.split(context.settings.eval_batchsize)
            logits = torch.cat([self.model(chunk).float() for chunk in chunks])
        return F.cross_entropy(logits, self.measured_labels, reduction="none").cpu()

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"steps": torch.tensor(self.steps)}
        return state if self.schedule is None else state | self.schedule.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.steps = int(state["steps"])
        if "lr.scalars" in state:
            self.schedule = AdaptiveLearningRate(0.0, *self.lr_options)
            self.schedule.load_state_dict(state)
