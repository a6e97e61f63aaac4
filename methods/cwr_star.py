"""mode=cwr_star: CWR* (Lomonaco & Maltoni 2017; Maltoni & Lomonaco, Neural Networks 2019):
class-specific output weights trained from the consolidated ones and averaged into them."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, Method, MethodContext, TrainBatch

PAST_WEIGHTS = ("sqrt", "count")


def consolidate_weights(
    consolidated: torch.Tensor,
    past: torch.Tensor,
    trained: torch.Tensor,
    current: torch.Tensor,
    past_weight: str = "sqrt",
) -> tuple[torch.Tensor, torch.Tensor]:
    """CWR*'s consolidation of a task's trained output rows into the consolidated ones.

    For each class j with current[j] > 0 samples in the task: w = trained[j] − mean of the task
    classes' trained weights (one scalar, as CWR* and Avalanche); a class seen before becomes
    (cw[j]·a + w)/(a + 1), a = √(past_j/cur_j) ("sqrt", the paper's and Avalanche's) or
    a = past_j/cur_j ("count": (cw[j]·past_j + w·cur_j)/(past_j + cur_j)); a new class takes w.
    Returns the new consolidated rows and the past counts (past_j += cur_j).
    """
    classes = current > 0
    if not classes.any():
        return consolidated.clone(), past.clone()
    shifted = trained - trained[classes].mean()
    ratio = past / current.clamp(min=1)
    if past_weight == "sqrt":
        ratio = ratio.sqrt()
    ratio = ratio[:, None]
    averaged = (consolidated * ratio + shifted) / (ratio + 1)
    merged = torch.where(classes[:, None], averaged, consolidated)
    return merged, past + current


@METHODS.register("cwr_star")
class CopyWeightsWithReinit(Method):
    """Per task: the head's rows are zeroed, the task's classes start from their consolidated
    rows, and the task trains as usual (after the first task only the head when
    freeze_remaining_model, BatchNorm statistics included); then the task's rows are
    consolidated (consolidate_weights) and every consolidated row is written back for the
    evaluation. The head has no bias here (kept at 0, not trained), as AR1's CWR layer.
    """

    uses_memory = False
    needs_task_boundaries = True  # the head is reset at each task's start, consolidated at its end

    def __init__(
        self,
        context: MethodContext,
        freeze_remaining_model: bool = True,
        past_weight: str = "sqrt",
    ) -> None:
        super().__init__(context)
        if past_weight not in PAST_WEIGHTS:
            raise ValueError(
                f"mode.past_weight={past_weight!r} is not one of {', '.join(PAST_WEIGHTS)}."
            )
        self.freeze_remaining_model = freeze_remaining_model
        self.past_weight = past_weight
        n_classes, width = context.split.n_classes, context.model.head.in_features
        self.consolidated = torch.zeros(n_classes, width, device=context.device)
        self.past = torch.zeros(n_classes, device=context.device)
        self.current = torch.zeros(n_classes, device=context.device)  # cur_j, set per task

    @property
    def frozen(self) -> bool:
        """Whether the layers below the head are frozen in this task."""
        return self.freeze_remaining_model and self.context.task_id > 0

    def task_counts(self, task_id: int) -> torch.Tensor:
        """Samples per class the task trains on (cur_j): its training data."""
        labels = self.context.train_labels[self.context.split.train_tasks[task_id]]
        counts = torch.bincount(labels, minlength=self.context.split.n_classes)
        return counts.to(self.context.device, torch.float32)

    def prepare_model(self) -> None:
        head = self.model.head
        head.bias.requires_grad_(False)
        with torch.no_grad():
            head.bias.zero_()
        self.model.backbone.requires_grad_(not self.frozen)

    def parameter_groups(self) -> list:
        if self.frozen:
            return [self.model.head.weight]
        return [p for p in self.model.parameters() if p.requires_grad]

    def before_task(self, task_id: int) -> None:
        """Zero the head; the task's classes start from their consolidated rows."""
        self.current = self.task_counts(task_id)
        current = self.current[: self.context.n_exposed] > 0
        known = current & (self.past[: self.context.n_exposed] > 0)
        with torch.no_grad():
            weight = self.model.head.weight
            weight.zero_()
            weight[known] = self.consolidated[: len(known)][known]

    def update(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frozen:  # the loop puts the model in training mode: keep BatchNorm's statistics
            self.model.backbone.eval()
        return super().update(batch)

    def after_task(self, task_id: int) -> None:
        """Consolidate the task's rows, then evaluate (and start the next task) with them."""
        self.model.backbone.train(self.model.training)  # as update() found it
        n = self.context.n_exposed
        current = self.current
        weight = self.model.head.weight
        trained = torch.zeros_like(self.consolidated)
        trained[:n] = weight.detach()
        self.consolidated, self.past = consolidate_weights(
            self.consolidated, self.past, trained, current, self.past_weight
        )
        with torch.no_grad():
            known = self.past[:n] > 0
            weight[known] = self.consolidated[:n][known]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"consolidated": self.consolidated, "past": self.past, "current": self.current}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.context.device
        self.consolidated = state["consolidated"].to(device)
        self.past = state["past"].to(device)
        self.current = state["current"].to(device)
