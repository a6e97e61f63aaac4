"""CL methods, registered by the names users type as mode=..."""

from rainbow_runner.methods import (  # noqa: F401  (registration)
    bic,
    er,
    ewc,
    finetune,
    gdumb,
    icarl,
    joint,
    rm,
    rwalk,
)
from rainbow_runner.methods.base import METHODS, Method, mixed_cross_entropy

__all__ = ["METHODS", "Method", "mixed_cross_entropy"]
