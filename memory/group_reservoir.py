"""select=reservoir: reservoir sampling within each group, for streaming memories.

Re-drawing a random subset of memory ∪ every incoming batch favours recent samples (an old
sample survives each batch with probability quota / (quota + incoming), so the memory decays
towards the latest batches). A reservoir per group keeps every sample a group has seen with
the same probability, quota / samples of the group seen, whatever its place in the stream.
It needs each group's count of samples seen, carried by the memory, so it is not a stateless
strategy: ParametricMemory applies it to streaming intakes with `select=reservoir`.
"""

from __future__ import annotations

import numpy as np


def group_reservoir(
    groups: np.ndarray,
    n_stored: int,
    counts: np.ndarray,
    seen: np.ndarray,
    generator: np.random.Generator,
) -> np.ndarray:
    """Sorted positions of memory ∪ incoming to keep: reservoir sampling in each group.

    Args:
        groups: (N,) group 0..G-1 of each candidate: the n_stored stored ones, then the
            incoming ones in arrival order.
        counts: (G,) how many of each group to keep (its quota; never more than it has).
        seen: (G,) samples of each group seen before this batch.

    A group over its quota (its share shrank as groups arrived) drops stored samples at random;
    a group under its quota takes its incoming samples until full; after that its c-th sample
    replaces a random slot with probability quota / c (Algorithm R), a later sample of the
    batch winning a slot drawn twice.
    """
    n, n_groups = len(groups), len(counts)
    stored_groups = groups[:n_stored]
    kept = np.arange(n_stored)
    if (np.bincount(stored_groups, minlength=n_groups) > counts).any():
        kept = _first_per_group(generator.permutation(n_stored), stored_groups, counts)
    incoming = np.arange(n_stored, n)
    incoming_groups = groups[n_stored:]
    room = counts - np.bincount(groups[kept], minlength=n_groups)
    rank = _rank_in_group(incoming_groups, n_groups)
    fills = rank < room[incoming_groups]
    members = np.concatenate([kept, incoming[fills]])  # every group's slots, in slot order
    contest = incoming[~fills]
    if len(contest) == 0:
        return np.sort(members)
    contest_groups = incoming_groups[~fills]
    number = seen[contest_groups] + rank[~fills] + 1  # its place in its group's stream
    slot = (generator.random(len(contest)) * number).astype(np.int64)
    wins = slot < counts[contest_groups]
    # Slot j of group g is the j-th member of g; a win overwrites it (the latest win counts).
    member_groups = groups[members]
    member_slot = _rank_in_group(member_groups, n_groups)
    width = int(counts.max()) + 1
    table = np.full(n_groups * width, -1, dtype=np.int64)
    table[member_groups * width + member_slot] = members
    won = (contest_groups[wins] * width + slot[wins])[::-1]
    won, last = np.unique(won, return_index=True)  # the latest win of each slot
    table[won] = contest[wins][::-1][last]
    return np.sort(table[table >= 0])


def _rank_in_group(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Each element's 0-based rank among the elements of its group, in order."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.searchsorted(sorted_groups, np.arange(n_groups))
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - starts[sorted_groups]
    return rank


def _first_per_group(order: np.ndarray, groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The first counts[g] positions of each group g in the given order, sorted."""
    in_order = groups[order]
    return np.sort(order[_rank_in_group(in_order, len(counts)) < counts[in_order]])
