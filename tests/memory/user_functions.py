"""A user's selection strategy and grouping, named by import path in the memory tests."""

from __future__ import annotations

import torch

CALLS: list[int] = []


def pick_first(features, labels, task_ids, quota, generator):
    """The first candidate of each group (records that it was called)."""
    CALLS.append(len(labels))
    groups = quota.group_of(len(labels))
    first = torch.tensor([int(torch.nonzero(groups == g)[0]) for g in range(quota.n_groups)])
    return first[quota.counts > 0]


pick_first.needs_features = False


def parity(indices, labels, task_ids):
    """Groups by even and odd labels."""
    return labels % 2
