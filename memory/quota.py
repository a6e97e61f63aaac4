"""What every selection strategy is given besides the candidates: the group of each candidate
and how many of each group to keep; and the layouts the batched strategies share."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


def feature_rows(features: torch.Tensor | None, name: str) -> torch.Tensor:
    """One flat row per candidate, or a clear error for a strategy given no features."""
    if features is None:
        raise ValueError(f"{name} chooses by features; none were given.")
    return features.detach().reshape(len(features), -1)


def padded_layout(groups: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(groups, longest) candidate positions laid out group by group, and which are real."""
    order = torch.argsort(groups, stable=True)
    sizes = torch.bincount(groups, minlength=n_groups)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.arange(int(sizes.max()), device=groups.device)
    valid = slot[None, :] < sizes[:, None]
    source = order[(starts[:, None] + slot[None, :]).clamp(max=len(order) - 1)]
    return source, valid
