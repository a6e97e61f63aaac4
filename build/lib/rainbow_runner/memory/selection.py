"""Pure, batched selection functions: which candidates a memory keeps, given labels (and
scores or features), a quota and a generator. The registered managers are thin classes over
these; they are tested on hand-made inputs."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


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


# Herding works on (classes, samples, features) blocks; this bounds one block's element count.
_BLOCK_ELEMENTS = 1 << 26


def herding_selection(
    features: torch.Tensor, labels: torch.Tensor, n_per_class: int
) -> torch.Tensor:
    """Positions of up to n_per_class samples per class, in iCaRL's herding order.

    Each step takes the sample that brings the mean of the chosen (normalised) features closest
    to the class mean; a class with fewer samples keeps all of them. All classes advance
    together, one vectorised step at a time. Positions come back class by class, each class in
    the order herding chose them, on the features' device.
    """
    if n_per_class <= 0 or len(labels) == 0:
        return torch.empty(0, dtype=torch.long, device=features.device)
    features = F.normalize(features.float(), dim=1)
    labels = labels.to(features.device)
    order = torch.argsort(labels, stable=True)
    classes, counts = torch.unique_consecutive(labels[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    longest = int(counts.max())
    per_block = max(1, _BLOCK_ELEMENTS // (longest * features.shape[1]))
    chosen = []
    for first in range(0, len(classes), per_block):
        block = slice(first, first + per_block)
        chosen.append(_herd_block(features, order, starts[block], counts[block], n_per_class))
    return torch.cat(chosen)


def _herd_block(
    features: torch.Tensor,
    order: torch.Tensor,
    starts: torch.Tensor,
    counts: torch.Tensor,
    n_per_class: int,
) -> torch.Tensor:
    """Herding for a block of classes laid out as a zero-padded (classes, samples, dim) tensor."""
    n_classes, longest = len(counts), int(counts.max())
    slot = torch.arange(longest, device=features.device)
    valid = slot[None, :] < counts[:, None]
    source = order[(starts[:, None] + slot[None, :]).clamp(max=len(order) - 1)]
    padded = features[source] * valid[..., None]
    class_mean = padded.sum(1) / counts[:, None]
    running_sum = torch.zeros_like(class_mean)
    taken = ~valid
    steps = min(n_per_class, longest)
    picks = torch.full((n_classes, steps), -1, dtype=torch.long, device=features.device)
    rows = torch.arange(n_classes, device=features.device)
    for step in range(steps):
        # argmin_x ||k*mu - sum - x||^2 = argmin_x ||x||^2 - 2 x.(k*mu - sum); ||x|| = 1 here.
        target = class_mean * (step + 1) - running_sum
        distance = -2.0 * torch.bmm(padded, target[:, :, None]).squeeze(2)
        distance = distance.masked_fill(taken, float("inf"))
        best = distance.argmin(1)
        active = counts > step
        picks[:, step] = torch.where(active, best, -1)
        taken[rows[active], best[active]] = True
        running_sum += padded[rows, best] * active[:, None]
    keep = picks >= 0
    return source[rows[:, None].expand_as(picks)[keep], picks[keep]]
