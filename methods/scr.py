"""mode=scr: Supervised Contrastive Replay (Mai et al., CVPRW 2021): a SupCon-trained encoder over
stream + memory and a nearest-class-mean classifier on the memory's features."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from rainbow_runner.methods.base import (
    METHODS,
    MethodContext,
    TrainBatch,
    with_prefix,
    without_prefix,
)
from rainbow_runner.methods.embedding import supervised_contrastive_loss
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import nearest_mean_scores, sample_class_means


@METHODS.register("scr")
class SupervisedContrastiveReplay(ExperienceReplay):
    """Each step draws a second augmented view of its stream + memory rows (context.augment on
    the raw images) and trains the backbone and a projection head with SupCon over both views;
    the growing linear head is never trained. Tests with the nearest class mean of the memory's
    features, the means taken after each task (before the first: the untrained head).
    """

    needs_task_boundaries = True  # class means for NCM recomputed at each task's end

    def __init__(
        self, context: MethodContext, temperature: float = 0.1, projection_dim: int = 128
    ) -> None:
        super().__init__(context)
        if temperature <= 0 or projection_dim < 1:
            raise ValueError(
                f"mode.temperature={temperature}, mode.projection_dim={projection_dim}: SCR "
                f"needs a temperature > 0 and a projection of at least 1 dimension."
            )
        self.temperature = float(temperature)
        width = context.model.feature_dim
        self.projection = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, projection_dim)
        ).to(context.device)
        self.means: torch.Tensor | None = None

    def parameter_groups(self) -> Iterable[nn.Parameter]:
        """The model (its head gets no gradient) and the projection head."""
        return [*self.model.parameters(), *self.projection.parameters()]

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.context
        second_view = context.normalize(context.augment(context.fetch_images(batch.indices)))
        features = self.model.features(torch.cat([batch.x, second_view]))
        labels = batch.y.repeat(2)
        loss = supervised_contrastive_loss(self.projection(features), labels, self.temperature)
        return loss, self.scores(features[: len(batch.y)].detach())

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Nearest-class-mean scores over the exposed classes (the head's before any mean)."""
        if self.means is None:
            return self.model.head(features)
        return nearest_mean_scores(features, self.means)

    def after_task(self, task_id: int) -> None:
        context = self.context
        means = sample_class_means(
            self.memory.indices, self.memory.labels, context.selection(), context.n_exposed
        )
        self.means = self.means if means is None else means

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(self.model.features(x))

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = with_prefix("projection.", self.projection.state_dict())
        if self.means is not None:
            state["means"] = self.means
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.context.device
        self.projection.load_state_dict(without_prefix(state, "projection.", device))
        self.means = state["means"].to(device) if "means" in state else None
