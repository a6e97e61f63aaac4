"""The `cluster` strategy: k-means in each group with k = the group's quota, keeping the member
nearest each centre. All groups run together on one zero-padded (groups, members, dim) tensor;
every distance is one batched product, ||a||^2 - 2 a.b + ||b||^2, in float32."""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.memory.quota import GroupQuota, feature_rows, padded_layout


def cluster(
    features: torch.Tensor | None,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
    quota: GroupQuota,
    generator: np.random.Generator,
    iterations: int = 2,
    tolerance: float = 0.01,
) -> torch.Tensor:
    """k-means in each group with k = the group's quota; keep the member nearest each centre.

    Centres start by k-means++ seeding in a few rounds (drawn from the generator), then move
    by Lloyd's iterations until at most `tolerance` of the assignments change (at most
    `iterations`; each costs one product of the members with all centres). The member of each
    cluster nearest its centre is kept; a centre left without members gives its slot to the
    unchosen member nearest its own centre. Positions group by group, in centre order.
    """
    features = feature_rows(features, "cluster").float()
    device = features.device
    groups = quota.group_of(len(features), device)
    counts = quota.counts.to(device)
    longest_k = int(counts.max()) if len(counts) else 0
    if longest_k == 0:
        return torch.empty(0, dtype=torch.long)
    source, valid = padded_layout(groups, quota.n_groups)
    members = features[source]
    if not bool(valid.all()):
        members.mul_(valid[..., None])
    squared = torch.linalg.vector_norm(members, dim=2).square_()
    live = torch.arange(longest_k, device=device)[None, :] < counts[:, None]
    centres, assign, own = _seed(members, squared, valid, live, generator)
    for _ in range(iterations):
        centres = _cluster_means(members, valid, assign, centres)
        own, moved = _squared_distances(members, squared, centres, live).min(2)
        changed = int(((moved != assign) & valid).sum())
        assign = moved
        if changed <= tolerance * int(valid.sum()):
            break
    ordered = _nearest_per_centre(own, assign, valid, longest_k)
    kept = torch.arange(valid.shape[1], device=device)[None, :] < counts[:, None]
    return source.gather(1, ordered)[kept].cpu()


def _seed(
    members: torch.Tensor,
    squared: torch.Tensor,
    valid: torch.Tensor,
    live: torch.Tensor,
    generator: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k-means++ seeds drawn in rounds of 1, 1, 2, 4, ... centres; each member's nearest seed
    and its squared distance to it.

    A round draws its centres at once, without replacement, each member with probability
    proportional to its squared distance to the nearest centre so far (Gumbel top-m on the
    log weights): a handful of passes over the members (a pass costs about the same for 1 or 32
    centres) instead of k, and products with all k centres once in all.
    """
    n_groups, width, dim = members.shape
    k = live.shape[1]
    device = members.device
    rounds, total = [], 0
    while total < k:
        rounds.append(min(max(total, 1), k - total))
        total += rounds[-1]
    noise = torch.from_numpy(generator.random((len(rounds), n_groups, width))).to(device)
    gumbel = -torch.log(-torch.log(noise.float().clamp_(min=1e-12)))
    centres = torch.zeros(n_groups, k, dim, device=device)
    nearest = valid.float()  # uniform weights for the first draw
    assign = torch.zeros(n_groups, width, dtype=torch.long, device=device)
    rows = torch.arange(n_groups, device=device)[:, None]
    start = 0
    for draw, size in enumerate(rounds):
        keys = nearest.log().nan_to_num_(neginf=-1e30) + gumbel[draw]
        picks = keys.masked_fill_(~valid, float("-inf")).topk(size, dim=1).indices
        centres[:, start : start + size] = members[rows, picks]
        new = centres[:, start : start + size]
        found, closest = _squared_distances(
            members, squared, new, live[:, start : start + size]
        ).min(2)
        found.clamp_(min=0)
        closer = found < nearest if draw else torch.ones_like(valid)
        nearest = torch.where(closer, found, nearest)
        assign = torch.where(closer, closest + start, assign)
        start += size
    return centres, assign, nearest


def _cluster_means(
    members: torch.Tensor, valid: torch.Tensor, assign: torch.Tensor, centres: torch.Tensor
) -> torch.Tensor:
    """Each centre moved to the mean of its members (a centre without members stays put)."""
    n_groups, k, dim = centres.shape
    flat = assign + torch.arange(n_groups, device=assign.device)[:, None] * k
    flat = flat.masked_fill(~valid, n_groups * k).flatten()  # padding: one spare row
    sums = torch.zeros(n_groups * k + 1, dim, device=centres.device)
    sums.index_add_(0, flat, members.reshape(-1, dim))
    sizes = torch.bincount(flat, minlength=n_groups * k + 1)[:-1].view(n_groups, k, 1)
    means = sums[:-1].view(n_groups, k, dim) / sizes.clamp(min=1)
    return torch.where(sizes > 0, means, centres)


def _squared_distances(
    members: torch.Tensor, squared: torch.Tensor, centres: torch.Tensor, live: torch.Tensor
) -> torch.Tensor:
    """(groups, members, k) squared distances; centres beyond a group's quota are infinite."""
    distance = torch.baddbmm(squared[..., None], members, centres.transpose(1, 2), alpha=-2.0)
    distance += centres.square().sum(2)[:, None, :]
    return distance.masked_fill_(~live[:, None, :], float("inf"))


def _nearest_per_centre(
    own: torch.Tensor, assign: torch.Tensor, valid: torch.Tensor, k: int
) -> torch.Tensor:
    """Member slots of each group in the order kept: the member nearest each centre among its
    own cluster (`own`: squared distance to its centre), in centre order, then the rest,
    nearest their own centre first."""
    own = own.masked_fill(~valid, float("inf"))
    by_distance = own.argsort(dim=1, stable=True)
    cluster_of = assign.gather(1, by_distance)
    by_cluster = by_distance.gather(1, cluster_of.argsort(dim=1, stable=True))
    sorted_clusters = assign.gather(1, by_cluster)
    first = torch.ones_like(valid)
    first[:, 1:] = sorted_clusters[:, 1:] != sorted_clusters[:, :-1]
    first &= valid.gather(1, by_cluster)
    width = valid.shape[1]
    rank = torch.empty_like(assign)
    rank.scatter_(1, by_distance, torch.arange(width, device=assign.device).expand_as(assign))
    rank += k  # the rest, nearest their own centre first
    rank = rank.masked_fill(~valid, 2 * (k + width))
    rows = torch.arange(len(valid), device=valid.device)[:, None].expand_as(by_cluster)
    rank[rows[first], by_cluster[first]] = sorted_clusters[first]
    return rank.argsort(dim=1, stable=True)
