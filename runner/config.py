"""Where conf/ lives, and the composed config of a command line without running it."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `python -m runner <overrides>` would run with (tests, benchmarks, notebooks)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
