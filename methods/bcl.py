"""mode=bcl, mode=bcl_single: Bilevel Continual Learning (Pham et al. 2020, BCL-Dual): replay
with distillation to stored soft targets in an inner loop, an outer step on a held-out
evaluation-set memory, and a Reptile interpolation between the two."""

from __future__ import annotations

import ast
import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rainbow_runner.memory.reservoir import ReservoirMemory
from rainbow_runner.methods.base import (
    METHODS,
    MethodContext,
    TrainBatch,
    with_prefix,
    without_prefix,
)
from rainbow_runner.methods.der import LOGITS, DarkExperienceReplay
from rainbow_runner.methods.functional import mixed_cross_entropy
from rainbow_runner.methods.gradients import parameter_snapshot, reptile_interpolate

VAL = "val."  # checkpoint prefix of the evaluation-set memory


def distillation(logits: torch.Tensor, stored: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(stored/T) ‖ softmax(logits/T)) over the stored columns, averaged over rows and
    columns (the reference's kl_div with PyTorch's old element-mean default: with batchmean,
    memory_strength=100 diverges); classes exposed after storing (blank) get probability 0."""
    width = min(logits.shape[1], stored.shape[1])
    target = torch.nan_to_num(stored[:, :width].float(), nan=-1e4)
    log_probs = F.log_softmax(logits[:, :width].float() / temperature, 1)
    divergence = F.kl_div(log_probs, F.softmax(target / temperature, 1), reduction="batchmean")
    return divergence / width


@METHODS.register("bcl")
class BilevelContinualLearning(DarkExperienceReplay):
    """Per incoming batch, n_meta times: save θ; inner_steps optimizer steps on CE over the
    stream rows and replay_batch_size replay-memory rows plus memory_strength · KL(T) from the
    replayed rows' stored soft targets (their logits when stored, as DER keeps them); one outer
    step on CE over replay_batch_size samples of the evaluation-set memory; then
    θ ← θ_before + beta·(θ − θ_before) (parameters only; BatchNorm statistics move on).

    Each incoming sample goes to the evaluation-set memory with probability n_val, else it is
    offered to the replay memory, whose capacity is shrunk to (1 − n_val) of mem_size: the
    evaluation set (a reservoir over its samples) holds n_val of the memory and is never
    replayed in the inner loop. adapt: evaluation predicts with a copy of the model that took
    one SGD pass at adapt_lr over the evaluation-set memory (the replay memory for
    bcl_single); training goes on from the unadapted model.
    """

    has_evaluation_set = True

    def __init__(
        self,
        context: MethodContext,
        n_val: float = 0.2,
        inner_steps: int = 1,
        n_meta: int = 2,
        beta: float = 0.3,
        temperature: float = 5.0,
        memory_strength: float = 100.0,
        replay_batch_size: int = 10,
        adapt: bool = False,
        adapt_lr: float = 0.1,
    ) -> None:
        super().__init__(context, alpha=0.0)
        if inner_steps < 1 or n_meta < 1 or replay_batch_size < 1:
            raise ValueError(
                f"mode.inner_steps={inner_steps}, mode.n_meta={n_meta}, mode.replay_batch_size="
                f"{replay_batch_size}: each must be 1 or more."
            )
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"mode.beta={beta}: a Reptile step size lies in [0, 1].")
        if temperature <= 0 or memory_strength < 0 or adapt_lr < 0:
            raise ValueError(
                f"mode.temperature={temperature} must be > 0, mode.memory_strength="
                f"{memory_strength} and mode.adapt_lr={adapt_lr} must be 0 or more."
            )
        if not self.has_evaluation_set:
            n_val = 0.0
        if not 0.0 <= n_val < 1.0:
            raise ValueError(f"mode.n_val={n_val}: the evaluation set's share lies in [0, 1).")
        self.n_val, self.inner_steps, self.n_meta = float(n_val), int(inner_steps), int(n_meta)
        self.reptile_beta = float(beta)  # not DER's beta (DER++'s label rows stay off)
        self.temperature, self.memory_strength = float(temperature), float(memory_strength)
        self.mem_batchsize = int(replay_batch_size)  # DER's replay() draws this many rows
        self.adapt, self.adapt_lr = bool(adapt), float(adapt_lr)
        capacity = context.memory.capacity
        val_capacity = int(round(self.n_val * capacity))
        context.memory.capacity = capacity - val_capacity
        seed = context.settings.seed
        self.val_memory = ReservoirMemory(val_capacity, seed + 1)
        self.route_rng = np.random.default_rng(seed + 2)
        self.n_updates = 0
        self.adapted: tuple[tuple[int, int], nn.Module] | None = None  # (updates, size): copy

    # --- memories -----------------------------------------------------------------------------

    def split_off_val(self, indices: torch.Tensor) -> torch.Tensor:
        """Send a random n_val share of indices to the evaluation set; the rest, for replay."""
        if self.val_memory.capacity == 0 or len(indices) == 0:
            return torch.ones(len(indices), dtype=torch.bool)
        to_val = torch.from_numpy(self.route_rng.random(len(indices)) < self.n_val)
        if to_val.any():
            chosen = indices.cpu()[to_val]
            labels = self.context.train_labels.index_select(0, chosen)
            self.val_memory.add(chosen, labels, self.context.n_exposed)
        return ~to_val

    def observe_stream(self, stream_indices: torch.Tensor) -> None:
        keep = self.split_off_val(stream_indices)
        labels = self.context.train_labels.index_select(0, stream_indices.cpu()[keep])
        logits = self.stream_logits[keep.to(self.stream_logits.device)]
        self.memory.add(
            stream_indices.cpu()[keep], labels, self.context.n_exposed, {LOGITS: logits}
        )
        self.stream_logits = None

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        if not streamed and self.memory.capacity > 0:
            task_indices = task_indices.cpu()[self.split_off_val(task_indices)]
        super().end_stream(task_id, task_indices, streamed)

    # --- training -----------------------------------------------------------------------------

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """CE on every row (stream and replayed) + memory_strength · KL to stored soft targets."""
        logits = self.model(batch.x)
        if batch.n_stream:
            self.stream_logits = logits[: batch.n_stream].detach().float()
        masked = self.context.task_logits(logits, batch.y, batch.y_mix)
        loss = mixed_cross_entropy(masked, batch)
        replayed = batch.indices[batch.n_stream :] if batch.n_stream else batch.indices
        if len(replayed) and self.memory_strength > 0 and LOGITS in self.memory.payloads:
            stored, found = self.memory.payload(LOGITS, replayed)
            if found.any():
                rows = logits[len(batch.y) - len(replayed) :][found.to(logits.device)]
                stored = stored[found].to(logits.device)
                loss = loss + self.memory_strength * distillation(rows, stored, self.temperature)
        return loss, logits

    def outer_step(self) -> None:
        """One optimizer step on CE over replay_batch_size evaluation-set samples."""
        if len(self.val_memory) == 0:
            return
        context = self.context
        indices = self.val_memory.sample(self.mem_batchsize)
        with context.precision.autocast():
            logits = self.model(context.inputs(indices))
            labels = context.labels(indices)
            loss = F.cross_entropy(context.task_logits(logits, labels), labels)
        context.optimizer.zero_grad(set_to_none=True)
        context.precision.backward(loss, context.optimizer)
        context.precision.step(context.optimizer)

    def update(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.context
        parameters = [param for param in self.model.parameters() if param.requires_grad]
        losses, first_logits = [], None
        for _ in range(self.n_meta):
            before = parameter_snapshot(parameters)
            for _ in range(self.inner_steps):
                with context.precision.autocast():
                    loss, logits = self.loss(batch)
                context.optimizer.zero_grad(set_to_none=True)
                context.precision.backward(loss, context.optimizer)
                context.precision.step(context.optimizer)
                losses.append(loss.detach())
                first_logits = logits if first_logits is None else first_logits
            self.outer_step()
            reptile_interpolate(parameters, before, self.reptile_beta)
        self.n_updates += 1
        return torch.stack(losses).mean(), first_logits

    # --- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The evaluation-set memory and the routing generator, so a resumed run goes on alike."""
        state = {
            k: torch.from_numpy(np.asarray(v)) for k, v in self.val_memory.state_dict().items()
        }
        route = repr(self.route_rng.bit_generator.state).encode()
        return {
            **with_prefix(VAL, state),
            "route_rng": torch.frombuffer(bytearray(route), dtype=torch.uint8),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        saved = without_prefix(state, VAL)
        if saved:
            self.val_memory.load_state_dict({k: v.cpu().numpy() for k, v in saved.items()})
        if "route_rng" in state:
            route = bytes(state["route_rng"].cpu().numpy().tobytes()).decode()
            self.route_rng.bit_generator.state = ast.literal_eval(route)

    # --- evaluation ---------------------------------------------------------------------------

    def adapt_source(self) -> ReservoirMemory:
        return self.val_memory if self.has_evaluation_set else self.memory

    def adapted_model(self) -> nn.Module:
        """A copy of the model after one SGD pass at adapt_lr over the adaptation memory."""
        context, source = self.context, self.adapt_source()
        with torch.inference_mode(False), torch.enable_grad():
            model = copy.deepcopy(self.model)
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=self.adapt_lr)
            for chunk in source.indices.split(self.mem_batchsize):
                labels = context.labels(chunk)
                logits = context.task_logits(model(context.inputs(chunk)), labels)
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(logits, labels).backward()
                optimizer.step()
        return model.eval()

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if not self.adapt or len(self.adapt_source()) == 0 or self.adapt_lr == 0:
            return self.model(x)
        key = (self.n_updates, len(self.adapt_source()))
        if self.adapted is None or self.adapted[0] != key:
            self.adapted = (key, self.adapted_model())
        return self.adapted[1](x)


@METHODS.register("bcl_single")
class BilevelContinualLearningSingle(BilevelContinualLearning):
    """BCL without the evaluation set: the whole memory replays, no outer step (n_val is 0)."""

    has_evaluation_set = False

    def __init__(
        self,
        context: MethodContext,
        inner_steps: int = 1,
        n_meta: int = 2,
        beta: float = 0.3,
        temperature: float = 5.0,
        memory_strength: float = 100.0,
        replay_batch_size: int = 10,
        adapt: bool = False,
        adapt_lr: float = 0.1,
    ) -> None:
        super().__init__(
            context,
            0.0,
            inner_steps,
            n_meta,
            beta,
            temperature,
            memory_strength,
            replay_batch_size,
            adapt,
            adapt_lr,
        )
