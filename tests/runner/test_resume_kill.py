"""`python -m runner` killed by a real SIGKILL, then re-run with resume=true: same CSVs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from rainbow_runner.runner.checkpoint import CHECKPOINT_NAME
from tests.conftest import REPO, run_cli, run_in_process
from tests.runner.test_resume_checkpoint import assert_same_results

ONLINE_ER = ["mode=er", "stream=online", "n_epoch=2", "mem_size=60", "progress=false"]
OFFLINE_ER = ["mode=er", "stream=offline", "exp=disjoint", "n_epoch=2", "mem_size=60"]
OFFLINE_ER += ["progress=false", "checkpoint_every=5"]


def kill_when(args: list[str], run_dir: Path, ready: Callable[[Path], bool]) -> None:
    """Start `python -m runner`, freeze it with SIGSTOP until `ready` holds, then SIGKILL it."""
    with open(run_dir.parent / f"{run_dir.name}.out", "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "runner", *args, f"hydra.run.dir={run_dir}"],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            os.kill(process.pid, signal.SIGSTOP)  # look at its files while it cannot move on
            if ready(run_dir):
                os.kill(process.pid, signal.SIGKILL)
                break
            os.kill(process.pid, signal.SIGCONT)
            time.sleep(0.005)
        process.wait()
    log = (run_dir.parent / f"{run_dir.name}.out").read_text()[-2000:]
    assert process.returncode == -signal.SIGKILL, f"the run was not killed in time:\n{log}"
    assert not (run_dir / "results" / "summary.csv").exists()


def tasks_done(run_dir: Path) -> int:
    path = run_dir / "results" / "tasks.csv"
    return len(pd.read_csv(path)) if path.exists() else 0


def checkpoint_position(run_dir: Path) -> dict | None:
    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    return torch.load(path, weights_only=True)["position"]


def test_run_killed_after_task_2_resumes_to_the_uninterrupted_csvs(tmp_path):
    reference, run_dir = tmp_path / "reference", tmp_path / "killed"
    run_in_process(reference, ONLINE_ER)
    kill_when(ONLINE_ER, run_dir, lambda d: tasks_done(d) >= 2)
    assert 2 <= tasks_done(run_dir) < 5
    result = run_cli([*ONLINE_ER, "resume=true", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in (run_dir / "run.log").read_text()
    assert_same_results(run_dir, reference)


def test_run_killed_inside_a_task_resumes_from_its_step_checkpoint(tmp_path):
    reference, run_dir = tmp_path / "reference", tmp_path / "killed"
    run_in_process(reference, OFFLINE_ER)

    def inside_a_later_task(directory: Path) -> bool:
        position = checkpoint_position(directory)
        return position is not None and position["inside"] and position["task"] >= 1

    kill_when(OFFLINE_ER, run_dir, inside_a_later_task)
    result = run_cli([*OFFLINE_ER, "resume=true", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-2000:]
    resumed_line = [
        line for line in (run_dir / "run.log").read_text().splitlines() if "resuming" in line
    ]
    assert resumed_line and "inside task" in resumed_line[0]
    assert_same_results(run_dir, reference)


def test_a_corrupt_checkpoint_stops_the_cli_with_status_2_naming_the_file(tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"\x00" * 100)
    result = run_cli(["mode=finetune", "n_epoch=1", "resume=true", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 2
    assert str(tmp_path / CHECKPOINT_NAME) in result.stderr and "corrupt" in result.stderr
    assert "Traceback" not in result.stderr


def submitit_job_pids(sweep_dir: Path) -> list[int]:
    """Processes running a submitit job of this sweep (`python -m submitit.core._submit DIR`)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in words and any(str(sweep_dir).encode() in w for w in words):
            pids.append(int(cmdline.parent.name))
    return pids


def test_a_preempted_submitit_job_is_requeued_and_resumes_identically(tmp_path):
    """SIGUSR2 is what Slurm (and submitit_local at its timeout) sends before pre-emption."""
    overrides = ["mode=er", "n_epoch=2", "mem_size=60", "progress=false", "seed=1"]
    reference, sweep_dir = tmp_path / "reference", tmp_path / "sweep"
    run_in_process(reference, overrides)
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"]
    launcher += ["+hydra.launcher.max_num_timeout=2", f"hydra.sweep.dir={sweep_dir}"]
    with open(tmp_path / "sweep.out", "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "runner", "--multirun", *launcher, *overrides],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        deadline, signalled = time.monotonic() + 240, False
        while not signalled and process.poll() is None and time.monotonic() < deadline:
            for pid in submitit_job_pids(sweep_dir):
                try:
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:  # it ended between the /proc scan and now
                    continue
                position = next(
                    (checkpoint_position(d) for d in sweep_dir.glob("*/") if d.name[0].isdigit()),
                    None,
                )
                if position is not None and position["task"] >= 2:
                    os.kill(pid, signal.SIGUSR2)
                    signalled = True
                os.kill(pid, signal.SIGCONT)
            time.sleep(0.005)
        assert process.wait(timeout=240) == 0, (tmp_path / "sweep.out").read_text()[-3000:]
    assert signalled, "the job ended before it could be pre-empted"
    (job_dir,) = [d for d in sweep_dir.glob("*/") if (d / "run.log").exists()]
    assert "submitit requeue: resuming" in (job_dir / "run.log").read_text()
    assert_same_results(job_dir, reference)
