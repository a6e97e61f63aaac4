"""Rainbow Memory's pure parts: the vote-based uncertainty and the evenly spaced selection."""

from __future__ import annotations

import numpy as np
import torch


def uncertainty_from_predictions(predictions: torch.Tensor, n_classes: int) -> torch.Tensor:
    """1 - (votes for the most predicted class) / K, per sample, from (N, K) predicted labels.

    0 when all K perturbed copies get the same prediction; 1 - 1/K at most.
    """
    n_samples, k = predictions.shape
    votes = torch.zeros(n_samples, n_classes, dtype=torch.int32, device=predictions.device)
    votes.scatter_add_(1, predictions, torch.ones_like(predictions, dtype=torch.int32))
    return 1.0 - votes.max(dim=1).values.float() / k


def rainbow_select(
    labels: np.ndarray,
    uncertainty: np.ndarray,
    capacity: int,
    n_classes: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Positions to keep: per class, evenly spaced ranks of the uncertainty order, then random.

    Each class gets quota = capacity // n_classes. A class with more candidates than its quota
    is sorted by uncertainty (ties broken at random) and every (count // quota)-th sample is
    taken, from the most certain on, until the quota is met: samples from the whole range of
    uncertainty. A class with fewer candidates keeps them all. Slots left over are filled at
    random from the candidates not yet taken. Equal uncertainties give a random per-class subset.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n <= capacity:
        return np.arange(n)
    quota = capacity // max(n_classes, 1)
    tie_break = rng.permutation(n)
    order = np.lexsort((tie_break, np.asarray(uncertainty), labels))
    sorted_labels = labels[order]
    counts = np.bincount(labels, minlength=n_classes)
    first_of_class = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(n) - first_of_class
    class_count = counts[sorted_labels]
    step = np.maximum(class_count // max(quota, 1), 1)
    keep_sorted = (rank % step == 0) & (rank // step < quota)
    keep_sorted &= quota > 0
    chosen = order[keep_sorted]
    missing = capacity - len(chosen)
    if missing > 0:
        rest = np.setdiff1d(np.arange(n), chosen, assume_unique=True)
        chosen = np.concatenate([chosen, rng.choice(rest, missing, replace=False)])
    return np.sort(chosen)
