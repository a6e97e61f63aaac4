"""Selection strategies: pure, batched functions with one signature, chosen by name.

    strategy(features, labels, task_ids, quota, generator) -> positions

`features` are one row per candidate (model features, the inputs themselves, or one score per
candidate for rainbow), or None for strategies that need none (`needs_features = False`);
`quota` says the group of every candidate and how many to keep from each group; `generator`
is a numpy Generator (the memory's own). The result is a LongTensor of positions into the
candidates, at most `quota.counts[g]` from group g (rainbow may fill spare capacity), in the
order the memory stores them: sorted (random, fifo) or group by group, best first (herding,
closest_to_center, cluster). Every strategy works on all groups at once; none loops over
candidates in Python. A user strategy with this signature is named by import path
(`mem_manage.select=package.module:function`). The larger ones have their own modules
(herding.py, kmeans.py); GroupQuota is in quota.py; `select=reservoir`, which needs counters
a pure function cannot carry, is in group_reservoir.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import torch

from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.memory.herding import herd
from rainbow_runner.memory.kmeans import cluster
from rainbow_runner.memory.quota import GroupQuota, feature_rows
from rainbow_runner.memory.selection import rainbow_ranks

Strategy = Callable[
    [torch.Tensor | None, torch.Tensor, torch.Tensor, GroupQuota, np.random.Generator],
    torch.Tensor,
]


def _first_per_group(order: np.ndarray, groups: np.ndarray, counts: np.ndarray) -> torch.Tensor:
    """The first counts[g] positions of each group g in the given order, sorted."""
    by_group = order[np.argsort(groups[order], kind="stable")]
    sorted_groups = groups[by_group]
    rank = np.arange(len(by_group)) - np.searchsorted(sorted_groups, sorted_groups, side="left")
    return torch.from_numpy(np.sort(by_group[rank < counts[sorted_groups]]))


def random_selection(
    features: torch.Tensor | None,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
    quota: GroupQuota,
    generator: np.random.Generator,
) -> torch.Tensor:
    """A uniformly random subset of each group, positions sorted.

    Nothing is drawn when every group fits its quota. Ungrouped, one `choice` draw; grouped, a
    random rank within each group from one permutation (as `selection.random_subset`).
    """
    n = len(labels)
    counts = quota.counts.numpy()
    if quota.groups is None:
        if int(counts[0]) >= n:
            return torch.arange(n)
        return torch.from_numpy(np.sort(generator.choice(n, int(counts[0]), replace=False)))
    groups = quota.groups.numpy()
    if (np.bincount(groups, minlength=len(counts)) <= counts).all():
        return torch.arange(n)
    return _first_per_group(generator.permutation(n), groups, counts)


random_selection.needs_features = False  # type: ignore[attr-defined]


def fifo_selection(
    features: torch.Tensor | None,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
    quota: GroupQuota,
    generator: np.random.Generator,
) -> torch.Tensor:
    """The newest `counts[g]` candidates of each group (candidates come oldest first): a ring
    buffer per group. Positions sorted, so the memory stays in arrival order."""
    n = len(labels)
    groups = quota.group_of(n).numpy()
    counts = quota.counts.numpy()
    return _first_per_group(np.arange(n)[::-1], groups, counts)


fifo_selection.needs_features = False  # type: ignore[attr-defined]


def herding(
    features: torch.Tensor | None,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
    quota: GroupQuota,
    generator: np.random.Generator,
) -> torch.Tensor:
    """iCaRL's herding (moving barycenter) on L2-normalised features, per group; positions
    group by group, each in the order herding chose them."""
    features = feature_rows(features, "herding")
    groups = quota.group_of(len(features), features.device)
    return herd(features, groups, quota.counts.to(features.device)).cpu()


def closest_to_center(
    features: torch.Tensor | None,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
    quota: GroupQuota,
    generator: np.random.Generator,
) -> torch.Tensor:
    """The candidates nearest their group's mean feature (Euclidean), nearest first."""
    features = feature_rows(features, "closest_to_center").float()
    n, device = len(features), features.device
    groups = quota.group_of(n, device)
    sizes = torch.bincount(groups, minlength=quota.n_groups).clamp(min=1)
    means = torch.zeros(quota.n_groups, features.shape[1], device=device)
    means.index_add_(0, groups, features)
    means /= sizes[:, None]
    # ||x - m||^2 = ||x||^2 - 2 x.m + ||m||^2: one product with the G means, no (N, D) copies.
    # (an einsum here is a batch of (1, D) products: 17x slower)
    squared = torch.linalg.vector_norm(features, dim=1).square_()
    to_means = (features @ means.t()).gather(1, groups[:, None]).squeeze(1)
    distance = squared - 2 * to_means + means.square().sum(1)[groups]
    return _best_per_group(distance, groups, quota.counts.to(device)).cpu()


def rainbow(
    features: torch.Tensor | None,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
    quota: GroupQuota,
    generator: np.random.Generator,
) -> torch.Tensor:
    """Rainbow Memory's spread: per group, evenly spaced ranks of a score (features: one score
    per candidate, e.g. perturbation uncertainty), then spare capacity filled at random."""
    if features is None:
        raise ValueError("rainbow ranks one score per candidate; none was given.")
    scores = features.detach().reshape(len(labels), -1)
    if scores.shape[1] != 1:
        raise ValueError(
            f"rainbow ranks one score per candidate; got {scores.shape[1]} values per candidate."
        )
    groups = quota.group_of(len(labels)).numpy()
    keep = rainbow_ranks(
        groups, scores[:, 0].cpu().numpy(), quota.counts.numpy(), quota.capacity, generator
    )
    return torch.from_numpy(keep)


STRATEGIES: dict[str, Strategy] = {
    "random": random_selection,
    "herding": herding,
    "closest_to_center": closest_to_center,
    "cluster": cluster,
    "rainbow": rainbow,
    "fifo": fifo_selection,
}


def needs_features(strategy: Strategy) -> bool:
    """Whether a strategy reads features (user functions do unless they say otherwise)."""
    return bool(getattr(strategy, "needs_features", True))


def import_object(path: str, what: str) -> Callable:
    """`package.module:name` or `package.module.name` -> the object, with a clear error."""
    module_name, _, attribute = path.replace(":", ".").rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute) if module_name else None
    except (ImportError, AttributeError):
        found = None
    if not callable(found):
        raise ChoiceError(
            f"{what}={path!r} is neither a built-in name nor an importable function "
            "(give it as package.module:function)."
        )
    return found


def resolve_strategy(name: str | Strategy) -> Strategy:
    """A strategy by name, by import path, or the callable itself."""
    if callable(name):
        return name
    if name in STRATEGIES:
        return STRATEGIES[name]
    if "." not in name and ":" not in name:
        raise ChoiceError(
            f"unknown mem_manage.select '{name}'; valid choices are: {', '.join(STRATEGIES)}, "
            "reservoir (with intake=stream), or a function's import path (package.module:function)."
        )
    return import_object(name, "mem_manage.select")


def _best_per_group(
    score: torch.Tensor, groups: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """The `counts[g]` lowest-scoring candidates of each group, group by group, lowest first."""
    order = torch.argsort(score, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    sorted_groups = groups[order]
    first = torch.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = torch.arange(len(order), device=order.device) - first
    return order[rank < counts[sorted_groups]]
