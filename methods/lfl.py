"""mode=lfl: Less-Forgetful Learning (Jung et al., 2016) on top of experience replay."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rainbow_runner.methods.base import METHODS, MethodContext, TrainBatch
from rainbow_runner.methods.functional import mixed_cross_entropy
from rainbow_runner.methods.regularization import DistilledReplay


@METHODS.register("lfl")
class LessForgetfulLearning(DistilledReplay):
    """From the second task on, every step adds lambda_e · mean squared distance between the
    model's penultimate features and the teacher's (the model at the end of the previous task)
    on the same batch, the teacher run in the model's mode (same BatchNorm statistics).
    """

    def __init__(self, context: MethodContext, lambda_e: float = 1.0) -> None:
        super().__init__(context)
        self.lambda_e = float(lambda_e)

    def feature_penalty(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Mean squared distance of features to the teacher's on x (0 for an unchanged model)."""
        self.teacher.train(self.model.training)
        with torch.no_grad():
            old_features = self.teacher.features(x)
        return F.mse_loss(features.float(), old_features.float())

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.features(batch.x)
        logits = self.model.head(features)
        loss = mixed_cross_entropy(logits, batch)
        if self.teacher is not None and self.lambda_e > 0:
            loss = loss + self.lambda_e * self.feature_penalty(batch.x, features)
        return loss, logits
