"""Checkpoints in-process: resuming from any point reproduces the uninterrupted run exactly."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rainbow_runner.runner.checkpoint import (
    CHECKPOINT_NAME,
    Checkpointer,
    CheckpointError,
    load_checkpoint,
    plain,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rainbow_runner.runner.rundir import RunDirectoryError
from tests.conftest import run_in_process

WALL_CLOCK = {"tasks.csv": ["wall_seconds"], "summary.csv": ["seconds"], "acc_matrix.csv": []}
# augment_chunk=256: chunks of 16 steps, so that checkpoints fall inside a stream and inside a
# later memory epoch of the same task (a digits task streams ~18 steps)
ONLINE_ER = ["mode=er", "stream=online", "n_epoch=2", "mem_size=60", "progress=false"]
ONLINE_ER += ["augment_chunk=256"]
OFFLINE_ER = [
    "mode=er",
    "stream=offline",
    "exp=disjoint",
    "n_epoch=2",
    "mem_size=60",
    "optimizer=adam",
    "scheduler=multistep",
    "scheduler.milestones=[1]",
    "progress=false",
]


def results(run_dir: Path) -> dict[str, pd.DataFrame]:
    """The run's CSVs without their wall-clock columns."""
    return {
        name: pd.read_csv(run_dir / "results" / name).drop(columns=dropped)
        for name, dropped in WALL_CLOCK.items()
    }


def assert_same_results(run_dir: Path, reference: Path) -> None:
    got, expected = results(run_dir), results(reference)
    for name in WALL_CLOCK:
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True, obj=name)


def run_keeping_checkpoints(run_dir: Path, overrides: list[str], monkeypatch) -> list[dict]:
    """One run that keeps a copy of every checkpoint it writes, with the position of each."""
    kept: list[dict] = []
    save = Checkpointer.save

    def save_and_copy(self: Checkpointer, state: dict) -> None:
        save(self, state)
        copy = run_dir / f"kept_{len(kept):03d}.pt"
        shutil.copy(self.path, copy)
        kept.append({"path": copy, **state["position"], "step": state["global_step"]})

    monkeypatch.setattr(Checkpointer, "save", save_and_copy)
    run_in_process(run_dir, overrides)
    monkeypatch.setattr(Checkpointer, "save", save)
    return kept


def resume_from(checkpoint: Path, run_dir: Path, overrides: list[str]) -> dict:
    """A run directory holding only this checkpoint, continued with resume=true."""
    (run_dir / "results").mkdir(parents=True)
    shutil.copy(checkpoint, run_dir / CHECKPOINT_NAME)
    return run_in_process(run_dir, [*overrides, "resume=true"])


def pick(kept: list[dict]) -> list[dict]:
    """After a task, inside the stream phase, inside a later epoch, and after the last task."""
    after_task = [k for k in kept if not k["inside"] and 0 < k["task"] < 5]
    stream = [k for k in kept if k["inside"] and k["phase"] == 0 and k["task"] >= 1]
    later_epoch = [k for k in kept if k["inside"] and k["epoch"] >= 1]
    return [after_task[1], stream[len(stream) // 2], later_epoch[-1], kept[-1]]


def assert_resumed_runs_repeat_the_run(tmp_path: Path, overrides: list[str], monkeypatch) -> None:
    """Resumed from a spread of its checkpoints (after tasks, inside passes), a run ends with
    the CSVs of the same run uninterrupted."""
    reference = tmp_path / "reference"
    run_in_process(reference, [*overrides, "checkpoint_every=0"])
    every = [*overrides, "checkpoint_every=9"]
    kept = run_keeping_checkpoints(tmp_path / "checkpointed", every, monkeypatch)
    for n, checkpoint in enumerate(pick(kept)):
        resume_from(checkpoint["path"], tmp_path / f"resumed{n}", every)
        assert_same_results(tmp_path / f"resumed{n}", reference)


@pytest.mark.parametrize("overrides", [ONLINE_ER, OFFLINE_ER], ids=["online_er", "offline_er"])
def test_resuming_from_any_checkpoint_gives_the_uninterrupted_csvs(
    tmp_path, monkeypatch, overrides
):
    reference = tmp_path / "reference"
    run_in_process(reference, [*overrides, "checkpoint_every=0"])
    checkpointed = tmp_path / "checkpointed"
    kept = run_keeping_checkpoints(checkpointed, [*overrides, "checkpoint_every=9"], monkeypatch)
    # Writing checkpoints draws no random numbers: the run itself is unchanged.
    assert_same_results(checkpointed, reference)
    assert sum(not k["inside"] for k in kept) == 5  # one after every task
    assert {k["phase"] for k in kept if k["inside"]} == (
        {0, 1} if "stream=online" in overrides else {0}
    )
    for n, checkpoint in enumerate(pick(kept)):
        resumed = tmp_path / f"resumed{n}"
        resume_from(checkpoint["path"], resumed, [*overrides, "checkpoint_every=9"])
        assert_same_results(resumed, reference)
        assert pd.read_csv(resumed / "results" / "summary.csv").status[0] == "complete"


def test_resume_without_checkpoint_starts_fresh_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="runner"):
        summary = run_in_process(tmp_path, ["mode=er", "n_epoch=1", "mem_size=60", "resume=true"])
    assert "no checkpoint" in caplog.text and "starting a fresh run" in caplog.text
    assert summary["tasks_done"] == 5 and (tmp_path / CHECKPOINT_NAME).exists()


def test_resume_false_refuses_an_old_checkpoint_and_overwrite_true_replaces_it(tmp_path, caplog):
    overrides = ["mode=finetune", "n_epoch=1", "n_tasks=2"]
    run_in_process(tmp_path, overrides)
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"stale")
    with pytest.raises(RunDirectoryError, match="overwrite=true"):
        run_in_process(tmp_path, overrides)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == b"stale"  # nothing was changed
    with caplog.at_level(logging.WARNING, logger="runner"):
        run_in_process(tmp_path, [*overrides, "overwrite=true"])
    assert "overwrite=true: replacing the earlier run" in caplog.text
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME, torch.device("cpu"))["position"]["task"] == 2


def test_a_checkpoint_from_other_settings_is_refused_by_name(tmp_path):
    run_in_process(tmp_path, ["mode=finetune", "n_epoch=1", "n_tasks=2", "lr=0.05"])
    with pytest.raises(CheckpointError, match=r"lr=0.05 \(now 0.1\).*resume=true"):
        run_in_process(
            tmp_path, ["mode=finetune", "n_epoch=1", "n_tasks=2", "lr=0.1", "resume=true"]
        )


def test_a_requeued_submitit_job_resumes_by_itself(tmp_path, monkeypatch, caplog):
    overrides = ["mode=er", "n_epoch=1", "mem_size=60"]
    reference = tmp_path / "reference"
    kept = run_keeping_checkpoints(reference, overrides, monkeypatch)
    requeued = tmp_path / "requeued"
    (requeued / "results").mkdir(parents=True)
    shutil.copy(kept[2]["path"], requeued / CHECKPOINT_NAME)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    with caplog.at_level(logging.INFO, logger="runner"):
        run_in_process(requeued, overrides)  # resume=false, as a sweep's job config has it
    assert "submitit requeue: resuming" in caplog.text and "after task 3" in caplog.text
    assert_same_results(requeued, reference)


def test_checkpoint_content_loads_without_pickles(tmp_path):
    scheduler_state = {"milestones": Counter({3: 1, 5: 1}), "last_epoch": 2}
    state = {
        "format": 1,
        "memory": {"indices": np.arange(4), "n_seen": np.asarray(7), "rng": np.zeros(3, np.uint8)},
        "scheduler": scheduler_state,
        "row": {"test_acc": np.float64(12.5), "task": np.int64(3)},
        "python": (3, [1, 2], None),
    }
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt", torch.device("cpu"))
    assert isinstance(loaded["scheduler"]["milestones"], Counter)  # MultiStepLR needs a Counter
    assert loaded["memory"]["indices"].tolist() == [0, 1, 2, 3]
    assert loaded["row"] == {"test_acc": 12.5, "task": 3}
    assert not (tmp_path / "c.pt.tmp").exists()
    with pytest.raises(TypeError, match=r"method\.old is a object"):
        plain({"method": {"old": object()}})


def test_rng_state_round_trip_repeats_every_stream():
    import random

    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(2).tolist())
    set_rng_state(plain(state))
    assert (random.random(), np.random.rand(), torch.rand(2).tolist()) == first


def test_a_corrupt_checkpoint_is_named_in_the_error(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path, torch.device("cpu"))
