"""mode=bic: Large Scale Incremental Learning (Wu et al., CVPR 2019), bias correction."""

from __future__ import annotations

import logging

import torch
from torch.nn import functional as F

from rainbow_runner.datasets.augment.pipeline import MixedBatch
from rainbow_runner.methods.base import METHODS, mixed_cross_entropy, with_prefix, without_prefix
from rainbow_runner.methods.distillation import (
    frozen_copy,
    old_class_count,
    soft_cross_entropy,
    teacher_from_state,
)
from rainbow_runner.methods.er import ExperienceReplay

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

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        self.alpha: torch.Tensor | None = None
        self.beta: torch.Tensor | None = None
        self.holdout = torch.empty(0, dtype=torch.long)
        self.old_model: torch.nn.Module | None = None
        self.generator = torch.Generator().manual_seed(int(trainer.cfg.seed))
        self.distill, self.temperature = bool(self.options.distill), float(self.options.temperature)

    def _ensure_correction(self) -> None:
        if self.alpha is None:
            n_groups = self.trainer.split.n_classes // self.trainer.split.classes_per_task
            with torch.inference_mode(False):  # predict() may come first; stage 2 edits these
                self.alpha = torch.ones(n_groups, device=self.trainer.device)
                self.beta = torch.zeros(n_groups, device=self.trainer.device)

    def correct(self, logits: torch.Tensor) -> torch.Tensor:
        self._ensure_correction()
        cpt = self.trainer.split.classes_per_task
        return apply_bias_correction(logits, self.alpha, self.beta, cpt)

    def replay_pool(self) -> torch.Tensor:
        """Memory samples that may be trained on: all but the held-out ones."""
        return self.memory.indices[~torch.isin(self.memory.indices, self.holdout)]

    @property
    def n_old(self) -> int:
        """Classes of the earlier tasks' groups, whose logits are distilled."""
        trainer = self.trainer
        return old_class_count(trainer.task_id, trainer.split.classes_per_task, trainer.n_exposed)

    @property
    def n_seen(self) -> int:
        """Classes of the groups up to this task's (λ = n_old / n_seen)."""
        trainer = self.trainer
        return min(trainer.n_exposed, (trainer.task_id + 1) * trainer.split.classes_per_task)

    def online_batch(self, stream_indices: torch.Tensor) -> torch.Tensor:
        pool = self.replay_pool()
        n_replay = min(self.mem_batchsize, len(pool))
        # the memory's own generator, as er's draws: the same whatever else draws in between
        drawn = self.memory.rng.choice(len(pool), n_replay, replace=False)
        return torch.cat([stream_indices, pool.index_select(0, torch.from_numpy(drawn))])

    def offline_pool(self, task_indices: torch.Tensor) -> torch.Tensor:
        return torch.cat([task_indices, self.replay_pool()])

    def loss(self, batch: MixedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.correct(self.model(batch.x))
        loss = mixed_cross_entropy(logits, batch)
        if self.old_model is not None and self.n_old > 0 and self.distill:
            with torch.no_grad():
                old_logits = self.correct(self.old_model(batch.x))[:, : self.n_old]
            distill = soft_cross_entropy(old_logits, logits[:, : self.n_old], self.temperature)
            lam = self.n_old / self.n_seen
            loss = lam * distill + (1.0 - lam) * loss
        return loss, logits

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        """Memory update, then a new held-out split of it (kept out of the memory epochs)."""
        super().end_stream(task_id, task_indices, streamed)
        prefer = torch.isin(self.memory.indices, self.holdout)
        fraction = float(self.options.holdout_fraction)
        keep_out = class_holdout(self.memory.labels, fraction, self.generator, prefer)
        self.holdout = self.memory.indices[keep_out]

    def memory_pool(self) -> torch.Tensor:
        return self.replay_pool()

    def after_task(self, task_id: int) -> None:
        if task_id > 0 and len(self.holdout):
            self.fit_correction(task_id)
        self.old_model = frozen_copy(self.model)

    def fit_correction(self, task_id: int) -> None:
        """Stage 2: α, β of this task's class group by CE on the held-out samples."""
        trainer = self.trainer
        labels = trainer.train_labels[self.holdout.to(trainer.device)]
        context = trainer.selection_context()
        with torch.no_grad():
            outputs = context.map_batches(self.holdout, lambda x: self.model(context.normalize(x)))
        logits = torch.cat(outputs)
        group = (
            torch.arange(logits.shape[1], device=logits.device) // trainer.split.classes_per_task
        )
        own = group == task_id
        alpha = self.alpha[task_id].clone().requires_grad_(True)
        beta = self.beta[task_id].clone().requires_grad_(True)
        optimizer = torch.optim.Adam([alpha, beta], lr=float(self.options.bias_lr))
        batchsize = int(self.options.bias_batchsize)
        for _ in range(int(self.options.bias_epochs)):
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
        self._ensure_correction()
        state = {"alpha": self.alpha, "beta": self.beta, "holdout": self.holdout}
        state["generator"] = self.generator.get_state()
        if self.old_model is not None:
            state.update(with_prefix("old_model.", self.old_model.state_dict()))
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.trainer.device
        self.alpha, self.beta = state["alpha"].to(device), state["beta"].to(device)
        self.holdout = state["holdout"].cpu()
        self.generator.set_state(state["generator"].cpu())
        teacher = without_prefix(state, "old_model.")
        self.old_model = teacher_from_state(self.model, teacher) if teacher else None
