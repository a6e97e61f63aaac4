"""The three continual-learning scenarios and the task-aware logit mask of task_incremental.

class_incremental: one growing head, no task id at test (the paper's setting).
task_incremental: the task id is known at train and test; "multi-head" as GEM and Avalanche
evaluate it: the one growing head's logits are masked to the task's classes, in the loss (each
row by its own task) and at test (a prediction never leaves the sample's task).
domain_incremental: every task has the same classes; the inputs change per task.
"""

from __future__ import annotations

import torch

CLASS_INCREMENTAL = "class_incremental"
TASK_INCREMENTAL = "task_incremental"
DOMAIN_INCREMENTAL = "domain_incremental"
SCENARIOS: tuple[str, ...] = (CLASS_INCREMENTAL, TASK_INCREMENTAL, DOMAIN_INCREMENTAL)


def outside_task(
    labels: torch.Tensor, n_scores: int, classes_per_task: int, *more: torch.Tensor | None
) -> torch.Tensor:
    """(rows, n_scores) bool: True where a class is outside every task the row's labels name."""
    class_task = torch.arange(n_scores, device=labels.device) // classes_per_task
    inside = class_task[None, :] == (labels // classes_per_task)[:, None]
    for other in more:  # a mixed batch's partner labels (CutMix) keep their task's classes too
        if other is not None:
            inside |= class_task[None, :] == (other // classes_per_task)[:, None]
    return ~inside


def restrict_to_task(
    logits: torch.Tensor,
    labels: torch.Tensor,
    scenario: str,
    classes_per_task: int,
    partner_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """task_incremental: logits of classes outside each row's task pushed to the dtype's lowest
    value (finite: a CE over them stays finite); other scenarios: logits unchanged."""
    if scenario != TASK_INCREMENTAL:
        return logits
    mask = outside_task(labels, logits.shape[1], classes_per_task, partner_labels)
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)
