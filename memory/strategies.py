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
(`mem_manage.select=package.module:function`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.memory.selection import herd, rainbow_ranks


@dataclass(frozen=True)
class GroupQuota:
    """The group of each candidate and how many of each group to keep.

    groups: (N,) group index 0..G-1 of every candidate, or None when the memory does not group
        (one group holding every candidate; random then draws as a plain random subset).
    counts: (G,) how many to keep from each group (at most the group's size).
    capacity: what the memory may hold in all (rainbow fills spare capacity up to it).
    """

    groups: torch.Tensor | None
    counts: torch.Tensor
    capacity: int

    @property
    def n_groups(self) -> int:
        return len(self.counts)

    def group_of(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The group of every candidate (zeros when ungrouped), on `device`."""
        if self.groups is None:
            return torch.zeros(n, dtype=torch.long, device=device)
        return self.groups.to(device)

    def sizes(self, n: int) -> torch.Tensor:
        return torch.bincount(self.group_of(n), minlength=self.n_groups)


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
    features = _rows(features, "herding")
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
    features = _rows(features, "closest_to_center").float()
    n, device = len(features), features.device
    groups = quota.group_of(n, device)
    sizes = torch.bincount(groups, minlength=quota.n_groups).clamp(min=1)
    means = torch.zeros(quota.n_groups, features.shape[1], device=device)
    means.index_add_(0, groups, features)
    means /= sizes[:, None]
    # ||x - m||^2 = ||x||^2 - 2 x.m + ||m||^2: one product with the G means, no (N, D) copies.
    squared = torch.einsum("nd,nd->n", features, features)
    to_means = (features @ means.t()).gather(1, groups[:, None]).squeeze(1)
    distance = squared - 2 * to_means + means.square().sum(1)[groups]
    return _best_per_group(distance, groups, quota.counts.to(device)).cpu()


def cluster(
    features: torch.Tensor | None,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
    quota: GroupQuota,
    generator: np.random.Generator,
    iterations: int = 10,
) -> torch.Tensor:
    """k-means in each group with k = the group's quota; keep the member nearest each centre.

    Centres start by k-means++ seeding (drawn from the generator) and move by Lloyd's
    iterations until no assignment changes (at most `iterations`); all groups run together on
    one padded (groups, members, dim) tensor. A centre left without members gives its slot to
    the unchosen member nearest its own centre. Positions group by group, in centre order.
    """
    features = _rows(features, "cluster").float()
    device = features.device
    groups = quota.group_of(len(features), device)
    counts = quota.counts.to(device)
    n_groups, longest_k = quota.n_groups, int(counts.max()) if len(counts) else 0
    if longest_k == 0:
        return torch.empty(0, dtype=torch.long)
    source, valid = _padded_layout(groups, n_groups)
    members = features[source] * valid[..., None]
    centres = _kmeans_plus_plus(members, valid, counts, longest_k, generator)
    live = torch.arange(longest_k, device=device)[None, :] < counts[:, None]
    assign = None
    for _ in range(max(1, iterations)):
        distance = _squared_distances(members, centres, live)
        new_assign = distance.argmin(2)
        if assign is not None and torch.equal(new_assign[valid], assign[valid]):
            break
        assign = new_assign
        sums = torch.zeros_like(centres)
        sums.scatter_add_(1, assign[..., None].expand_as(members), members * valid[..., None])
        sizes = torch.zeros(centres.shape[:2], device=device)
        sizes.scatter_add_(1, assign, valid.float())
        moved = sizes > 0
        centres = torch.where(moved[..., None], sums / sizes.clamp(min=1)[..., None], centres)
    distance = _squared_distances(members, centres, live)
    assign = distance.argmin(2)
    own = distance.gather(2, assign[..., None]).squeeze(2).masked_fill(~valid, float("inf"))
    # The nearest member of each centre's cluster (members of other clusters masked out).
    k_index = torch.arange(longest_k, device=device)
    mine = assign[:, None, :] == k_index[None, :, None]
    to_centre = distance.transpose(1, 2).masked_fill(~mine | ~valid[:, None, :], float("inf"))
    nearest = to_centre.argmin(2)  # (groups, k)
    found = live & torch.isfinite(to_centre.gather(2, nearest[..., None]).squeeze(2))
    rows = torch.arange(n_groups, device=device)[:, None]
    width = valid.shape[1]
    rank = torch.full(valid.shape, 2 * (longest_k + width), dtype=torch.long, device=device)
    rank[rows.expand_as(nearest)[found], nearest[found]] = k_index.expand_as(nearest)[found]
    missing = counts - found.sum(1)
    if bool((missing > 0).any()):  # empty clusters: the unchosen members nearest their centre
        spare = own.masked_fill(rank < longest_k, float("inf")).argsort(dim=1, stable=True)
        slot = torch.arange(width, device=device)[None, :].expand_as(spare)
        extra = slot < missing[:, None]
        rank[rows.expand_as(spare)[extra], spare[extra]] = longest_k + slot[extra]
    ordered = rank.argsort(dim=1, stable=True)
    kept = torch.arange(width, device=device)[None, :] < counts[:, None]
    return source.gather(1, ordered)[kept].cpu()


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
            "or a function's import path (package.module:function)."
        )
    return import_object(name, "mem_manage.select")


def _rows(features: torch.Tensor | None, name: str) -> torch.Tensor:
    if features is None:
        raise ValueError(f"{name} chooses by features; none were given.")
    return features.detach().reshape(len(features), -1)


def _padded_layout(groups: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(groups, longest) candidate positions laid out group by group, and which are real."""
    order = torch.argsort(groups, stable=True)
    sizes = torch.bincount(groups, minlength=n_groups)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.arange(int(sizes.max()), device=groups.device)
    valid = slot[None, :] < sizes[:, None]
    source = order[(starts[:, None] + slot[None, :]).clamp(max=len(order) - 1)]
    return source, valid


def _kmeans_plus_plus(
    members: torch.Tensor,
    valid: torch.Tensor,
    counts: torch.Tensor,
    k: int,
    generator: np.random.Generator,
) -> torch.Tensor:
    """k-means++ seeds for every group at once: each next centre is a member drawn with
    probability proportional to its squared distance to the nearest centre so far."""
    n_groups, width, _ = members.shape
    device = members.device
    rows = torch.arange(n_groups, device=device)
    sizes = valid.sum(1)
    centres = torch.zeros(n_groups, k, members.shape[2], device=device)
    draws = torch.from_numpy(generator.random((k, n_groups))).to(device)
    first = (draws[0] * sizes).long().clamp(max=width - 1)
    centres[:, 0] = members[rows, first]
    squared = members.square().sum(2)

    def distance_to(centre: torch.Tensor) -> torch.Tensor:  # (groups, dim) -> (groups, width)
        across = torch.bmm(members, centre[:, :, None])[:, :, 0]
        distance = squared - 2 * across + centre.square().sum(1)[:, None]
        return distance.clamp_(min=0).masked_fill_(~valid, 0.0)

    nearest = distance_to(centres[:, 0])
    for j in range(1, k):
        weights = nearest.double()
        total = weights.sum(1)
        cumulative = weights.cumsum(1)
        pick = torch.searchsorted(cumulative, (draws[j] * total)[:, None], right=True)[:, 0]
        pick = pick.clamp(max=width - 1)
        # No distance left (duplicates): the first member not yet a centre.
        spare = (nearest > 0) | ~valid
        fallback = torch.where(valid & ~spare, 0, 1).argmin(1)
        pick = torch.where(total > 0, pick, fallback)
        centres[:, j] = members[rows, pick]
        nearest = torch.minimum(nearest, distance_to(centres[:, j]))
    return centres


def _squared_distances(
    members: torch.Tensor, centres: torch.Tensor, live: torch.Tensor
) -> torch.Tensor:
    """(groups, members, k) squared distances; centres beyond a group's quota are infinite."""
    distance = torch.baddbmm(
        members.square().sum(2, keepdim=True),
        members,
        centres.transpose(1, 2),
        alpha=-2.0,
    )
    distance += centres.square().sum(2)[:, None, :]
    return distance.masked_fill(~live[:, None, :], float("inf"))


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
