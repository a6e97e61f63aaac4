"""mem_manage=random: a uniformly random subset of memory plus the incoming samples."""

from __future__ import annotations

from rainbow_runner.memory.base import MEMORIES
from rainbow_runner.memory.parametric import ParametricMemory


@MEMORIES.register("random")
class RandomMemory(ParametricMemory):
    """Keeps a random subset of (memory + incoming batch); class-balanced on request.

    The preset intake=stream, groupby=none (class when class_balanced), select=random, fill.
    """

    def __init__(self, capacity: int, seed: int, class_balanced: bool = False) -> None:
        groupby = "class" if class_balanced else "none"
        super().__init__(capacity, seed, groupby=groupby, select="random", intake="stream")
        self.class_balanced = class_balanced
