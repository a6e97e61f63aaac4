"""Pure, batched selection functions: which candidates a memory keeps, given labels (and
scores or features), a quota and a generator. The registered managers are thin classes over
these; they are tested on hand-made inputs."""

from __future__ import annotations

import numpy as np
import torch


def balanced_quota(class_counts: np.ndarray, capacity: int) -> np.ndarray:
    """How many of each class to keep so classes are as equal as possible within capacity.

    Water-filling: small classes keep everything; the rest share what is left equally, and
    the remainder goes to the largest classes first.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    if counts.sum() <= capacity:
        return counts.copy()
    quota = np.zeros_like(counts)
    remaining, active = capacity, counts > 0
    while active.any():
        share = remaining // int(active.sum())
        small = active & (counts - quota <= share)
        if not small.any() or share == 0:
            break
        remaining -= int((counts[small] - quota[small]).sum())
        quota[small] = counts[small]
        active &= ~small
    if active.any():
        share, leftover = divmod(remaining, int(active.sum()))
        quota[active] += share
        order = np.flatnonzero(active)[np.argsort(-counts[active], kind="stable")]
        quota[order[:leftover]] += 1
    return quota


def random_subset(
    labels: torch.Tensor, capacity: int, rng: np.random.Generator, class_balanced: bool
) -> torch.Tensor:
    """Positions of a random subset of size <= capacity, optionally equal per class."""
    n = len(labels)
    if n <= capacity:
        return torch.arange(n)
    if not class_balanced:
        return torch.from_numpy(np.sort(rng.choice(n, capacity, replace=False)))
    labels_np = labels.numpy()
    quota = balanced_quota(np.bincount(labels_np), capacity)
    # A random rank within each class: shuffle, then stable-sort by class.
    shuffled = rng.permutation(n)
    by_class = shuffled[np.argsort(labels_np[shuffled], kind="stable")]
    sorted_labels = labels_np[by_class]
    first_of_class = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(n) - first_of_class
    keep = by_class[rank < quota[sorted_labels]]
    return torch.from_numpy(np.sort(keep))


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
    if len(labels) <= capacity:
        return np.arange(len(labels))
    classes, groups = np.unique(labels, return_inverse=True)
    share = capacity // max(n_classes, 1)
    counts = np.minimum(np.bincount(groups, minlength=len(classes)), share)
    return rainbow_ranks(groups, np.asarray(uncertainty), counts, capacity, rng)


def rainbow_ranks(
    groups: np.ndarray,
    scores: np.ndarray,
    counts: np.ndarray,
    capacity: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Rainbow's spread with a quota per group: `counts[g]` evenly spaced ranks of group g's
    score order (ties at random), then the spare capacity filled at random; sorted positions.

    Group g of size s takes every (s // counts[g])-th sample from the lowest score on.
    """
    groups = np.asarray(groups, dtype=np.int64)
    n = len(groups)
    if n <= capacity:
        return np.arange(n)
    counts = np.asarray(counts, dtype=np.int64)
    tie_break = rng.permutation(n)
    order = np.lexsort((tie_break, np.asarray(scores), groups))
    sorted_groups = groups[order]
    sizes = np.bincount(groups, minlength=len(counts))
    first_of_group = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.arange(n) - first_of_group
    quota = counts[sorted_groups]
    step = np.maximum(sizes[sorted_groups] // np.maximum(quota, 1), 1)
    keep_sorted = (rank % step == 0) & (rank // step < quota) & (quota > 0)
    chosen = order[keep_sorted]
    missing = capacity - len(chosen)
    if missing > 0:
        rest = np.setdiff1d(np.arange(n), chosen, assume_unique=True)
        chosen = np.concatenate([chosen, rng.choice(rest, missing, replace=False)])
    return np.sort(chosen)
