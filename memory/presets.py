"""The named presets of the composed memory (memory/parametric.py) that have no file of their
own: Avalanche's class- and experience-balanced buffers, GEM's ring buffer, and the
feature-based choices of iCaRL and Continuum."""

from __future__ import annotations

from rainbow_runner.memory.base import MEMORIES
from rainbow_runner.memory.parametric import ParametricMemory


@MEMORIES.register("class_balanced")
class ClassBalancedMemory(ParametricMemory):
    """intake=stream, groupby=class, select=reservoir: an equal share per class, each class a
    uniform sample of its own stream."""

    def __init__(
        self, capacity: int, seed: int, fixed: bool = False, n_classes: int = 0, n_tasks: int = 0
    ) -> None:
        super().__init__(capacity, seed, "class", "reservoir", "stream", fixed, True, "", n_classes)


@MEMORIES.register("experience_balanced")
class ExperienceBalancedMemory(ParametricMemory):
    """intake=stream, groupby=experience, select=reservoir: an equal share per task, each task
    a uniform sample of its own stream."""

    def __init__(
        self, capacity: int, seed: int, fixed: bool = False, n_classes: int = 0, n_tasks: int = 0
    ) -> None:
        super().__init__(
            capacity, seed, "experience", "reservoir", "stream", fixed, True, "", n_classes, n_tasks
        )


@MEMORIES.register("ring")
class RingMemory(ParametricMemory):
    """intake=stream, groupby=experience, select=fifo: each task keeps its newest samples."""

    def __init__(
        self, capacity: int, seed: int, fixed: bool = False, n_classes: int = 0, n_tasks: int = 0
    ) -> None:
        super().__init__(
            capacity, seed, "experience", "fifo", "stream", fixed, True, "", n_classes, n_tasks
        )


class _FeaturePreset(ParametricMemory):
    """intake=task, groupby=class, the preset's strategy on the model's features; per class
    capacity // classes seen (no fill, as iCaRL and Continuum), or capacity // n_classes."""

    strategy_name = ""

    def __init__(
        self,
        capacity: int,
        seed: int,
        fixed: bool = False,
        layer: str = "",
        n_classes: int = 0,
        n_tasks: int = 0,
    ) -> None:
        super().__init__(
            capacity, seed, "class", self.strategy_name, "task", fixed, False, layer, n_classes
        )


@MEMORIES.register("herding")
class HerdingMemory(_FeaturePreset):
    """iCaRL's herding (moving barycenter); `prototype` is the same choice without knobs."""

    strategy_name = "herding"


@MEMORIES.register("closest_to_center")
class ClosestToCenterMemory(_FeaturePreset):
    """The samples nearest their class mean (Continuum's `cluster`, Avalanche's
    ClosestToCenterSelectionStrategy)."""

    strategy_name = "closest_to_center"


@MEMORIES.register("cluster")
class ClusterMemory(_FeaturePreset):
    """k-means in each class with k = its quota; the sample nearest each centre."""

    strategy_name = "cluster"
