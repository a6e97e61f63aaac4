"""mode=bic: Large Scale Incremental Learning (Wu et al., CVPR 2019), bias correction."""

from __future__ import annotations

import logging

import torch
from torch.nn import functional as F

from rainbow_runner.methods.base import (
    METHODS,
    NO_ROWS,
    MethodContext,
    TrainBatch,
    with_prefix,
    without_prefix,
)
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import (
    frozen_copy,
    mixed_cross_entropy,
    soft_cross_entropy,
    teacher_from_state,
)

log = logging.getLogger(__name__)


def apply_bias_correction(
    logits: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, classes_per_task: int
) -> torch.Tensor:
    """α_g · logit + β_g for every column, g = its class's group (label // classes_per_task)."""
    group = torch.arange(logits.shape[1], device=logits.device) // classes_per_task
    return logits * alpha[group] + beta[group]


def class_holdout(
    labels: torch.Tensor, fraction: float, generator: torch.Generator, prefer: torch.Tensor
) -> torch.Tensor:
    """Mask of round(fraction · count) random samples per class, those in `prefer` first."""
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    counts = torch.bincount(labels, minlength=n_classes)
    quota = torch.round(counts.double() * fraction).long()
    keys = torch.rand(len(labels), generator=generator, dtype=torch.float64) - prefer.double()
    by_key = torch.argsort(keys)
    by_class = by_key[torch.argsort(labels[by_key], stable=True)]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(labels)
    rank[by_class] = torch.arange(len(labels)) - starts[labels[by_class]]
    return rank < quota[labels]


@METHODS.register("bic")
class BiC(ExperienceReplay):
    """Stage 1: train on stream ∪ (memory − held-out) with λ·distillation(T) + (1−λ)·CE,
    λ = old / seen classes. Stage 2 (task ≥ 1): fit the task's α, β on the held-out samples,
    everything else frozen. Logits of class group g are always read as α_g · logit + β_g.
    """

    needs_task_boundaries = True  # old model and bias correction at each task's end

    def __init__(
        self,
        context: MethodContext,
        temperature: float = 2.0,
        distill: bool = True,
        holdout_fraction: float = 0.1,
        bias_epochs: int = 200,
        bias_lr: float = 0.001,
        bias_batchsize: int = 100,
    ) -> None:
        super().__init__(context)
        self.temperature, self.distill = float(temperature), bool(distill)
        self.holdout_fraction = float(holdout_fraction)
        self.bias_epochs, self.bias_lr = int(bias_epochs), float(bias_lr)
        self.bias_batchsize = int(bias_batchsize)
        self.alpha = torch.ones(context.n_groups, device=context.device)
        self.beta = torch.zeros(context.n_groups, device=context.device)
        self.holdout = torch.empty(0, dtype=torch.long)
        self.old_model: torch.nn.Module | None = None
        self.generator = torch.Generator().manual_seed(context.settings.seed)

    def correct(self, logits: torch.Tensor) -> torch.Tensor:
        cpt = self.context.classes_per_task
        return apply_bias_correction(logits, self.alpha, self.beta, cpt)

    def replay_pool(self) -> torch.Tensor:
        """Memory samples that may be trained on: all but the held-out ones."""
        return self.memory.indices[~torch.isin(self.memory.indices, self.holdout)]

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        if self.concat:
            return NO_ROWS
        pool = self.replay_pool()
        n_replay = min(self.mem_batchsize, len(pool))
        # the memory's own generator, as er's draws: the same whatever else draws in between
        drawn = self.memory.rng.choice(len(pool), n_replay, replace=False)
        return pool.index_select(0, torch.from_numpy(drawn))

    def offline_pool(self, task_indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        if not self.concat:
            return task_indices, len(task_indices)
        return torch.cat([task_indices, self.replay_pool()]), len(task_indices)

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.correct(self.model(batch.x))
        loss = mixed_cross_entropy(logits, batch)
        n_old = self.context.n_old
        if self.old_model is not None and n_old > 0 and self.distill:
            with torch.no_grad():
                old_logits = self.correct(self.old_model(batch.x))[:, :n_old]
            distill = soft_cross_entropy(old_logits, logits[:, :n_old], self.temperature)
            lam = n_old / self.context.n_seen  # old over seen classes
            loss = lam * distill + (1.0 - lam) * loss
        return loss, logits

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        """Memory update, then a new held-out split of it (kept out of the memory epochs)."""
        super().end_stream(task_id, task_indices, streamed)
        prefer = torch.isin(self.memory.indices, self.holdout)
        keep_out = class_holdout(self.memory.labels, self.holdout_fraction, self.generator, prefer)
        self.holdout = self.memory.indices[keep_out]

    def memory_pool(self) -> torch.Tensor:
        return self.replay_pool()

    def after_task(self, task_id: int) -> None:
        if task_id > 0 and len(self.holdout):
            self.fit_correction(task_id)
        self.old_model = frozen_copy(self.model)

    def fit_correction(self, task_id: int) -> None:
        """Stage 2: α, β of this task's class group by CE on the held-out samples."""
        labels = self.context.labels(self.holdout)
        selection = self.context.selection()
        with torch.no_grad():
            apply = lambda x: self.model(selection.normalize(x))  # noqa: E731
            outputs = selection.map_batches(self.holdout, apply)
        logits = torch.cat(outputs)
        group = torch.arange(logits.shape[1], device=logits.device) // self.context.classes_per_task
        own = group == task_id
        alpha = self.alpha[task_id].clone().requires_grad_(True)
        beta = self.beta[task_id].clone().requires_grad_(True)
        optimizer = torch.optim.Adam([alpha, beta], lr=self.bias_lr)
        batchsize = self.bias_batchsize
        for _ in range(self.bias_epochs):
            for chunk in torch.randperm(len(labels), device=labels.device).split(batchsize):
                scale = torch.where(own, alpha, self.alpha[group])
                shift = torch.where(own, beta, self.beta[group])
                loss = F.cross_entropy(logits[chunk] * scale + shift, labels[chunk])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            self.alpha[task_id] = alpha.detach()
            self.beta[task_id] = beta.detach()
        log.info(
            "bias correction of task %d: alpha %.4f beta %.4f (%d held-out samples)",
            task_id,
            self.alpha[task_id].item(),
            self.beta[task_id].item(),
            len(labels),
        )

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.correct(self.model(x))

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"alpha": self.alpha, "beta": self.beta, "holdout": self.holdout}
        state["generator"] = self.generator.get_state()
        if self.old_model is not None:
            state.update(with_prefix("old_model.", self.old_model.state_dict()))
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.context.device
        self.alpha, self.beta = state["alpha"].to(device), state["beta"].to(device)
        self.holdout = state["holdout"].cpu()
        self.generator.set_state(state["generator"].cpu())
        teacher = without_prefix(state, "old_model.")
        self.old_model = teacher_from_state(self.model, teacher) if teacher else None
