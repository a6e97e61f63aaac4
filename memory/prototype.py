"""mem_manage=prototype: iCaRL herding on L2-normalised features, an equal quota per class."""

from __future__ import annotations

from rainbow_runner.memory.base import MEMORIES
from rainbow_runner.memory.parametric import ParametricMemory


@MEMORIES.register("prototype")
class PrototypeMemory(ParametricMemory):
    """Per task, herd capacity // n_exposed exemplars per class from memory ∪ task samples.

    iCaRL's name for the herding preset: intake=task, groupby=class, select=herding, no fill.
    """

    def __init__(self, capacity: int, seed: int) -> None:
        super().__init__(
            capacity, seed, groupby="class", select="herding", intake="task", fill=False
        )
