"""Test-set evaluation after a task, and how it enters the run record, CSVs and TensorBoard."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rainbow_runner.datasets.base import ImageSource
from rainbow_runner.datasets.scenarios import DOMAIN_INCREMENTAL, TASK_INCREMENTAL, outside_task
from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.memory import Memory
from rainbow_runner.runner.models import MixedPrecision
from rainbow_runner.runner.reporting.metrics import a_avg, forgetting
from rainbow_runner.runner.reporting.results import ResultWriter
from rainbow_runner.runner.run_state import RunRecord

log = logging.getLogger(__name__)
ACCURACY_DECIMALS = 4  # in %: 0.0001% is finer than any test set here resolves
LOSS_DECIMALS = 6  # a float32 mean loss holds ~7 significant digits; the rest is noise


@dataclass
class Evaluation:
    """Test accuracies after one task, in %."""

    accuracy: float
    accuracy_topk: float
    group_accuracy: np.ndarray


@torch.inference_mode()
def evaluate_test_set(
    model: torch.nn.Module,
    predict: Callable[[torch.Tensor], torch.Tensor],
    test_images: ImageSource,
    test_labels: torch.Tensor,
    *,
    split: TaskSplit,
    n_groups: int,
    n_exposed: int,
    topk: int,
    batchsize: int,
    device: torch.device,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    precision: MixedPrecision,
    n_seen_tasks: int | None = None,
) -> Evaluation:
    """Accuracy on the test samples of the exposed classes, per class and per task group.

    Args:
        model: put in eval mode before `predict` (the method's scores, from the model's input).
        test_images: uint8 images; test_labels: relabelled, on `device`.
        split: gives each label's task group; n_groups: the group count.
        n_exposed: classes seen so far; accuracy and accuracy_topk count only their samples.
        n_seen_tasks: domain_incremental: tasks trained so far, whose test samples count.

    task_incremental: a sample is predicted among its task's classes only (multi-head).
    """
    model.eval()
    n_test = len(test_labels)
    top1 = torch.zeros(n_test, dtype=torch.bool, device=device)
    in_topk = torch.zeros(n_test, dtype=torch.bool, device=device)
    for start in range(0, n_test, batchsize):
        stop = min(start + batchsize, n_test)
        if isinstance(test_images, torch.Tensor):  # a view: no copy before normalising
            images = test_images[start:stop].to(device, non_blocking=True)
        else:
            images = test_images[torch.arange(start, stop)].to(device, non_blocking=True)
        with precision.autocast():
            scores = predict(normalize(images))
        labels = test_labels[start:stop]
        if split.scenario == TASK_INCREMENTAL:
            outside = outside_task(labels, scores.shape[1], split.classes_per_task)
            scores = scores.float().masked_fill(outside, float("-inf"))
        best = scores.topk(min(topk, scores.shape[1]), dim=1).indices
        top1[start:stop] = best[:, 0] == labels
        in_topk[start:stop] = (best == labels[:, None]).any(1)
    groups = split.test_groups(test_labels)
    exposed = test_labels < n_exposed
    if split.scenario == DOMAIN_INCREMENTAL and n_seen_tasks is not None:
        exposed = groups < n_seen_tasks
    per_group = torch.bincount(groups[top1], minlength=n_groups) / torch.bincount(
        groups, minlength=n_groups
    ).clamp(min=1)
    return Evaluation(
        accuracy=100.0 * top1[exposed].float().mean().item(),
        accuracy_topk=100.0 * in_topk[exposed].float().mean().item(),
        group_accuracy=100.0 * per_group.cpu().numpy(),
    )


def record_task(
    record: RunRecord,
    writer: ResultWriter,
    evaluation: Evaluation,
    *,
    task_id: int,
    n_tasks: int,
    n_exposed: int,
    n_train_samples: int,
    memory: Memory,
    train_loss: float,
    steps: int,
    seconds: float,
    topk: int,
) -> None:
    """Add a task's evaluation to the run record, its tasks.csv row, TensorBoard and the log.

    Accuracies are rounded to ACCURACY_DECIMALS (a test set of 10^4 samples resolves 0.01%), so
    the CSVs and the events carry no float32 noise; the top-k column appears only for topk > 1.
    """
    accuracy = round(float(evaluation.accuracy), ACCURACY_DECIMALS)
    group_accuracy = np.round(np.asarray(evaluation.group_accuracy, dtype=float), ACCURACY_DECIMALS)
    record.task_accuracy.append(accuracy)
    record.acc_matrix.append(group_accuracy)
    matrix = np.vstack(record.acc_matrix)
    row = {
        "task": task_id,
        "n_seen_classes": n_exposed,
        "n_train_samples": n_train_samples,
        "memory_size": len(memory),
        "test_acc": accuracy,
    }
    if topk > 1:
        row[f"test_acc_top{topk}"] = round(float(evaluation.accuracy_topk), ACCURACY_DECIMALS)
    row |= {
        "A_avg_so_far": round(a_avg(np.array(record.task_accuracy)), ACCURACY_DECIMALS),
        "forgetting_so_far": round(forgetting(matrix), ACCURACY_DECIMALS),
        "train_loss": round(float(train_loss), LOSS_DECIMALS),
        "steps": steps,
        "wall_seconds": round(float(seconds), 3),
    }
    writer.add_task(row, group_accuracy)
    writer.scalar("test/accuracy", accuracy, task_id, "task")
    if topk > 1:
        writer.scalar(f"test/accuracy_top{topk}", row[f"test_acc_top{topk}"], task_id, "task")
    writer.scalar("test/A_avg_so_far", row["A_avg_so_far"], task_id, "task")
    writer.scalar("test/forgetting_so_far", row["forgetting_so_far"], task_id, "task")
    for group, value in enumerate(group_accuracy):  # row task_id of the accuracy matrix
        writer.scalar(f"test/acc_task{group}", value, task_id, "task")
    writer.scalar("train/task_loss", row["train_loss"], task_id, "task")
    writer.histogram("memory/class", memory.labels.numpy(), task_id)
    log.info(
        "task %d/%d | classes %d | train %d | memory %d | test acc %.2f%% | loss %.4f | %.1fs",
        task_id + 1,
        n_tasks,
        n_exposed,
        n_train_samples,
        len(memory),
        accuracy,
        train_loss,
        seconds,
    )
