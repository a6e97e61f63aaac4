"""iCaRL's herding (moving barycenter), batched: per group, each step takes the sample that
brings the mean of the chosen (L2-normalised) features closest to the group's mean."""

from __future__ import annotations

import torch
from torch.nn import functional as F

# Herding works on (groups, samples, features) blocks of at most this many elements: about the
# size of a core's L2 cache, so a large class is herded alone and its pass stays close to it.
_BLOCK_ELEMENTS = 1 << 19
# How many of the top scores a pass's guess at the following pick is drawn from.
_SHORTLIST = 64
# Guessing pays when at least this share of guesses is right (judged after _PROBES of them).
_WORTH_GUESSING, _PROBES = 0.7, 16


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
    """One group on the CPU: the same choice as _herd_block, up to two steps per pass.

    The scores s_i = x_i . (k mean - sum of the chosen) are kept up to date (a pick p adds
    X @ (mean - x_p)); a pass over the features is what a step costs, and one product with two
    update directions costs about the same as one. So a pass can take the exact next pick and
    a guess at the one after (the best of the top `_SHORTLIST` scores once the first pick's
    update is applied to them); the guess is kept only if it is the argmax of the updated
    scores, the pick the next step would make anyway. Guessing costs a little more than a plain
    step, so a group whose first `_PROBES` guesses are mostly wrong takes plain steps.
    """
    n = len(features)
    score = torch.mv(features, mean)
    picks: list[int] = []
    guesses = hits = 0
    while len(picks) < steps:
        first = int(score.argmax())
        picks.append(first)
        if len(picks) == steps:
            break
        towards_first = mean - features[first]
        if guesses >= _PROBES and hits < _WORTH_GUESSING * guesses:
            score.addmv_(features, towards_first)
            score[first] = float("-inf")
            continue
        short = torch.topk(score, min(_SHORTLIST, n - len(picks) + 1), sorted=False).indices
        ahead = torch.addmv(score[short], features.index_select(0, short), towards_first)
        ahead[short == first] = float("-inf")
        guess = int(short[int(ahead.argmax())])
        updates = torch.mm(torch.stack([towards_first, mean - features[guess]]), features.t())
        score += updates[0]
        score[first] = float("-inf")
        guesses += 1
        if int(score.argmax()) == guess:
            hits += 1
            picks.append(guess)
            score += updates[1]
            score[guess] = float("-inf")
    return torch.tensor(picks, dtype=torch.long)
