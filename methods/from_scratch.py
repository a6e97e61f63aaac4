"""mode=from_scratch: a fresh model at every task (Avalanche's FromScratchTraining)."""

from rainbow_runner.methods.base import METHODS, Method
from rainbow_runner.methods.functional import reinitialize


@METHODS.register("from_scratch")
class FromScratch(Method):
    """Before each task after the first, every layer (head included) gets new random weights;
    then plain training on the task's stream, with no replay (a reference for forward
    transfer: what the model reaches on a task without anything learned before)."""

    needs_task_boundaries = True  # re-initialised at each task's start

    uses_memory = False

    def before_task(self, task_id: int) -> None:
        if task_id > 0:  # the first task starts from a fresh model anyway
            reinitialize(self.model)
