"""Reusing finished benchmark runs: only when they ran exactly the overrides asked for now."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent


# Overrides that place or admit a run but do not change its results.
RUN_CONTROL = ("hydra.", "overwrite=")


def _result_overrides(overrides) -> list[str]:
    return [str(o) for o in overrides if not str(o).startswith(RUN_CONTROL)]


def finished_run(run_dir: Path, overrides: list[str]) -> bool:
    """Whether run_dir holds a complete run of these overrides (run-control ones aside)."""
    summary_path = Path(run_dir) / "results" / "summary.csv"
    overrides_path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not summary_path.exists() or not overrides_path.exists():
        return False
    if _result_overrides(OmegaConf.load(overrides_path)) != _result_overrides(overrides):
        return False
    return pd.read_csv(summary_path).status.iloc[0] == "complete"


def run_or_reuse(
    run_dir: Path, overrides: list[str], name: str, rerun: bool = False, replace: bool = False
) -> dict | None:
    """A run's summary row with its wall seconds: the finished run of these overrides on disk,
    else a child `python -m runner` (replace: with overwrite=true, for a bench that owns its
    unfinished directories); None, after printing the child's error, when it failed."""
    summary_path = run_dir / "results" / "summary.csv"
    wall_path = run_dir / "bench_wall.json"
    if wall_path.exists() and not rerun and finished_run(run_dir, overrides):
        row = pd.read_csv(summary_path).iloc[0].to_dict()
        return {**row, "wall_s": json.loads(wall_path.read_text())["wall_s"]}
    command = [sys.executable, "-m", "runner", *overrides, f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    if replace:
        command.append("overwrite=true")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0 or not summary_path.exists():
        print(f"{name} failed ({result.returncode}):\n{result.stderr[-1500:]}", file=sys.stderr)
        return None
    wall_path.write_text(json.dumps({"wall_s": wall}))
    return {**pd.read_csv(summary_path).iloc[0].to_dict(), "wall_s": wall}
