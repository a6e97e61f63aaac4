"""experiment.sh: the commands it prints, and a real 2 modes x 2 seeds joblib grid plus the joint
branch on digits, ending in a report whose numbers are the per-run ones."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO

TINY_GRID = {"SEEDS": "1,2", "MEM_SIZE": "50", "EXTRA": "n_epoch=1 n_tasks=2"}
VARIABLES = (
    "MODE JOINT MEM_MANAGE DATASET STREAM EXP MEM_SIZE TRANS SEEDS EXPERIMENT LAUNCHER N_JOBS"
)


def experiment(tmp_path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """`VAR=... bash experiment.sh args` with its output under tmp_path."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES.split() + ["EXTRA"]}
    env |= {"PYTHON": sys.executable, "OUT": str(tmp_path / "exp"), **variables}
    return subprocess.run(
        ["bash", str(REPO / "experiment.sh"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_dry_run_prints_every_branch_and_runs_nothing(tmp_path):
    result = experiment(
        tmp_path,
        "--dry-run",
        MODE="er nosuch finetune",
        TRANS="cutmix autoaug",
        **(TINY_GRID | {"MEM_SIZE": "200,500"}),
    )
    assert result.returncode == 0, result.stderr
    assert "skip mode=nosuch: conf/mode/nosuch.yaml does not exist" in result.stderr
    grid, joint, report = result.stdout.strip().splitlines()
    assert "-m runner --multirun mode=er,finetune mem_manage=default" in grid
    assert "mem_size=200,500" in grid and "'trans=[cutmix,autoaug]'" in grid
    assert "hydra/launcher=joblib hydra.launcher.n_jobs=2" in grid and "n_epoch=1" in grid
    assert f"hydra.sweep.dir={tmp_path}/exp/grid" in grid
    assert "mode=joint stream=offline mem_size=0" in joint and "seed=1,2" in joint
    assert report.endswith(f"-m runner.report {tmp_path}/exp")
    assert not (tmp_path / "exp").exists()


def test_dry_run_slurm_and_a_preset(tmp_path):
    result = experiment(
        tmp_path,
        "-n",
        MODE="er",
        JOINT="false",
        LAUNCHER="slurm",
        EXPERIMENT="mnist_blurry10_online",
        DATASET="",
        EXP="",
        STREAM="",
    )
    assert result.returncode == 0, result.stderr
    (grid, _report) = result.stdout.strip().splitlines()
    assert "experiment=mnist_blurry10_online" in grid and "hydra/launcher=slurm" in grid
    assert "dataset=" not in grid and "n_jobs" not in grid and "'seed=range(1,4)'" in grid


@pytest.mark.slow
def test_grid_and_joint_branch_write_distinct_runs_and_the_report(tmp_path):
    result = experiment(tmp_path, MODE="finetune er nosuch", **TINY_GRID)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skip mode=nosuch" in result.stderr
    out = tmp_path / "exp"
    grid_runs = sorted(p for p in (out / "grid").iterdir() if (p / ".hydra").is_dir())
    joint_runs = sorted(p for p in (out / "joint").iterdir() if (p / ".hydra").is_dir())
    assert len(grid_runs) == 4 and len(joint_runs) == 2
    assert [p.name.split("_")[0] for p in grid_runs] == ["0", "1", "2", "3"]  # job numbers
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    summaries = []
    for run in grid_runs + joint_runs:
        assert (run / ".hydra" / "config.yaml").exists()
        info = json.loads((run / "run_info.json").read_text())
        assert info["packages"]["torch"] and "git_revision" in info
        assert f"torch threads: {threads}" in (run / "run.log").read_text()
        summaries.append(pd.read_csv(run / "results" / "summary.csv"))
    runs = pd.concat(summaries)
    assert (runs.status == "complete").all()
    assert sorted(runs["mode"]) == ["er", "er", "finetune", "finetune", "joint", "joint"]
    joint = runs[runs["mode"] == "joint"].set_index("split_seed")["A_last"]

    report = pd.read_csv(out / "report.csv").set_index("mode")
    for mode, of_mode in runs.groupby("mode"):
        row = report.loc[mode]
        assert row.n_seeds == 2 and row.n_incomplete == 0
        for metric in ("A_last", "A_avg", "F_last"):
            assert row[f"{metric}_mean"] == pytest.approx(of_mode[metric].mean())
            assert row[f"{metric}_std"] == pytest.approx(of_mode[metric].std())
        intransigence = joint.loc[of_mode.split_seed].to_numpy() - of_mode.A_last.to_numpy()
        assert row.I_last_mean == pytest.approx(intransigence.mean())
    assert "| er | reservoir | digits | online | blurry10 | 50 |" in result.stdout
    assert (out / "grid" / "report.md").exists()  # the multirun callback's own report
    assert (out / "accuracy_curves.png").exists()
