"""The `cluster` strategy: k-means in each group with k = the group's quota, keeping the member
nearest each centre. All groups run together on one padded (groups, members, dim) tensor;
each assignment is one batched product ||x||^2 + ||c||^2 - 2 x.c into one reused buffer and
one min over it, in bfloat16 where the hardware multiplies it natively; k-means++ seeds are
drawn from a sample of a few times k members. The member kept for a centre is the nearest in
float32: only the members the product's rounding leaves in doubt are measured again."""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.memory.centre_products import DEAD_CENTRE, CentreProducts, product_dtype
from rainbow_runner.memory.quota import GroupQuota, feature_rows, padded_layout

# Seeding draws from SEED_SAMPLE * k members of each group, at least SEED_FLOOR (scikit-learn's
# MiniBatchKMeans seeds on 3k as well): mlp400's objective within 0.3% of seeding on all.
SEED_SAMPLE = 3
SEED_FLOOR = 256
# Seeding reads the seeds' distances off one (groups, m, m) product when it holds at most this
# many values (8 MB of bfloat16), else multiplies the members with each round's seeds.
PAIRWISE_LIMIT = 1 << 22


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

    Centres start by k-means++ seeding in a few rounds on a random sample of each group's
    members (all of a small group's; drawn from the generator), then move by Lloyd's
    iterations on every member until at most `tolerance` of the assignments change (at most
    `iterations`; each costs one product of the members with all centres). The member of each
    cluster nearest its centre (in float32) is kept; a centre left without members gives its
    slot to the unchosen member nearest its own centre. Positions group by group, in centre
    order.
    """
    features = feature_rows(features, "cluster").float()
    device = features.device
    groups = quota.group_of(len(features), device)
    counts = quota.counts.to(device)
    longest_k = int(counts.max()) if len(counts) else 0
    if longest_k == 0:
        return torch.empty(0, dtype=torch.long)
    source, valid = padded_layout(groups, quota.n_groups)
    sample = _seed_sample(valid, longest_k, generator)
    space = CentreProducts(features, source, valid, sample, product_dtype(device), longest_k)
    live = torch.arange(longest_k, device=device)[None, :] < counts[:, None]
    centres, assign, nearest = _seed(features, source, space, valid, live, sample, generator)
    for _ in range(iterations):
        centres = _cluster_means(features, _row_clusters(source, valid, assign, longest_k), centres)
        nearest, moved = space.nearest(centres, live)
        changed = int(((moved != assign) & valid).sum())
        assign = moved
        if changed <= tolerance * int(valid.sum()):
            break
    own = _own_distances(features, source, valid, space, centres, assign, nearest)
    ordered = _nearest_per_centre(own, assign, valid, live)
    kept = torch.arange(ordered.shape[1], device=device)[None, :] < counts[:, None]
    return source.gather(1, ordered)[kept].cpu()


def _seed_sample(
    valid: torch.Tensor, k: int, generator: np.random.Generator
) -> torch.Tensor | None:
    """Member slots (groups, m) the seeding draws from: m = max(SEED_SAMPLE * k, SEED_FLOOR)
    of each group, uniformly without replacement (a smaller group's all, then padding slots);
    None when that is every slot."""
    width = valid.shape[1]
    size = max(SEED_SAMPLE * k, SEED_FLOOR)
    if size >= width:
        return None
    keys = torch.from_numpy(generator.random(valid.shape)).to(valid.device)
    return keys.masked_fill_(~valid, -1.0).topk(size, dim=1).indices


def _seed(
    features: torch.Tensor,
    source: torch.Tensor,
    space: CentreProducts,
    valid: torch.Tensor,
    live: torch.Tensor,
    sample: torch.Tensor | None,
    generator: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k-means++ seeds drawn from the sample in rounds of 1, 1, 2, 4, ... centres; each
    member's nearest seed and its squared distance to it.

    A round draws its centres at once, without replacement, each sampled member with
    probability proportional to its squared distance to the nearest centre so far (Gumbel
    top-m on the log weights): a handful of passes over the sample (a pass costs about the same
    for 1 or 32 centres) instead of k, or none when the sample's pairwise distances fit in one
    product. Seeding on a sample of a few times k members (as scikit-learn's MiniBatchKMeans
    does) leaves the seeds about as good and the passes small; one product with all members
    then assigns them.
    """
    k = live.shape[1]
    seeds_from, seeds_valid = source, valid
    seed_space = space
    if sample is not None:
        seeds_from, seeds_valid = source.gather(1, sample), valid.gather(1, sample)
        seed_space = space.subset(sample)
    n_groups, width = seeds_valid.shape
    device = features.device
    rounds, total = [], 0
    while total < k:
        rounds.append(min(max(total, 1), k - total))
        total += rounds[-1]
    noise = torch.from_numpy(generator.random((len(rounds), n_groups, width))).to(device)
    gumbel = -torch.log(-torch.log(noise.float().clamp_(min=1e-12)))
    gumbel.masked_fill_(~seeds_valid, float("-inf"))  # padding is never drawn
    dead = ~live
    chosen = torch.empty(n_groups, k, dtype=torch.long, device=device)
    nearest = seeds_valid.float()  # uniform weights for the first draw
    assign = torch.zeros(n_groups, width, dtype=torch.long, device=device)
    pairwise = seed_space.pairwise() if n_groups * width * width <= PAIRWISE_LIMIT else None
    start = 0
    for draw, size in enumerate(rounds):
        keys = nearest.log().nan_to_num_(neginf=-1e30).add_(gumbel[draw])
        picks = keys.topk(size, dim=1).indices
        chosen[:, start : start + size] = picks
        drawn_dead = dead[:, start : start + size]
        if pairwise is None:
            found, closest = seed_space.nearest_members(picks, drawn_dead, sample is None)
        else:
            found, closest = _nearest_drawn(pairwise, picks, drawn_dead, sample is None)
        found.clamp_(min=0)
        if closest is None:  # the sample's weights only: every member is assigned below
            nearest = torch.minimum(nearest, found) if draw else found
        else:
            closer = found < nearest if draw else torch.ones_like(seeds_valid)
            nearest = torch.where(closer, found, nearest)
            assign = torch.where(closer, closest + start, assign)
        start += size
    drawn = seeds_from.gather(1, chosen).flatten()
    centres = features.index_select(0, drawn).view(n_groups, k, -1)
    if sample is not None:
        nearest, assign = space.nearest(centres, live)
    return centres, assign, nearest


def _nearest_drawn(
    pairwise: torch.Tensor, picks: torch.Tensor, dead: torch.Tensor, index: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`CentreProducts.nearest_members` read off the pairwise distances: their rows for the
    picked members, a centre beyond the quota never nearest."""
    n_groups, width, _ = pairwise.shape
    flat = picks + torch.arange(n_groups, device=picks.device)[:, None] * width
    rows = pairwise.view(-1, width).index_select(0, flat.flatten()).view(n_groups, -1, width)
    rows.masked_fill_(dead[..., None], DEAD_CENTRE)
    found, nearest = rows.min(1) if index else (rows.amin(1), None)
    return found.float(), nearest


def _own_distances(
    features: torch.Tensor,
    source: torch.Tensor,
    valid: torch.Tensor,
    space: CentreProducts,
    centres: torch.Tensor,
    assign: torch.Tensor,
    nearest: torch.Tensor,
) -> torch.Tensor:
    """Each member's squared distance to its own centre, exact (float32) for every member that
    may be its cluster's nearest given the product's rounding, the product's for the rest."""
    n_groups, k, _ = centres.shape
    bound = space.rounding_bound(centres, assign, nearest)
    flat, spare = _cluster_ids(assign, valid, k), n_groups * k
    best = torch.full((spare + 1,), float("inf"), device=assign.device)
    best.scatter_reduce_(0, flat.flatten(), (nearest + bound).flatten(), "amin")
    doubtful = valid & (nearest - bound <= best[flat])
    exact = features.index_select(0, source[doubtful])
    exact -= centres.flatten(0, 1).index_select(0, flat[doubtful])
    own = nearest.clone()
    own[doubtful] = torch.linalg.vector_norm(exact, dim=1).square_()
    return own


def _cluster_means(
    features: torch.Tensor, row_cluster: torch.Tensor, centres: torch.Tensor
) -> torch.Tensor:
    """Each centre moved to the mean of its members (a centre without members stays put)."""
    n_groups, k, dim = centres.shape
    sums = torch.zeros(n_groups * k, dim, device=centres.device)
    sums.index_add_(0, row_cluster, features)
    sizes = torch.bincount(row_cluster, minlength=n_groups * k)
    means = sums.view(n_groups, k, dim).div_(sizes.view(n_groups, k, 1))
    empty = sizes.view(n_groups, k) == 0
    means[empty] = centres[empty]
    return means


def _cluster_ids(assign: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Every member slot's cluster, numbered group * k + centre; padding slots get the spare
    number groups * k."""
    ids = assign + torch.arange(len(assign), device=assign.device)[:, None] * k
    return ids.masked_fill_(~valid, len(assign) * k)


def _row_clusters(
    source: torch.Tensor, valid: torch.Tensor, assign: torch.Tensor, k: int
) -> torch.Tensor:
    """The cluster of every candidate row, numbered group * k + centre."""
    flat = _cluster_ids(assign, valid, k)
    row_cluster = torch.empty(int(valid.sum()), dtype=torch.long, device=assign.device)
    row_cluster[source[valid]] = flat[valid]
    return row_cluster


def _nearest_per_centre(
    own: torch.Tensor, assign: torch.Tensor, valid: torch.Tensor, live: torch.Tensor
) -> torch.Tensor:
    """Member slots of each group in the order kept: the member nearest each centre among its
    own cluster (`own`: distance to its centre; ties to the lower slot), in centre order.

    When a centre within the quota has no member, its slot goes to the rest, nearest their own
    centre first (`_ranked_fill`); otherwise no sort is needed.
    """
    n_groups, width = own.shape
    k = live.shape[1]
    flat, spare = _cluster_ids(assign, valid, k), n_groups * k
    best = own.new_full((spare + 1,), float("inf"))
    best.scatter_reduce_(0, flat.flatten(), own.flatten(), "amin")
    at_best = valid & (own == best[flat])
    slots = torch.arange(width, device=own.device).expand_as(own)
    first = torch.full((spare + 1,), width, dtype=torch.long, device=own.device)
    first.scatter_reduce_(0, flat[at_best], slots[at_best], "amin")
    first = first[:spare].view(n_groups, k)
    if bool(((first < width) | ~live).all()):
        return first.clamp_(max=width - 1)  # a centre beyond the quota is never kept
    return _ranked_fill(own, assign, valid, k)


def _ranked_fill(
    own: torch.Tensor, assign: torch.Tensor, valid: torch.Tensor, k: int
) -> torch.Tensor:
    """Member slots of each group in the order kept: the member nearest each centre among its
    own cluster, in centre order, then the rest, nearest their own centre first."""
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
