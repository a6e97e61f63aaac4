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


# Herding works on (groups, samples, features) blocks of at most this many elements: about the
# size of a core's L2 cache, so a large class is herded alone and its pass stays close to it.
_BLOCK_ELEMENTS = 1 << 19


def herding_selection(
    features: torch.Tensor, labels: torch.Tensor, n_per_class: int
) -> torch.Tensor:
    """Positions of up to n_per_class samples per class, in iCaRL's herding order.

    Each step takes the sample that brings the mean of the chosen (normalised) features closest
    to the class mean; a class with fewer samples keeps all of them. Positions come back class
    by class, each class in the order herding chose them, on the features' device.
    """
    if n_per_class <= 0 or len(labels) == 0:
        return torch.empty(0, dtype=torch.long, device=features.device)
    labels = labels.to(features.device)
    _, groups = torch.unique(labels, return_inverse=True)
    counts = torch.bincount(groups).clamp(max=n_per_class)
    return herd(features, groups, counts)


def herd(features: torch.Tensor, groups: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Herding with a quota per group: counts[g] positions of group g (groups 0..G-1), group
    by group, each in herding order; on the features' device.

    Step k of a group takes argmax_x x . (k * mean - sum of the chosen), the sample that
    brings the chosen mean closest to the group mean (||x|| = 1). Groups advance together in
    blocks of about `_BLOCK_ELEMENTS`, one matrix-vector pass over a block per step.
    """
    if len(groups) == 0 or int(counts.sum()) == 0:
        return torch.empty(0, dtype=torch.long, device=features.device)
    features = F.normalize(features.float().reshape(len(features), -1), dim=1)
    groups, counts = groups.to(features.device), counts.to(features.device)
    order = torch.argsort(groups, stable=True)
    sizes = torch.bincount(groups, minlength=len(counts))
    starts = torch.cumsum(sizes, 0) - sizes
    busy = torch.nonzero(counts > 0).flatten()
    longest = int(sizes[busy].max())
    per_block = max(1, _BLOCK_ELEMENTS // (longest * features.shape[1]))
    chosen = []
    for first in range(0, len(busy), per_block):
        block = busy[first : first + per_block]
        chosen.append(
            _herd_block(features, order, starts[block], sizes[block], counts[block].clamp(min=0))
        )
    return torch.cat(chosen)


def _herd_block(
    features: torch.Tensor,
    order: torch.Tensor,
    starts: torch.Tensor,
    sizes: torch.Tensor,
    quotas: torch.Tensor,
) -> torch.Tensor:
    """Herding for a block of groups laid out as a zero-padded (groups, samples, dim) tensor."""
    n_groups, longest = len(sizes), int(sizes.max())
    device = features.device
    slot = torch.arange(longest, device=device)
    valid = slot[None, :] < sizes[:, None]
    source = order[(starts[:, None] + slot[None, :]).clamp(max=len(order) - 1)]
    padded = features[source]
    if not bool(valid.all()):
        padded *= valid[..., None]
    mean = padded.sum(1) / sizes[:, None]
    if n_groups == 1 and device.type == "cpu":
        return source[0, _herd_one(padded[0], mean[0], ~valid[0], int(quotas[0]))]
    running_sum = torch.zeros_like(mean)
    blocked = ~valid  # padding, then the samples already chosen
    steps = int(quotas.max())
    picks = torch.full((n_groups, steps), -1, dtype=torch.long, device=device)
    rows = torch.arange(n_groups, device=device)
    scores = torch.empty(n_groups, longest, 1, device=device)
    target = torch.empty_like(mean)
    for step in range(steps):
        torch.sub(mean * (step + 1), running_sum, out=target)
        torch.bmm(padded, target[:, :, None], out=scores)
        best = scores[:, :, 0].masked_fill_(blocked, float("-inf")).argmax(1)
        active = quotas > step
        picks[:, step] = torch.where(active, best, -1)
        blocked[rows, best] |= active
        running_sum += padded[rows, best] * active[:, None]
    keep = picks >= 0
    return source[rows[:, None].expand_as(picks)[keep], picks[keep]]


def _herd_one(
    features: torch.Tensor, mean: torch.Tensor, blocked: torch.Tensor, steps: int
) -> torch.Tensor:
    """One group on the CPU: the same steps as _herd_block with a handful of operations each
    (a matrix-vector pass, the mask, the argmax), the chosen row read by a plain int."""
    running_sum = torch.zeros_like(mean)
    scores = torch.empty(len(features))
    target = torch.empty_like(mean)
    picks = []
    for step in range(steps):
        torch.sub(mean * (step + 1), running_sum, out=target)
        torch.mv(features, target, out=scores)
        best = int(scores.masked_fill_(blocked, float("-inf")).argmax())
        picks.append(best)
        blocked[best] = True
        running_sum += features[best]
    return torch.tensor(picks, dtype=torch.long)
