"""CL methods, registered by the names users type as mode=..."""

from rainbow_runner.methods import (  # noqa: F401  (registration)
    agem,
    ar1,
    bic,
    cope,
    cwr_star,
    der,
    er,
    ewc,
    finetune,
    gdumb,
    icarl,
    joint,
    lamaml,
    mir,
    rar,
    rm,
    rwalk,
    scr,
    slda,
)
from rainbow_runner.methods.base import METHODS, Method, MethodContext, TrainBatch
from rainbow_runner.methods.functional import mixed_cross_entropy

__all__ = ["METHODS", "Method", "MethodContext", "TrainBatch", "mixed_cross_entropy"]
