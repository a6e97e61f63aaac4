"""mode=er_ace: experience replay with the asymmetric cross-entropy (Caccia et al., ICLR 2022):
the stream batch's CE does not push the logits of classes it does not hold."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, TrainBatch
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import asymmetric_cross_entropy


@METHODS.register("er_ace")
class AsymmetricExperienceReplay(ExperienceReplay):
    """ER's batches (stream rows + mem_batchsize memory rows, or the concat pool); the stream
    rows' CE is over the classes present among them only (the other logits are masked and get
    no gradient), the memory rows' CE is over every exposed class; the loss is the mean of the
    two terms. Rows of a memory epoch are all memory rows: plain CE.
    """

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch.x)
        if batch.memory_flags is None:
            stream, memory = slice(0, batch.n_stream), slice(batch.n_stream, None)
        else:
            memory = batch.from_memory
            stream = ~memory
        return asymmetric_cross_entropy(logits, batch, stream, memory), logits
