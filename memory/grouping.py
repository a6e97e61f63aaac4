"""Groupings and quotas: which group each candidate belongs to, and how many each group keeps.

A grouping is `class`, `experience` (the task a sample came in with), `none`, or a key function
given by import path, `key(indices, labels, task_ids) -> keys` (one integer per candidate).
Quotas are fixed (capacity // total groups of the run, whether seen or not) or flexible (the
capacity shared among the groups seen so far; `fill` lets groups that cannot use their share
hand it to the others), as Continuum's fixed and flexible memories.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.memory.quota import GroupQuota
from rainbow_runner.memory.selection import balanced_quota
from rainbow_runner.memory.strategies import import_object

GROUPINGS = ("class", "experience", "none")
KeyFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_grouping(groupby: str | KeyFunction) -> str | KeyFunction:
    """A built-in grouping's name, or the key function a name or import path stands for."""
    if callable(groupby) or groupby in GROUPINGS:
        return groupby
    if "." not in groupby and ":" not in groupby:
        raise ChoiceError(
            f"unknown mem_manage.groupby '{groupby}'; valid choices are: {', '.join(GROUPINGS)}, "
            "or a key function's import path (package.module:function)."
        )
    return import_object(groupby, "mem_manage.groupby")


def group_keys(
    groupby: str | KeyFunction,
    indices: torch.Tensor,
    labels: torch.Tensor,
    task_ids: torch.Tensor,
) -> torch.Tensor | None:
    """One integer key per candidate (None: no grouping)."""
    if groupby == "none":
        return None
    if groupby == "class":
        return labels
    if groupby == "experience":
        return task_ids
    keys = groupby(indices, labels, task_ids)  # type: ignore[operator]
    keys = torch.as_tensor(np.asarray(keys) if not isinstance(keys, torch.Tensor) else keys)
    if keys.shape != (len(indices),) or keys.is_floating_point():
        raise ValueError(
            f"the groupby key function must return one integer per candidate; got {keys.shape}."
        )
    return keys.long().cpu()


def group_quota(
    keys: torch.Tensor | None,
    n: int,
    capacity: int,
    n_seen: int,
    fixed_share: int | None,
    fill: bool,
) -> GroupQuota:
    """Groups (ascending keys -> 0..G-1) and how many of each to keep.

    fixed_share: a fixed number per group (None: flexible). Flexible with fill: water-filling
    of the capacity over the groups present (counts differ by at most one among groups that
    have enough samples); without fill: capacity // max(n_seen, groups present) per group.
    """
    if keys is None:
        share = capacity if fixed_share is None else fixed_share
        return GroupQuota(None, torch.tensor([min(n, share)]), capacity)
    _, groups = torch.unique(keys, return_inverse=True)
    sizes = torch.bincount(groups).numpy() if len(groups) else np.zeros(0, dtype=np.int64)
    if fixed_share is not None:
        counts = np.minimum(sizes, fixed_share)
    elif fill:
        counts = balanced_quota(sizes, capacity)
    else:
        counts = np.minimum(sizes, capacity // max(n_seen, len(sizes), 1))
    return GroupQuota(groups, torch.from_numpy(np.asarray(counts, dtype=np.int64)), capacity)
