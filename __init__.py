"""rainbow-runner: a config-driven runner for continual-learning experiments.

Installed as the one namespace `rainbow_runner` (its subpackages are the repository's top-level
folders: runner, methods, memory, datasets, conf), so it lives beside any other package.
"""

from __future__ import annotations

__version__ = "0.2.0"


def run(overrides: list[str] | None = None, run_dir=None) -> dict:
    """One run, as `rainbow-runner <overrides>` (hydra.run.dir=run_dir when given); returns the
    summary row. Imports the runner only when called (runner/api.py)."""
    from rainbow_runner.runner.api import run as run_experiment

    return run_experiment(overrides, run_dir)
