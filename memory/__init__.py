"""Episodic memory managers, registered by the names users type as mem_manage=..."""

from memory import random_memory, reservoir  # noqa: F401  (registration)
from memory.base import MEMORIES, Memory, SelectionContext, balanced_quota

__all__ = ["MEMORIES", "Memory", "SelectionContext", "balanced_quota"]
