"""mode=mer: Meta-Experience Replay (Riemer et al., ICLR 2019): experience replay whose updates
are Reptile meta-steps within and across batches, trading transfer against interference."""

from __future__ import annotations

import torch

from rainbow_runner.datasets.augment.batches import MixedBatch
from rainbow_runner.methods.base import METHODS, NO_ROWS, MethodContext, TrainBatch
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import mixed_cross_entropy
from rainbow_runner.methods.gradients import parameter_snapshot, reptile_interpolate


@METHODS.register("mer")
class MetaExperienceReplay(ExperienceReplay):
    """Per incoming batch: batches_per_example inner batches, each its own mem_batchsize memory
    samples followed by the stream rows; SGD through the task's optimizer over an inner batch
    (one step per sample, or one per inner batch), then the within-batch Reptile step
    θ ← θ_i + beta·(θ − θ_i) from the inner batch's start θ_i; after the inner batches the
    across-batch step θ ← θ_0 + gamma·(θ − θ_0) from the incoming batch's start θ_0. Only
    parameters interpolate (BatchNorm statistics, momentum buffers move on, as in Avalanche).

    One-sample steps run in eval mode (BatchNorm cannot normalise one row: running statistics,
    as the loop does for one-row batches). A batch with no replayed rows (empty memory, or a
    replay=concat pool) repeats its rows in each inner batch; a memory epoch's batch (every row
    from the memory) is split into the inner batches.
    """

    def __init__(
        self,
        context: MethodContext,
        batches_per_example: int = 5,
        beta: float = 0.1,
        gamma: float = 0.1,
        per_sample_sgd: bool = False,
    ) -> None:
        super().__init__(context)
        if batches_per_example < 1:
            raise ValueError(f"mode.batches_per_example={batches_per_example} must be 1 or more.")
        for name, value in (("beta", beta), ("gamma", gamma)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"mode.{name}={value}: a Reptile step size lies in [0, 1].")
        self.batches_per_example = int(batches_per_example)
        self.beta, self.gamma = float(beta), float(gamma)
        self.per_sample_sgd = bool(per_sample_sgd)

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        """One memory draw per inner batch, back to back."""
        if self.concat or len(self.memory) == 0:
            return NO_ROWS
        return torch.cat(
            [self.memory.sample(self.mem_batchsize) for _ in range(self.batches_per_example)]
        )

    def inner_batches(self, batch: TrainBatch) -> list[torch.Tensor]:
        """Row positions of each inner batch: its memory rows, then the stream rows."""
        rows = torch.arange(len(batch.y), device=batch.y.device)
        n_stream = len(rows) if batch.memory_flags is not None else batch.n_stream
        stream, replayed = rows[:n_stream], rows[n_stream:]
        if len(replayed) == 0:
            return [stream] * self.batches_per_example
        parts = replayed.tensor_split(self.batches_per_example)
        return [torch.cat([part, stream]) for part in parts if len(part) + len(stream)]

    def update(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        parameters = [param for param in self.model.parameters() if param.requires_grad]
        start = parameter_snapshot(parameters)
        logits = batch.x.new_zeros(len(batch.y), self.context.n_exposed)
        losses = []
        for rows in self.inner_batches(batch):
            inner_start = parameter_snapshot(parameters)
            steps = rows.split(1) if self.per_sample_sgd else [rows]
            for step_rows in steps:
                loss, step_logits = self.sgd_step(batch, step_rows)
                losses.append(loss.detach())
                logits[step_rows] = step_logits.detach().to(logits.dtype)
            reptile_interpolate(parameters, inner_start, self.beta)
        reptile_interpolate(parameters, start, self.gamma)
        return torch.stack(losses).mean(), logits

    def sgd_step(self, batch: TrainBatch, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on some rows of the batch; the loss and logits before it."""
        context, model = self.context, self.model
        y_mix = None if batch.y_mix is None else batch.y_mix[rows]
        part = MixedBatch(batch.x[rows], batch.y[rows], y_mix, batch.lam)
        was_training = model.training
        model.train(was_training and len(rows) > 1)
        try:
            with context.precision.autocast():
                logits = model(part.x)
                loss = mixed_cross_entropy(logits, part)
            context.optimizer.zero_grad(set_to_none=True)
            context.precision.backward(loss, context.optimizer)
            context.precision.step(context.optimizer)
        finally:
            model.train(was_training)
        return loss, logits
