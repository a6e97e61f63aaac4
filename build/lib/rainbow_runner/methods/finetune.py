"""mode=finetune: plain training on the stream with no replay (the lower bound)."""

from rainbow_runner.methods.base import METHODS, Method


@METHODS.register("finetune")
class Finetune(Method):
    """Nothing differs from plain training; the memory stays empty."""

    uses_memory = False
