"""Episodic memory managers, registered by the names users type as mem_manage=..."""

from rainbow_runner.memory import (  # noqa: F401  (registration)
    greedy_balanced,
    prototype,
    random_memory,
    reservoir,
    uncertainty,
)
from rainbow_runner.memory.base import MEMORIES, Memory, SelectionContext, extract_features
from rainbow_runner.memory.selection import balanced_quota

__all__ = ["MEMORIES", "Memory", "SelectionContext", "balanced_quota", "extract_features"]
