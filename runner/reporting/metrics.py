"""CL metrics as pure functions of the per-task accuracies and the accuracy matrix.

acc_matrix[i, j] is the accuracy on task j's classes after training task i (in %).
"""

from __future__ import annotations

import numpy as np


def a_last(task_acc: np.ndarray) -> float:
    """Accuracy on the test set after the last task."""
    return float(task_acc[-1])


def a_avg(task_acc: np.ndarray) -> float:
    """Mean of the accuracies measured after each task (the paper's anytime accuracy)."""
    return float(np.mean(task_acc))


def forgetting(acc_matrix: np.ndarray) -> float:
    """F_last: mean over old task groups of (best earlier accuracy - last accuracy)."""
    n_rows = acc_matrix.shape[0]
    if n_rows < 2:
        return 0.0
    old = acc_matrix[:, : n_rows - 1]
    best_before = np.max(old[: n_rows - 1], axis=0)
    return float(np.mean(best_before - old[n_rows - 1]))


def intransigence(joint_acc: float | None, last_acc: float) -> float:
    """I_last: how far the final accuracy stays below joint training on the same data."""
    if joint_acc is None:
        return float("nan")
    return float(joint_acc - last_acc)


def average_accuracy(acc_matrix: np.ndarray) -> float:
    """GEM's ACC: mean over all tasks of the accuracy on each after the last task."""
    return float(np.mean(acc_matrix[-1]))


def backward_transfer(acc_matrix: np.ndarray) -> float:
    """GEM's BWT: mean over old tasks of (last accuracy - accuracy right after learning it)."""
    n_rows = acc_matrix.shape[0]
    if n_rows < 2:
        return 0.0
    diag = np.diag(acc_matrix)[: n_rows - 1]
    return float(np.mean(acc_matrix[n_rows - 1, : n_rows - 1] - diag))


def forward_transfer(acc_matrix: np.ndarray, untrained_acc: np.ndarray) -> float:
    """GEM's FWT: mean over later tasks of (accuracy before learning it - untrained accuracy)."""
    n_rows = acc_matrix.shape[0]
    if n_rows < 2:
        return 0.0
    before = np.array([acc_matrix[j - 1, j] for j in range(1, n_rows)])
    return float(np.mean(before - untrained_acc[1:n_rows]))


def summarize(
    task_acc: np.ndarray,
    acc_matrix: np.ndarray,
    untrained_acc: np.ndarray,
    joint_acc: float | None,
) -> dict[str, float]:
    """All headline metrics of one run, by the names the paper and the README use."""
    last = a_last(task_acc)
    return {
        "A_last": last,
        "A_avg": a_avg(task_acc),
        "F_last": forgetting(acc_matrix),
        "I_last": intransigence(joint_acc, last),
        "ACC": average_accuracy(acc_matrix),
        "BWT": backward_transfer(acc_matrix),
        "FWT": forward_transfer(acc_matrix, untrained_acc),
    }
