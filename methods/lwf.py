"""mode=lwf: Learning without Forgetting (Li & Hoiem, 2016) on top of experience replay."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rainbow_runner.methods.base import METHODS, MethodContext, TrainBatch
from rainbow_runner.methods.functional import kl_distillation
from rainbow_runner.methods.regularization import DistilledReplay, for_task, per_task_values


@METHODS.register("lwf")
class LwF(DistilledReplay):
    """From the second task on, every step adds alpha · KL(teacher ‖ model) at temperature T on
    the classes the teacher knew (its head's columns), for every row of the batch; the teacher
    is the model as it was at the end of the previous task. alpha may be a list, one per task.
    """

    def __init__(
        self,
        context: MethodContext,
        alpha: float | Sequence[float] | None = None,
        temperature: float = 2.0,
    ) -> None:
        super().__init__(context)
        self.alphas = per_task_values("alpha", 1.0 if alpha is None else alpha)
        self.temperature = float(temperature)

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        loss, logits = super().loss(batch)
        alpha = for_task(self.alphas, self.context.task_id)
        if self.teacher is not None and alpha > 0:
            with torch.no_grad():
                old_logits = self.teacher(batch.x)
            old_classes = old_logits.shape[1]
            distill = kl_distillation(old_logits, logits[:, :old_classes], self.temperature)
            loss = loss + alpha * distill
        return loss, logits
