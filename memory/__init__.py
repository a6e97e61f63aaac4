"""Episodic memory managers, registered by the names users type as mem_manage=...

`RehearsalMemory` (memory/rehearsal.py) is the same library without the runner: tensors in,
tensors out, save and load as .npz.
"""

from rainbow_runner.memory import (  # noqa: F401  (registration)
    clib,
    greedy_balanced,
    gss,
    parametric,
    presets,
    prototype,
    random_memory,
    reservoir,
    uncertainty,
)
from rainbow_runner.memory.base import MEMORIES, Memory, SelectionContext, extract_features
from rainbow_runner.memory.parametric import ParametricMemory
from rainbow_runner.memory.quota import GroupQuota
from rainbow_runner.memory.rehearsal import RehearsalMemory
from rainbow_runner.memory.selection import balanced_quota
from rainbow_runner.memory.strategies import STRATEGIES

__all__ = [
    "MEMORIES",
    "STRATEGIES",
    "GroupQuota",
    "Memory",
    "ParametricMemory",
    "RehearsalMemory",
    "SelectionContext",
    "balanced_quota",
    "extract_features",
]
