"""What the distilling methods (icarl, bic) share: a frozen old model and the old-class count."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of the model in eval mode with no trainable parameters (the teacher)."""
    teacher = copy.deepcopy(model).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def teacher_from_state(template: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Rebuild a saved teacher whose head may be smaller than the current model's."""
    teacher = frozen_copy(template)
    head = getattr(teacher, "head", None)
    if head is not None and "head.weight" in state:
        device = head.weight.device
        head.weight = nn.Parameter(state["head.weight"].to(device), requires_grad=False)
        head.bias = nn.Parameter(state["head.bias"].to(device), requires_grad=False)
    teacher.load_state_dict(state)
    return teacher


def old_class_count(task_id: int, classes_per_task: int, n_exposed: int) -> int:
    """Classes of the earlier tasks' groups: label < task_id · classes_per_task.

    In disjoint splits these are exactly the classes seen before; in blurry splits, where every
    class is exposed from the start, they are the classes the earlier tasks were about.
    """
    return min(task_id * classes_per_task, n_exposed)


def soft_cross_entropy(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """−Σ softmax(teacher/T) · log_softmax(student/T), averaged over the batch (BiC's L_d)."""
    target = F.softmax(teacher_logits / temperature, dim=1)
    return -(target * F.log_softmax(student_logits / temperature, dim=1)).sum(1).mean()
