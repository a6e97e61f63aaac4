"""iCaRL's herding (moving barycenter), batched: per group, each step takes the sample that
brings the mean of the chosen (L2-normalised) features closest to the group's mean."""

from __future__ import annotations

import numpy as np
import torch

# Herding works on (groups, samples, features) blocks of at most this many elements: about the
# size of a core's L2 cache, so a large class is herded alone and its pass stays close to it.
_BLOCK_ELEMENTS = 1 << 19
# Guessing (see _herd_one): the sketch's rank and the share of the features' energy it must
# capture to be used, the rows a sketch guess is drawn from, the pool of the other kind of
# guess, and the longest chain of picks per pass.
_RANK, _LOW_RANK = 32, 0.5
_SHORTLIST, _POOL, _CHAIN = 64, 384, 8
# Rows per slice of the transposed copy (_transposed).
_SLICE = 512
# Scores this close (relative) to the best are compared again in float64 (see _best).
_TIE = 1e-4


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
    features = features.detach().float().reshape(len(features), -1)
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
    padded = features.index_select(0, source.flatten()).view(n_groups, longest, -1)
    # A copy: normalised in place, as F.normalize would.
    padded /= torch.linalg.vector_norm(padded, dim=2, keepdim=True).clamp_min_(1e-12)
    if not bool(valid.all()):
        padded *= valid[..., None]
    mean = padded.sum(1) / sizes[:, None]
    if n_groups == 1 and device.type == "cpu":
        return source[0, _herd_one(padded[0], mean[0], int(quotas[0]))]
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


def _herd_one(features: torch.Tensor, mean: torch.Tensor, steps: int) -> torch.Tensor:
    """One group on the CPU: the same choice as _herd_block, several steps per pass.

    The scores s_i = x_i . (k mean - sum of the chosen) are kept up to date (a pick p adds
    X @ (mean - x_p)); a pass over the features is what a step costs, and one product with a
    few update directions costs about the same as one. So a pass takes the exact next pick and
    a chain of guesses at the ones after it, and applies their updates in turn: a guess is kept
    only if it is the argmax of the updated scores, the pick the next step would make anyway,
    and the chain stops at the first wrong one (_follow). It grows while its guesses are right.

    Guesses come from the best exact scores, once the chain's updates are applied, among rows
    a cheap prediction ranks high. Features with a few dominant directions (a trained layer's)
    are predicted through a rank-`_RANK` sketch (_SketchGuesses: a pick's update moves every
    score, so the rows worth scoring change from step to step); others (the sketch captures
    under `_LOW_RANK` of their energy) from the `_POOL` best scores of the pass, updated exactly
    (_PoolGuesses). The product is with a transposed copy of the features: on one CPU thread,
    up to about `_CHAIN` directions then cost one pass (on the features as they are, three).
    Small per-step work runs on numpy views of the same memory (a numpy call costs a few
    hundred nanoseconds, a torch call several microseconds).
    """
    n = len(features)
    columns = _transposed(features)
    score = torch.mv(features, mean)
    basis, captured = _sketch_basis(features)
    if captured >= _LOW_RANK:
        guesses = _SketchGuesses(features, columns, mean, score, basis)
    else:
        guesses = _PoolGuesses(features, mean)
    values, rows = score.numpy(), features.numpy()
    target = mean.numpy().astype(np.float64)  # the next step's (k + 1) mean - sum of the chosen
    step = target.copy()
    picks: list[int] = []
    depth = 2
    pick = _best(values, rows, target)
    while True:
        picks.append(pick)
        values[pick] = -np.inf
        target += step - rows[pick]
        if len(picks) == steps:
            return torch.tensor(picks, dtype=torch.long)
        depth = min(depth, steps - len(picks), n - len(picks))
        chain = guesses(values, pick, depth)
        updates = torch.mm(torch.sub(mean, features[chain]), columns).numpy()
        hits, pick = _follow(values, updates, chain, rows, target, step)
        picks += chain[1 : hits + 1]
        depth = min(_CHAIN, 2 * depth) if hits == len(chain) - 1 else max(2, hits + 2)


def _follow(
    values: np.ndarray,
    updates: np.ndarray,
    chain: list[int],
    rows: np.ndarray,
    target: np.ndarray,
    step: np.ndarray,
) -> tuple[int, int]:
    """How many guesses of the chain the exact steps confirm, and the pick after them; the
    scores (`values`) and the float64 target then stand for the step of that pick.

    Step j applies update j to the scores (the updates' rows are reused for them) and is right
    if its best is chain[j + 1]."""
    scores = np.add(updates[0], values, out=updates[0])
    hits = 0
    while True:
        pick = _best(scores, rows, target)
        if hits + 1 == len(chain) or pick != chain[hits + 1]:
            values[:] = scores
            return hits, pick
        hits += 1
        scores[pick] = -np.inf
        target += step - rows[pick]
        scores = np.add(scores, updates[hits], out=updates[hits])


def _best(values: np.ndarray, rows: np.ndarray, target: np.ndarray) -> int:
    """The argmax of the scores, ties to the lowest position: the float32 scores, kept up to
    date step by step, may round copies of one row apart, so rows within `_TIE` of the best
    are scored again from the float64 target (copies then tie exactly)."""
    first = int(values.argmax())
    best = float(values[first])
    close = np.flatnonzero(values >= best - _TIE * (1 + abs(best)))
    if len(close) == 1:
        return first
    exact = (rows[close].astype(np.float64) * target).sum(1)
    return int(close[int(exact.argmax())])


class _PoolGuesses:
    """Guesses from the `_POOL` best scores of the pass, updated exactly for the chain so far
    (see _herd_one)."""

    def __init__(self, features: torch.Tensor, mean: torch.Tensor) -> None:
        self.features, self.rows, self.mean_row = features, features.numpy(), mean.numpy()
        self.direction = torch.empty_like(mean)
        self.direction_values = self.direction.numpy()

    def __call__(self, values: np.ndarray, first: int, depth: int) -> list[int]:
        """`first`, then up to depth - 1 guesses: the best of the pool's updated scores."""
        chain = [first]
        size = min(_POOL, len(values))
        pool = np.argpartition(values, -size)[-size:]
        rows = self.features.index_select(0, torch.from_numpy(pool))
        pool_scores = torch.from_numpy(values[pool])
        pool_values = pool_scores.numpy()
        while len(chain) < depth:
            np.subtract(self.mean_row, self.rows[chain[-1]], out=self.direction_values)
            pool_scores.addmv_(rows, self.direction)
            best = int(pool_values.argmax())
            if pool_values[best] == -np.inf:
                break
            chain.append(int(pool[best]))
            pool_values[best] = -np.inf
        return chain


class _SketchGuesses:
    """Guesses through a rank-`_RANK` sketch of the features: each the best exact score among
    the `_SHORTLIST` rows with the best predicted scores (the chain's updates reach the
    predictions through the sketch; see _herd_one)."""

    def __init__(
        self,
        features: torch.Tensor,
        columns: torch.Tensor,
        mean: torch.Tensor,
        score: torch.Tensor,
        basis: torch.Tensor,
    ) -> None:
        self.rows, self.mean_row = features.numpy(), mean.numpy()
        # (rank + 1, n): the features in the sketch, then their x_i . mean; products with its
        # transpose cost half those with an (n, rank + 1) copy.
        sketch = torch.cat([basis.t() @ columns, score[None]])
        self.sketch_columns = sketch.t()
        self.sketch_rows = sketch[:_RANK].t().contiguous().numpy()  # a row's sketch, to read
        self.direction = torch.ones(_RANK + 1)
        self.direction_values = self.direction.numpy()

    def __call__(self, values: np.ndarray, first: int, depth: int) -> list[int]:
        """`first`, then up to depth - 1 guesses (depth <= 1 + the unchosen rows, so a
        shortlist always holds an unchosen row)."""
        chain = [first]
        predicted = values.copy()
        predicted_scores = torch.from_numpy(predicted)
        target = np.zeros(self.rows.shape[1], dtype=np.float32)  # len(chain) mean - its sum
        size = min(_SHORTLIST, len(values))
        while len(chain) < depth:
            last = chain[-1]
            np.negative(self.sketch_rows[last], out=self.direction_values[:_RANK])
            predicted_scores.addmv_(self.sketch_columns, self.direction)
            target += self.mean_row
            target -= self.rows[last]
            rows = np.argpartition(predicted, -size)[-size:]
            exact = values[rows] + self.rows[rows] @ target
            guess = int(rows[int(exact.argmax())])
            chain.append(guess)
            predicted[guess] = -np.inf
        return chain


def _transposed(features: torch.Tensor) -> torch.Tensor:
    """A (dim, n) copy of the rows, made in slices that stay in cache (a plain
    .t().contiguous() of a class's features takes about 1.6 times as long)."""
    columns = features.new_empty(features.shape[1], len(features))
    for start in range(0, len(features), _SLICE):
        columns[:, start : start + _SLICE] = features[start : start + _SLICE].t()
    return columns


def _sketch_basis(features: torch.Tensor) -> tuple[torch.Tensor, float]:
    """An orthonormal (dim, _RANK) basis of the features' dominant directions, and the share
    of their energy it captures: a randomised range finder on about 1,000 of the rows, with a
    fixed seed (the choice never depends on the basis, only how often guesses are right)."""
    dim = features.shape[1]
    if dim <= _RANK:
        return torch.eye(dim, _RANK), 1.0
    sample = features[:: max(1, len(features) // 1024)]
    probe = torch.randn(_RANK, dim, generator=torch.Generator().manual_seed(0))
    basis = torch.linalg.qr(((probe @ sample.t()) @ sample).t())[0]
    energy = float(sample.square().sum())
    return basis, float((sample @ basis).square().sum()) / energy if energy > 0 else 1.0
