"""mode=icarl: iCaRL (Rebuffi et al., CVPR 2017): herded exemplars, BCE distillation, NME."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rainbow_runner.methods.base import (
    METHODS,
    MethodContext,
    TrainBatch,
    with_prefix,
    without_prefix,
)
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import (
    frozen_copy,
    nearest_mean_scores,
    sample_class_means,
    teacher_from_state,
)


@METHODS.register("icarl")
class ICaRL(ExperienceReplay):
    """Trains all layers on stream + exemplars with one BCE: one-hot targets for the new
    classes, the old model's sigmoid outputs for the classes of earlier tasks. Tests with the
    nearest mean of exemplars, the means taken after each task's memory update.
    """

    needs_task_boundaries = True  # old model and class means at each task's end

    def __init__(self, context: MethodContext, nme_task_data: bool = False) -> None:
        super().__init__(context)
        self.nme_task_data = bool(nme_task_data)
        self.old_model: torch.nn.Module | None = None
        self.means: torch.Tensor | None = None

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch.x)
        n_classes, n_old = logits.shape[1], self.context.n_old
        targets = F.one_hot(batch.y, n_classes).float()
        if batch.y_mix is not None and batch.lam < 1.0:
            mixed = F.one_hot(batch.y_mix, n_classes).float()
            targets = batch.lam * targets + (1.0 - batch.lam) * mixed
        if self.old_model is not None and n_old > 0:
            with torch.no_grad():
                old_logits = self.old_model(batch.x)[:, :n_old]
            targets[:, :n_old] = torch.sigmoid(old_logits)
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
        return loss / len(batch.y), logits

    def after_task(self, task_id: int) -> None:
        context = self.context
        indices, labels = self.memory.indices, self.memory.labels
        if self.nme_task_data:
            task_indices = context.split.train_tasks[task_id]
            indices = torch.cat([indices, task_indices])
            labels = torch.cat([labels, context.train_labels[task_indices]])
        means = sample_class_means(indices, labels, context.selection(), context.n_exposed)
        self.means = self.means if means is None else means
        self.old_model = frozen_copy(self.model)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.means is None:
            return self.model(x)
        return nearest_mean_scores(self.model.features(x), self.means)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {}
        if self.means is not None:
            state["means"] = self.means
        if self.old_model is not None:
            state.update(with_prefix("old_model.", self.old_model.state_dict()))
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.means = state["means"].to(self.context.device) if "means" in state else None
        teacher = without_prefix(state, "old_model.")
        self.old_model = teacher_from_state(self.model, teacher) if teacher else None
