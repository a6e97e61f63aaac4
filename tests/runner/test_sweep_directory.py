"""One sweep per sweep directory, and a report that merges only the jobs its multirun.yaml lists."""

from __future__ import annotations

import os

import pandas as pd

from rainbow_runner.runner.reporting.report import write_report
from rainbow_runner.runner.rundir import SWEEP_LOCK_NAME, DirectoryLock
from tests.runner.helpers import assert_unchanged, run_cli_batch, snapshot

JOB = ["mode=finetune", "n_epoch=1", "n_tasks=2", "progress=false", "~hydra.callbacks.report"]


def sweep(sweep_dir, *overrides: str) -> list[str]:
    return ["--multirun", *JOB, *overrides, f"hydra.sweep.dir={sweep_dir}"]


def job_dirs(sweep_dir):
    return sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())


def test_a_second_sweep_is_refused_and_the_report_merges_only_listed_jobs(tmp_path):
    shared, busy = tmp_path / "shared", tmp_path / "busy"
    (first,) = run_cli_batch([sweep(shared, "seed=1,2")], tmp_path)
    assert first["code"] == 0, first["stderr"][-2000:]
    assert len(job_dirs(shared)) == 2
    before = snapshot(shared)

    lock = DirectoryLock(busy, SWEEP_LOCK_NAME)
    lock.acquire("sweep directory")
    try:
        refused = run_cli_batch(
            [
                sweep(shared, "seed=3"),  # a new sweep where one was
                sweep(shared, "seed=3", "resume=true"),  # "continuing" with other overrides
                sweep(busy, "seed=1,2"),  # a sweep running there now
            ],
            tmp_path,
        )
    finally:
        lock.release()
    for result in refused:
        assert result["code"] == 2 and "Traceback" not in result["stderr"]
        assert result["stderr"].count("\n") == 1 and result["stderr"].startswith("error: ")
    assert "holds an earlier sweep (" in refused[0]["stderr"]
    assert "resume=true, replace it with overwrite=true" in refused[0]["stderr"]
    assert "holds another sweep" in refused[1]["stderr"]
    assert f"is in use by another run (pid {os.getpid()}" in refused[2]["stderr"]
    assert_unchanged(shared, before)
    assert sorted(p.name for p in busy.iterdir()) == [SWEEP_LOCK_NAME]

    resumed, replaced = run_cli_batch(
        [sweep(shared, "seed=1,2", "resume=true"), sweep(shared, "seed=3", "overwrite=true")],
        tmp_path,
    )
    assert resumed["code"] == 0, resumed["stderr"][-2000:]
    assert "resuming from" in (job_dirs(shared)[0] / "run.log").read_text()
    assert replaced["code"] == 0, replaced["stderr"][-2000:]
    assert (
        len(job_dirs(shared)) == 3
    )  # seed 3's job, and the two that multirun.yaml no longer lists

    report = write_report([shared], shared)
    assert report.table["seeds"].tolist() == ["3"] and report.table["n_seeds"].tolist() == [1]
    foreign = [line for line in report.problems if "not a job of" in line]
    assert len(foreign) == 2 and all("seed=1" in f or "seed=2" in f for f in foreign)
    assert "not merged" in (shared / "report.md").read_text()
    assert pd.read_csv(shared / "report.csv")["seeds"].astype(str).tolist() == ["3"]
