"""One run per directory: the lock, what a second run finds, and what a fresh run replaces."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from rainbow_runner.runner import files
from rainbow_runner.runner import trainer as trainer_module
from rainbow_runner.runner.checkpoint import CHECKPOINT_NAME, save_checkpoint
from rainbow_runner.runner.reporting.results import write_csv_atomically
from rainbow_runner.runner.rundir import LOCK_NAME, DirectoryLock, RunDirectoryError
from tests.conftest import REPO, run_cli, run_in_process
from tests.runner.helpers import assert_unchanged, snapshot
from tests.runner.test_resume_checkpoint import assert_same_results

TINY = ["mode=finetune", "n_epoch=1", "n_tasks=2", "progress=false"]
LONGER = ["mode=er", "n_epoch=2", "mem_size=60", "progress=false"]


def test_a_second_run_in_a_locked_directory_stops_at_once_naming_the_holder(tmp_path):
    lock = DirectoryLock(tmp_path)
    lock.acquire("run directory")
    try:
        result = run_cli([*TINY, f"hydra.run.dir={tmp_path}"])
    finally:
        lock.release()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"is in use by another run (pid {os.getpid()} on host {socket.gethostname()}" in (
        result.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # no .hydra/, no run.log


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_two_runs_started_in_one_directory_leave_the_first_intact(tmp_path):
    reference, run_dir = tmp_path / "reference", tmp_path / "shared"
    run_in_process(reference, LONGER)
    with open(tmp_path / "first.out", "w") as output:
        first = subprocess.Popen(
            [sys.executable, "-m", "runner", *LONGER, f"hydra.run.dir={run_dir}"],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: (run_dir / "run.log").exists() and first.poll() is None)
            os.kill(first.pid, signal.SIGSTOP)  # holds the lock, mid-run
            second = run_cli([*LONGER, "seed=2", f"hydra.run.dir={run_dir}"])
            again = run_cli([*LONGER, f"hydra.run.dir={run_dir}"])
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=300) == 0, (tmp_path / "first.out").read_text()[-2000:]
    for result in (second, again):
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"in use by another run (pid {first.pid} on host" in result.stderr
    log = (run_dir / "run.log").read_text()
    assert log.count("config:") == 1  # the refused runs wrote nothing into the first's log
    assert_same_results(run_dir, reference)


def test_the_lock_is_released_when_the_run_ends_or_fails(tmp_path):
    run_in_process(tmp_path / "ok", TINY)
    with pytest.raises(ValueError):
        run_in_process(tmp_path / "bad", [*TINY, "n_tasks=3"])
    for name in ("ok", "bad"):
        lock = DirectoryLock(tmp_path / name)
        lock.acquire("run directory")  # would raise if a run still held it
        lock.release()


def test_an_occupied_directory_needs_resume_or_overwrite_and_overwrite_replaces_it_whole(tmp_path):
    run_in_process(tmp_path, [*TINY, "checkpoint_every=5"])
    (tmp_path / "results" / "stray.csv").write_text("a\n1\n")
    before = snapshot(tmp_path)
    with pytest.raises(RunDirectoryError, match=r"holds an earlier run's results \(checkpoint.pt"):
        run_in_process(tmp_path, [*TINY, "lr=0.1"])
    assert_unchanged(tmp_path, before)
    events_before = sorted((tmp_path / "tb").iterdir())
    run_in_process(tmp_path, [*TINY, "lr=0.1", "overwrite=true"])
    assert not (tmp_path / "results" / "stray.csv").exists()
    assert not set(events_before) & set((tmp_path / "tb").iterdir())  # old events gone too
    assert pd.read_csv(tmp_path / "results" / "summary.csv").lr[0] == 0.1


def test_resume_true_without_a_checkpoint_does_not_overwrite_results(tmp_path):
    run_in_process(tmp_path, TINY)
    (tmp_path / CHECKPOINT_NAME).unlink()
    before = snapshot(tmp_path)
    with pytest.raises(RunDirectoryError, match="no checkpoint.pt to continue them from"):
        run_in_process(tmp_path, [*TINY, "resume=true"])
    assert_unchanged(tmp_path, before)


def test_a_fresh_start_clears_what_an_attempt_without_results_left(tmp_path):
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.old").write_bytes(b"old")
    (tmp_path / "results").mkdir()
    (tmp_path / f"{CHECKPOINT_NAME}.x1y2.tmp").write_bytes(b"half a checkpoint")
    run_in_process(tmp_path, TINY)
    assert not (tmp_path / "tb" / "events.out.tfevents.old").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_replacements_use_their_own_temporary_names_and_sync_the_directory(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(files, "sync_directory", synced.append)
    (tmp_path / f"{CHECKPOINT_NAME}.tmp").mkdir()  # the old fixed name, taken: no matter
    save_checkpoint({"format": 1}, tmp_path / CHECKPOINT_NAME)
    write_csv_atomically(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
    assert synced == [tmp_path, tmp_path]
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True) == {"format": 1}
    assert (tmp_path / "a.csv").read_text() == "a\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.csv",
        CHECKPOINT_NAME,
        "checkpoint.pt.tmp",
    ]


def test_a_failed_run_reports_its_seconds_and_keeps_its_finished_tasks(tmp_path, monkeypatch):
    record_task = trainer_module.record_task

    def fail_after_task_1(*args, **kwargs):
        record_task(*args, **kwargs)
        if kwargs["task_id"] == 1:
            raise RuntimeError("stopped")

    monkeypatch.setattr(trainer_module, "record_task", fail_after_task_1)
    with pytest.raises(RuntimeError, match="stopped"):
        run_in_process(tmp_path, ["mode=finetune", "n_epoch=1", "progress=false"])
    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    assert summary.status[0] == "failed: RuntimeError" and summary.tasks_done[0] == 2
    assert summary.seconds[0] > 0


def test_an_empty_memory_for_a_replaying_mode_is_warned_about(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="runner"):
        run_in_process(tmp_path, ["mode=er", "mem_size=0", "n_epoch=1", "n_tasks=2"])
    assert "mem_size=0 with mode=er: the memory stays empty" in caplog.text
