"""mode=rar: Retrospective Adversarial Replay (Kumari et al., NeurIPS 2022): ER whose replayed
samples are also replayed perturbed toward their nearest current-task neighbour in feature
space, and mixed up among themselves."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from rainbow_runner.datasets.augment.batches import MixedBatch
from rainbow_runner.methods.base import METHODS, MethodContext, TrainBatch
from rainbow_runner.methods.embedding import perturb_toward_features
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import mixed_cross_entropy


@METHODS.register("rar")
class RetrospectiveAdversarialReplay(ExperienceReplay):
    """CE on the step's stream + memory rows as er trains them, plus beta · CE on the memory
    rows perturbed toward the features of their nearest stream row of another class (steps
    PGD steps within ±epsilon, in pixel units of [0, 1]) and mixed up with each other
    (lam ~ Beta(mixup_alpha, mixup_alpha); 0: no mixup). The attack runs in eval mode: it moves
    no BatchNorm statistic and no gradient of the model.
    """

    def __init__(
        self,
        context: MethodContext,
        beta: float = 0.4,
        epsilon: float = 0.0314,
        steps: int = 2,
        mixup_alpha: float = 1.0,
    ) -> None:
        super().__init__(context)
        if epsilon < 0 or steps < 1 or mixup_alpha < 0:
            raise ValueError(
                f"mode.epsilon={epsilon}, mode.steps={steps}, mode.mixup_alpha={mixup_alpha}: "
                f"RAR needs epsilon >= 0, steps >= 1 and mixup_alpha >= 0."
            )
        self.beta, self.epsilon, self.steps = float(beta), float(epsilon), int(steps)
        self.mixup_alpha = float(mixup_alpha)

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch.x)
        loss = mixed_cross_entropy(logits, batch)
        replayed, n_replayed = batch.from_memory, len(batch.memory_indices)
        if self.beta > 0 and 0 < n_replayed < len(batch.y):  # needs stream rows as targets
            perturbed = self.perturbed_replay(batch.x, batch.y, replayed)
            loss = loss + self.beta * self.mixed_loss(perturbed, batch.y[replayed])
        return loss, logits

    def perturbed_replay(
        self, x: torch.Tensor, y: torch.Tensor, replayed: torch.Tensor
    ) -> torch.Tensor:
        """The replayed rows moved toward their nearest stream neighbour of another class
        (rows without one stay as they are)."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            features = self.model.features(x).float()
        memory_features, stream_features = features[replayed], features[~replayed]
        distance = torch.cdist(memory_features, stream_features)
        same_class = y[replayed][:, None] == y[~replayed][None, :]
        distance = distance.masked_fill(same_class, float("inf"))
        nearest = distance.argmin(1)
        has_target = ~same_class.all(1)
        targets = torch.where(has_target[:, None], stream_features[nearest], memory_features)
        low, high = self.pixel_range(x.shape[1])
        perturbed = perturb_toward_features(
            self.model.features,
            x[replayed],
            targets,
            self.epsilon * (high - low),
            self.steps,
            low,
            high,
        )
        self.model.train(was_training)
        return perturbed

    def pixel_range(self, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's input for pixel values 0 and 255, per channel."""
        pixels = torch.tensor([0.0, 255.0], device=self.context.device)
        low, high = self.context.normalize(pixels.view(2, 1, 1, 1).expand(2, channels, 1, 1))
        return low[None], high[None]

    def mixed_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """CE of mixup among the rows (plain CE when mixup_alpha is 0)."""
        if self.mixup_alpha == 0:
            return F.cross_entropy(self.model(x), y)
        lam = float(np.random.beta(self.mixup_alpha, self.mixup_alpha))
        partner = torch.randperm(len(y), device=y.device)
        mixed = MixedBatch(lam * x + (1.0 - lam) * x[partner], y, y[partner], lam)
        return mixed_cross_entropy(self.model(mixed.x), mixed)
