"""rainbow-runner: a config-driven runner for continual-learning experiments.

Installed as the one namespace `rainbow_runner` (its subpackages are the repository's top-level
folders: runner, methods, memory, datasets, conf), so it lives beside any other package.
"""

from __future__ import annotations

__version__ = "0.2.0"
