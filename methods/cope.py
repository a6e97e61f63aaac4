"""mode=cope: Continual Prototype Evolution (De Lange & Tuytelaars, ICCV 2021): L2-normalised
embeddings trained with the pseudo-prototypical proxy loss against momentum-updated class
prototypes, which also classify (nearest prototype)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rainbow_runner.methods.base import METHODS, MethodContext, TrainBatch
from rainbow_runner.methods.embedding import momentum_prototypes, pseudo_prototypical_proxy_loss
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import class_means, nearest_mean_scores


@METHODS.register("cope")
class ContinualPrototypeEvolution(ExperienceReplay):
    """Steps train on stream + memory rows (replayed as er replays) with the PPP loss on the
    normalised penultimate features; the growing linear head is never trained. After each step
    the prototypes of the step's classes move toward the step's class means (momentum alpha); a
    class's first step's mean becomes its prototype. Tests with the nearest prototype.
    """

    def __init__(
        self, context: MethodContext, alpha: float = 0.99, temperature: float = 0.1
    ) -> None:
        super().__init__(context)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"mode.alpha={alpha}: the prototypes' momentum needs 0 <= alpha < 1.")
        if temperature <= 0:
            raise ValueError(f"mode.temperature={temperature}: the PPP loss needs T > 0.")
        self.alpha, self.temperature = float(alpha), float(temperature)
        shape = (context.split.n_classes, context.model.feature_dim)
        self.prototypes = torch.full(shape, float("nan"), device=context.device)
        self.step: tuple[torch.Tensor, torch.Tensor] | None = None  # embeddings, labels

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = F.normalize(self.model.features(batch.x).float(), dim=1)
        # a class new to the prototypes starts at its mean in this batch
        means = class_means(embeddings.detach(), batch.y, len(self.prototypes))
        self.prototypes = torch.where(self.prototypes.isnan(), means, self.prototypes)
        loss = pseudo_prototypical_proxy_loss(
            embeddings, batch.y, self.prototypes, self.temperature
        )
        self.step = embeddings.detach(), batch.y
        return loss, self.scores(self.step[0])

    def after_step(self) -> None:
        embeddings, labels = self.step
        self.prototypes = momentum_prototypes(self.prototypes, embeddings, labels, self.alpha)
        self.step = None

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Nearest-prototype scores over the exposed classes (−inf: no prototype yet)."""
        return nearest_mean_scores(embeddings, self.prototypes[: self.context.n_exposed])

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.prototypes.isnan().all():  # nothing trained yet: the untrained model's
            return self.model(x)
        return self.scores(self.model.features(x))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The prototypes, 0 for unseen classes (NaN never equals itself: a reload would not
        compare equal), and which classes have one."""
        seen = ~self.prototypes.isnan().any(1)
        return {"prototypes": self.prototypes.nan_to_num(0.0), "seen": seen}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.context.device
        seen = state["seen"].to(device)[:, None]
        self.prototypes = state["prototypes"].to(device).masked_fill(~seen, float("nan"))
