"""A 2-job sweep through submitit's local executor and through a local Ray instance.

Ray lives in its own virtual environment (hydra-ray-launcher pins cloudpickle<3, which the main
install's joblib refuses): RAINBOW_RAY_PYTHON, else .venv-ray/bin/python (docs/sweeps.md).
"""

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, run_cli

TINY_SWEEP = [
    "mode=finetune",
    "seed=1,2",
    "n_epoch=1",
    "n_tasks=2",
    "mem_size=50",
    "progress=false",
]


def assert_two_complete_runs(sweep_dir: Path) -> None:
    runs = sorted(p for p in sweep_dir.iterdir() if (p / "results" / "summary.csv").exists())
    assert [p.name.split("_")[0] for p in runs] == ["0", "1"]
    summaries = pd.concat(pd.read_csv(p / "results" / "summary.csv") for p in runs)
    assert list(summaries.seed) == [1, 2] and (summaries.status == "complete").all()
    assert summaries.A_last.between(10, 100).all()
    report = pd.read_csv(sweep_dir / "report.csv")  # written by the multirun callback
    assert report.n_seeds.tolist() == [2]
    assert report.A_last_mean[0] == pytest.approx(summaries.A_last.mean())


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep_over_a_seed_range(tmp_path):
    overrides = [o for o in TINY_SWEEP if not o.startswith("seed=")]
    result = run_cli(
        ["--multirun", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"]
        + ["seed=range(1,3)", "split_seed=5", *overrides, f"hydra.sweep.dir={tmp_path}"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_two_complete_runs(tmp_path)
    assert (tmp_path / ".submitit").is_dir()
    first = next(tmp_path.glob("0_*"))
    assert pd.read_csv(first / "results" / "summary.csv").split_seed[0] == 5  # apart from seed
    assert "torch threads: 1" in (first / "run.log").read_text()  # from cpus_per_task


def ray_python() -> Path | None:
    """The interpreter of the Ray environment, if one was set up."""
    path = Path(os.environ.get("RAINBOW_RAY_PYTHON", REPO / ".venv-ray" / "bin" / "python"))
    return path if path.exists() else None


@pytest.mark.slow
@pytest.mark.skipif(
    ray_python() is None,
    reason="no Ray environment: create .venv-ray (docs/sweeps.md) or set RAINBOW_RAY_PYTHON",
)
def test_local_ray_instance_runs_a_two_job_sweep(tmp_path):
    command = [
        str(ray_python()),
        "-m",
        "runner",
        "--multirun",
        "hydra/launcher=ray",
        "hydra.launcher.ray.init.num_cpus=2",
        "hydra.launcher.ray.init.include_dashboard=false",
        "hydra.launcher.ray.init.object_store_memory=78643200",
        *TINY_SWEEP,
        f"hydra.sweep.dir={tmp_path}",
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    # The sweep process starts the Ray instance and stops it when it exits; its own session
    # lets the test stop everything it left behind, even after a timeout.
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=400)
    finally:
        try:
            os.killpg(process.pid, 9)
        except ProcessLookupError:
            pass
    assert process.returncode == 0, output[-3000:]
    assert "Initializing ray" in output
    assert_two_complete_runs(tmp_path)
