"""CL methods, registered by the names users type as mode=..."""

from rainbow_runner.methods import (  # noqa: F401  (registration)
    agem,
    ar1,
    bcl,
    bic,
    clib,
    cope,
    cumulative,
    cwr_star,
    der,
    er,
    er_ace,
    ewc,
    ewcpp,
    expert_gate,
    finetune,
    from_scratch,
    gdumb,
    gem,
    generative_replay,
    gss,
    icarl,
    joint,
    l2p,
    lamaml,
    lfl,
    lwf,
    mas,
    mer,
    mir,
    pnn,
    rar,
    rm,
    rwalk,
    scr,
    si,
    slda,
)
from rainbow_runner.methods.base import METHODS, Method, MethodContext, TrainBatch
from rainbow_runner.methods.functional import mixed_cross_entropy

__all__ = ["METHODS", "Method", "MethodContext", "TrainBatch", "mixed_cross_entropy"]
