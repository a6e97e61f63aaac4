"""mode=icarl: iCaRL (Rebuffi et al., CVPR 2017): herded exemplars, BCE distillation, NME."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rainbow_runner.datasets.augment.pipeline import MixedBatch
from rainbow_runner.memory.prototype import extract_features
from rainbow_runner.methods.base import METHODS, with_prefix, without_prefix
from rainbow_runner.methods.distillation import frozen_copy, old_class_count, teacher_from_state
from rainbow_runner.methods.er import ExperienceReplay


def class_means(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Normalised mean of the normalised features per class; NaN rows for absent classes."""
    features = F.normalize(features.float(), dim=1)
    sums = torch.zeros(n_classes, features.shape[1], device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=n_classes)[:n_classes]
    means = F.normalize(sums, dim=1)
    return means.masked_fill((counts == 0)[:, None], float("nan"))


def nearest_mean_scores(features: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """−‖f/‖f‖ − μ_c‖² per class (highest = nearest mean); −inf for classes with no mean."""
    distance = torch.cdist(F.normalize(features.float(), dim=1), means.nan_to_num(0.0)).pow(2)
    return (-distance).masked_fill(means.isnan().any(1)[None, :], float("-inf"))


@METHODS.register("icarl")
class ICaRL(ExperienceReplay):
    """Trains all layers on stream ∪ exemplars with one BCE: one-hot targets for the new
    classes, the old model's sigmoid outputs for the classes of earlier tasks. Tests with the
    nearest mean of exemplars, the means taken after each task's memory update.
    """

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        self.old_model: torch.nn.Module | None = None
        self.means: torch.Tensor | None = None

    @property
    def n_old(self) -> int:
        """Classes distilled rather than taught: those of the earlier tasks' groups."""
        trainer = self.trainer
        return old_class_count(trainer.task_id, trainer.split.classes_per_task, trainer.n_exposed)

    def loss(self, batch: MixedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch.x)
        n_classes = logits.shape[1]
        targets = F.one_hot(batch.y, n_classes).float()
        if batch.y_mix is not None and batch.lam < 1.0:
            mixed = F.one_hot(batch.y_mix, n_classes).float()
            targets = batch.lam * targets + (1.0 - batch.lam) * mixed
        if self.old_model is not None and self.n_old > 0:
            with torch.no_grad():
                old_logits = self.old_model(batch.x)[:, : self.n_old]
            targets[:, : self.n_old] = torch.sigmoid(old_logits)
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
        return loss / len(batch.y), logits

    def after_task(self, task_id: int) -> None:
        indices, labels = self.memory.indices, self.memory.labels
        if self.options.nme_task_data:
            task_indices = self.trainer.split.train_tasks[task_id]
            indices = torch.cat([indices, task_indices])
            labels = torch.cat([labels, self.trainer.train_labels_cpu[task_indices]])
        context = self.trainer.selection_context()
        if len(indices):
            features = extract_features(indices, context)
            self.means = class_means(features, labels.to(features.device), self.trainer.n_exposed)
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
        device = self.trainer.device
        self.means = state["means"].to(device) if "means" in state else None
        teacher = without_prefix(state, "old_model.")
        self.old_model = teacher_from_state(self.model, teacher) if teacher else None
