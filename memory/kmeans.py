"""The `cluster` strategy: k-means in each group with k = the group's quota, keeping the member
nearest each centre. All groups run together on one padded (groups, members, dim) tensor;
each assignment is one batched product ||c||^2 - 2 x.c (every distance up to the member's
||x||^2) into one reused buffer and one min over it, in bfloat16 where the hardware multiplies
it natively. The member kept for a centre is the nearest in float32: only the members the
product's rounding leaves in doubt are measured again."""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.memory.quota import GroupQuota, feature_rows, padded_layout

# Feature values per block of rows while the members are centred: half a MB of float32 stays
# in L2 through the block's passes (one padded float32 copy instead costs ~3x as long).
ROW_BLOCK = 128 * 1024
# Row width (features, then the two columns that add ||c||^2) rounded up to a multiple of
# this: aligned rows multiply ~1.4x faster (AMX tiles) than 400 + 2.
PRODUCT_ALIGN = 32
# Norm term of a centre beyond its group's quota: never any member's nearest.
DEAD_CENTRE = 1e30


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
    space = _Products(features, groups, source, quota.n_groups, product_dtype(device), longest_k)
    live = torch.arange(longest_k, device=device)[None, :] < counts[:, None]
    centres, assign, nearest = _seed(features, source, space, valid, live, generator)
    for _ in range(iterations):
        centres = _cluster_means(features, _row_clusters(source, valid, assign, longest_k), centres)
        nearest, moved = space.nearest(centres, live)
        changed = int(((moved != assign) & valid).sum())
        assign = moved
        if changed <= tolerance * int(valid.sum()):
            break
    own = _own_distances(features, source, valid, space, centres, assign, nearest)
    ordered = _nearest_per_centre(own, assign, valid, longest_k)
    kept = torch.arange(valid.shape[1], device=device)[None, :] < counts[:, None]
    return source.gather(1, ordered)[kept].cpu()


def product_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where it is multiplied natively (CUDA, CPUs with AVX512-BF16 or AMX: ~8x faster
    than float32 products), float32 elsewhere (an emulated bfloat16 product is slower)."""
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float32
    native = device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()
    return torch.bfloat16 if native else torch.float32


class _Products:
    """The members, centred on their group's mean (distances do not change, the product's
    rounding shrinks with the norms), as rows [x, 1, 1, 0...] in the product's dtype; their
    float32 ||x||^2; one reused (groups, members, k) product buffer (a fresh block that size
    costs page faults every time)."""

    def __init__(
        self,
        features: torch.Tensor,
        groups: torch.Tensor,
        source: torch.Tensor,
        n_groups: int,
        dtype: torch.dtype,
        k: int,
    ) -> None:
        dim = features.shape[1]
        sums = features.new_zeros(n_groups, dim).index_add_(0, groups, features)
        self.means = sums / torch.bincount(groups, minlength=n_groups).clamp(min=1)[:, None]
        flat = source.flatten()
        width = -(-(dim + 2) // PRODUCT_ALIGN) * PRODUCT_ALIGN
        self.rows = features.new_zeros(len(flat), width, dtype=dtype)
        self.rows[:, dim : dim + 2] = 1
        self.squared = features.new_empty(len(flat))
        step = max(1, ROW_BLOCK // dim)
        for start in range(0, len(flat), step):  # blocks of rows, not single candidates
            block = flat[start : start + step]
            members = features.index_select(0, block).sub_(
                self.means.index_select(0, groups[block])
            )
            torch.linalg.vector_norm(members, dim=1, out=self.squared[start : start + step])
            self.rows[start : start + step, :dim] = members
        self.squared = self.squared.square_().view(source.shape)
        self.rows = self.rows.view(*source.shape, width)
        self.buffer = self.rows.new_empty(source.numel() * k)

    def nearest(
        self, centres: torch.Tensor, live: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's nearest centre (a centre beyond its group's quota never) and float32
        squared distance to it: [x, 1, 1] . [-2c, ||c||^2 rounded, what it rounded off]."""
        n_groups, k, dim = centres.shape
        centred = centres - self.means[:, None]
        norms = centred.square().sum(2).masked_fill_(~live, DEAD_CENTRE)
        side = self.rows.new_zeros(n_groups, k, self.rows.shape[2])
        side[..., :dim] = centred * -2
        side[..., dim] = norms
        side[..., dim + 1] = norms - side[..., dim].float()  # what the dtype rounded off
        out = self.buffer[: self.rows.shape[1] * n_groups * k].view(n_groups, -1, k)
        torch.bmm(self.rows, side.transpose(1, 2), out=out)
        found, index = out.min(2)
        return found.float() + self.squared, index

    def rounding_bound(
        self, centres: torch.Tensor, assign: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        """A bound on the error of each member's `distance` (from `nearest`) to its centre.

        The product's terms (2 x.c, at most 2 |x| |c| by Cauchy-Schwarz, ||c||^2 and the
        result) are each rounded to the dtype (epsilon each, doubled: the output's rounding,
        and a reduction a GPU may split in the dtype) and summed in float32, as are ||x||^2
        and the distance.
        """
        single, dim = torch.finfo(torch.float32).eps, self.means.shape[1]
        precision = 2 * (torch.finfo(self.rows.dtype).eps + dim * single)
        norms = (centres - self.means[:, None]).square().sum(2).gather(1, assign)
        terms = 2 * (self.squared * norms).sqrt() + norms + (distance - self.squared).abs()
        return precision * terms + (2 + dim) * single * (self.squared + distance)


def _seed(
    features: torch.Tensor,
    source: torch.Tensor,
    space: _Products,
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
    n_groups, width = valid.shape
    k = live.shape[1]
    device = features.device
    rounds, total = [], 0
    while total < k:
        rounds.append(min(max(total, 1), k - total))
        total += rounds[-1]
    noise = torch.from_numpy(generator.random((len(rounds), n_groups, width))).to(device)
    gumbel = -torch.log(-torch.log(noise.float().clamp_(min=1e-12)))
    centres = features.new_zeros(n_groups, k, features.shape[1])
    nearest = valid.float()  # uniform weights for the first draw
    assign = torch.zeros(n_groups, width, dtype=torch.long, device=device)
    start = 0
    for draw, size in enumerate(rounds):
        keys = nearest.log().nan_to_num_(neginf=-1e30) + gumbel[draw]
        picks = keys.masked_fill_(~valid, float("-inf")).topk(size, dim=1).indices
        centres[:, start : start + size] = features[source.gather(1, picks)]
        new = centres[:, start : start + size]
        found, closest = space.nearest(new, live[:, start : start + size])
        found.clamp_(min=0)
        closer = found < nearest if draw else torch.ones_like(valid)
        nearest = torch.where(closer, found, nearest)
        assign = torch.where(closer, closest + start, assign)
        start += size
    return centres, assign, nearest


def _row_clusters(
    source: torch.Tensor, valid: torch.Tensor, assign: torch.Tensor, k: int
) -> torch.Tensor:
    """The cluster of every candidate row, numbered group * k + centre."""
    flat = assign + torch.arange(len(assign), device=assign.device)[:, None] * k
    row_cluster = torch.empty(int(valid.sum()), dtype=torch.long, device=assign.device)
    row_cluster[source[valid]] = flat[valid]
    return row_cluster


def _own_distances(
    features: torch.Tensor,
    source: torch.Tensor,
    valid: torch.Tensor,
    space: _Products,
    centres: torch.Tensor,
    assign: torch.Tensor,
    nearest: torch.Tensor,
) -> torch.Tensor:
    """Each member's squared distance to its own centre, exact (float32) for every member that
    may be its cluster's nearest given the product's rounding, the product's for the rest."""
    n_groups, k, _ = centres.shape
    flat = assign + torch.arange(n_groups, device=assign.device)[:, None] * k
    bound = space.rounding_bound(centres, assign, nearest)
    spare = n_groups * k  # where padding goes
    flat = flat.masked_fill(~valid, spare)
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
    sizes = torch.bincount(row_cluster, minlength=n_groups * k).view(n_groups, k, 1)
    means = sums.view(n_groups, k, dim) / sizes.clamp(min=1)
    return torch.where(sizes > 0, means, centres)


def _nearest_per_centre(
    own: torch.Tensor, assign: torch.Tensor, valid: torch.Tensor, k: int
) -> torch.Tensor:
    """Member slots of each group in the order kept: the member nearest each centre among its
    own cluster (`own`: distance to its centre), in centre order, then the rest, nearest their
    own centre first."""
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
