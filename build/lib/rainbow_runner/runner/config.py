"""Where conf/ lives, its resolvers, and the config a command line composes, without a run."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

# conf/ sits beside runner/ in the repository and inside the installed rainbow_runner package.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"

if not OmegaConf.has_resolver("mul"):
    OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b))


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `rainbow-runner <overrides>` would run with (tests, benchmarks, notebooks)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
