"""Reusing finished benchmark runs: only when they ran exactly the overrides asked for now."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf


def finished_run(run_dir: Path, overrides: list[str]) -> bool:
    """Whether run_dir holds a complete run of these overrides (hydra.* ones aside)."""
    summary_path = Path(run_dir) / "results" / "summary.csv"
    overrides_path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not summary_path.exists() or not overrides_path.exists():
        return False
    asked = [o for o in overrides if not o.startswith("hydra.")]
    if list(OmegaConf.load(overrides_path)) != asked:
        return False
    return pd.read_csv(summary_path).status.iloc[0] == "complete"
