"""mode=joint: every task's data at once, offline (the upper bound for I_last)."""

from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.methods.base import METHODS, Method


@METHODS.register("joint")
class Joint(Method):
    """One task holding all training samples and all classes, trained for n_epoch epochs."""

    uses_memory = False
    offline_only = True

    @classmethod
    def prepare_split(cls, split: TaskSplit) -> TaskSplit:
        return split.as_joint()
