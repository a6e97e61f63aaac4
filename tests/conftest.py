"""Shared helpers: compose the real conf/ and run jobs in-process or as a CLI subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the command line sets it before torch

import pytest  # noqa: E402
import torch  # noqa: E402

from rainbow_runner.runner.config import CONFIG_DIR, compose_config  # noqa: E402,F401

REPO = Path(__file__).resolve().parent.parent
CONF = CONFIG_DIR
TINY = ["n_epoch=1", "mem_size=100", "progress=false", "log_every=10"]


def run_in_process(run_dir: Path, overrides: list[str]) -> dict:
    """One job through runner.app.run, without a subprocess (fast)."""
    from rainbow_runner.runner.app import run

    return run(compose_config(overrides), Path(run_dir))


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m runner args...` as a user types it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def tiny() -> list[str]:
    return list(TINY)


@pytest.fixture(autouse=True)
def _threads_and_environment_restored():
    """An in-process run with num_threads=N sets torch's thread count for the whole process,
    and code under test may set variables (OMP_NUM_THREADS) that CLI runs would inherit; later
    in-process reference runs and CLI runs must not (their floats would differ)."""
    threads, environment = torch.get_num_threads(), dict(os.environ)
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if dict(os.environ) != environment:
        os.environ.clear()
        os.environ.update(environment)


def record_learning_rates(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, float]]:
    """(task, task epoch, lr) of every training step of the runs that follow, in order."""
    from rainbow_runner.runner.steps import StepRunner
    from rainbow_runner.runner.trainer import Trainer

    rates: list[tuple[int, int, float]] = []
    original_step, original_run = StepRunner.train_step, Trainer.run
    trainers: list[Trainer] = []

    def recording_run(self):
        trainers.append(self)
        return original_run(self)

    def recording_step(self, batch):
        trainer = trainers[-1]
        rates.append((trainer.task_id, trainer.task_epoch, trainer.optimizer.param_groups[0]["lr"]))
        return original_step(self, batch)

    monkeypatch.setattr(Trainer, "run", recording_run)
    monkeypatch.setattr(StepRunner, "train_step", recording_step)
    return rates
