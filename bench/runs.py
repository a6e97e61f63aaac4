"""Reusing finished benchmark runs: only when they ran exactly the overrides asked for now."""

from __future__ import annotations

import json
import resource
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
    """A run's summary row with its wall and CPU seconds: the finished run of these overrides on
    disk, else a child `python -m runner` (replace: with overwrite=true, for a bench that owns its
    unfinished directories); None, after printing the child's error, when it failed."""
    summary_path = run_dir / "results" / "summary.csv"
    wall_path = run_dir / "bench_wall.json"
    if wall_path.exists() and not rerun and finished_run(run_dir, overrides):
        row = pd.read_csv(summary_path).iloc[0].to_dict()
        return {**row, **json.loads(wall_path.read_text())}
    command = [sys.executable, "-m", "runner", *overrides, f"hydra.run.dir={run_dir}"]
    started, cpu_before = time.perf_counter(), _children_cpu_s()
    if replace:
        command.append("overwrite=true")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    timing = {"wall_s": time.perf_counter() - started, "cpu_s": _children_cpu_s() - cpu_before}
    if result.returncode != 0 or not summary_path.exists():
        print(f"{name} failed ({result.returncode}):\n{result.stderr[-1500:]}", file=sys.stderr)
        return None
    wall_path.write_text(json.dumps(timing))
    return {**pd.read_csv(summary_path).iloc[0].to_dict(), **timing}


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes: a run's own cost, which a
    shared machine does not inflate as it does wall time (exact when runs go one at a time)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
