"""rainbow-runner: a config-driven runner for continual-learning experiments."""

import os

# OpenMP threads that spin-wait slow every job down 5-15x when jobs share the CPU (sweeps);
# this must be set before torch starts its thread pool. Users may still override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from omegaconf import OmegaConf  # noqa: E402

if not OmegaConf.has_resolver("mul"):
    OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b))
