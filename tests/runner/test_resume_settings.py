"""Resuming with settings that change the arithmetic is refused by name; restoring them resumes
to the uninterrupted run's CSVs exactly."""

from __future__ import annotations

import logging

import pytest
import torch

from rainbow_runner.runner.checkpoint import CHECKPOINT_NAME, CheckpointError
from tests.conftest import run_cli
from tests.runner.helpers import assert_unchanged, snapshot
from tests.runner.test_resume_checkpoint import (
    assert_same_results,
    resume_from,
    run_keeping_checkpoints,
)

# Explicit threads, so the test does not depend on the machine's core count.
ER = ["mode=er", "n_epoch=1", "mem_size=60", "progress=false", "num_threads=1", "log_every=10"]


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def interrupted(tmp_path, monkeypatch, restore_threads):
    """The uninterrupted reference and the checkpoint it wrote after task 1."""
    reference = tmp_path / "reference"
    kept = run_keeping_checkpoints(reference, ER, monkeypatch)
    after_task_1 = next(k for k in kept if not k["inside"] and k["task"] == 1)
    return reference, after_task_1["path"]


def resume_with(tmp_path, checkpoint, name: str, overrides: list[str]):
    """Resume a copy of the checkpoint in its own directory with other overrides."""
    run_dir = tmp_path / name
    return lambda: resume_from(checkpoint, run_dir, overrides), run_dir


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        (["num_threads=2"], r"torch threads 1 \(now 2; restore with num_threads=1\)"),
        (["log_every=5"], r"log_every 10 \(now 5; restore with log_every=10\)"),
        (["augment_chunk=256"], r"augment_chunk=1024 \(now 256\)"),
    ],
    ids=["threads", "log_every", "augment_chunk"],
)
def test_resuming_with_other_arithmetic_is_refused_naming_the_override(
    tmp_path, interrupted, changed, message
):
    _, checkpoint = interrupted
    overrides = [o for o in ER if o.split("=")[0] not in {c.split("=")[0] for c in changed}]
    resume, run_dir = resume_with(tmp_path, checkpoint, "other", [*overrides, *changed])
    with pytest.raises(CheckpointError, match=message):
        resume()
    assert sorted(p.name for p in run_dir.iterdir()) == [CHECKPOINT_NAME, "results", "run.lock"]
    assert not list((run_dir / "results").iterdir())  # refused before any write


def test_num_threads_0_compares_the_threads_it_resolves_to(tmp_path, interrupted, monkeypatch):
    from rainbow_runner.runner import app

    _, checkpoint = interrupted
    monkeypatch.setattr(app, "threads_for", lambda macs, cores: 3)  # as a bigger model would
    overrides = [o if o != "num_threads=1" else "num_threads=0" for o in ER]
    resume, _ = resume_with(tmp_path, checkpoint, "all_cores", overrides)
    with pytest.raises(
        CheckpointError, match=r"torch threads 1 \(now 3; restore with num_threads=1"
    ):
        resume()


def test_restoring_the_named_settings_resumes_to_the_uninterrupted_csvs(tmp_path, interrupted):
    reference, checkpoint = interrupted
    torch.set_num_threads(3)
    resume, run_dir = resume_with(tmp_path, checkpoint, "restored", ER)
    resume()
    assert_same_results(run_dir, reference)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("device_type", "cuda", r"device type cuda \(now cpu; restore with device=cuda"),
        ("device_model", "NVIDIA H200", r"device NVIDIA H200 .*a machine whose GPU is a NVIDIA"),
        ("torch_version", "1.0.0", r"torch 1.0.0 \(now .*pip install torch==1.0.0"),
        ("max_pending_steps", 64, r"steps summed at once 64 \(now 512"),
    ],
)
def test_a_checkpoint_from_another_device_or_library_is_refused(
    tmp_path, interrupted, key, value, message
):
    _, checkpoint = interrupted
    state = torch.load(checkpoint, weights_only=True)
    state["arithmetic"][key] = value
    edited = tmp_path / "edited.pt"
    torch.save(state, edited)
    resume, _ = resume_with(tmp_path, edited, "edited", ER)
    with pytest.raises(CheckpointError, match=message):
        resume()


def test_a_checkpoint_without_the_record_resumes_with_a_warning(tmp_path, interrupted, caplog):
    reference, checkpoint = interrupted
    state = torch.load(checkpoint, weights_only=True)
    del state["arithmetic"]
    older = tmp_path / "older.pt"
    torch.save(state, older)
    resume, run_dir = resume_with(tmp_path, older, "older", ER)
    with caplog.at_level(logging.WARNING, logger="runner"):
        resume()
    assert "does not record its thread count" in caplog.text
    assert_same_results(run_dir, reference)


def test_the_cli_refuses_other_threads_with_status_2_and_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["mode=finetune", "n_epoch=1", "n_tasks=2", "progress=false", "num_threads=1"]
    assert run_cli([*overrides, f"hydra.run.dir={run_dir}"]).returncode == 0
    before, log = snapshot(run_dir), (run_dir / "run.log").read_text()
    changed = [o for o in overrides if o != "num_threads=1"] + ["num_threads=2"]
    result = run_cli([*changed, "resume=true", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "torch threads 1 (now 2; restore with num_threads=1)" in result.stderr
    assert "num_threads=1 resume=true" in result.stderr  # the command that resumes exactly
    assert_unchanged(run_dir, before, log)
