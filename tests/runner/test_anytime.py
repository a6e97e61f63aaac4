"""Anytime evaluation on i-Blurry streams: it never changes training, A_AUC is the curve's area,
and a mode that needs task boundaries is refused on a task-free stream."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rainbow_runner.runner.anytime import a_auc
from rainbow_runner.runner.checkpoint import CHECKPOINT_NAME, load_checkpoint
from rainbow_runner.runner.reporting.report import write_report
from rainbow_runner.runner.schema import ConfigError
from tests.conftest import run_cli, run_in_process
from tests.runner.test_resume_checkpoint import (
    assert_same_results,
    resume_from,
    run_keeping_checkpoints,
)

IBLURRY = ["exp=iblurry", "stream=online", "n_epoch=1", "mem_size=60", "progress=false"]
NOT_TIMED = {"tasks.csv": ["wall_seconds"], "acc_matrix.csv": []}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / CHECKPOINT_NAME, torch.device("cpu"))["model"]


def test_a_auc_is_the_area_under_a_made_up_curve() -> None:
    # Evaluations every Δn = 1000 of 4000 samples; the paper normalises Δn by the stream's
    # length, so the area is Σ f(i·Δn)·Δn/4000 = (10 + 30 + 50 + 70) · 1/4.
    assert a_auc(np.array([10.0, 30.0, 50.0, 70.0])) == pytest.approx(40.0)
    assert a_auc(np.array([80.0])) == 80.0
    assert math.isnan(a_auc(np.array([])))


@pytest.mark.parametrize("mode", ["er", "mir"])  # mir: stepwise draws, the head grows first
def test_evaluating_never_changes_training(tmp_path: Path, mode: str) -> None:
    plain = run_in_process(tmp_path / "plain", [*IBLURRY, f"mode={mode}"])
    timed = run_in_process(tmp_path / "anytime", [*IBLURRY, f"mode={mode}", "eval_period=100"])
    for name, value in final_weights(tmp_path / "plain").items():  # BatchNorm stats included
        assert torch.equal(value, final_weights(tmp_path / "anytime")[name]), name
    for name, dropped in NOT_TIMED.items():
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "anytime" / "results" / name).drop(columns=dropped),
            pd.read_csv(tmp_path / "plain" / "results" / name).drop(columns=dropped),
            check_exact=True,
        )
    assert timed["A_last"] == plain["A_last"] and "A_AUC" not in plain

    curve = pd.read_csv(tmp_path / "anytime" / "results" / "anytime.csv")
    assert list(curve.columns) == ["n_samples_seen", "task", "accuracy", "n_seen_classes"]
    # digits: 1437 stream samples in batches of 16 -> one point per 100 crossed, 14 in all
    assert len(curve) == 14 and (np.diff(curve["n_samples_seen"]) > 0).all()
    assert (curve["n_samples_seen"] // 100).tolist() == list(range(1, 15))
    assert (np.diff(curve["n_seen_classes"]) >= 0).all() and curve["n_seen_classes"].max() == 10
    assert timed["A_AUC"] == pytest.approx(curve["accuracy"].mean(), abs=1e-4)

    report = write_report([tmp_path], tmp_path / "report")
    assert (tmp_path / "report" / "anytime_curves.png").stat().st_size > 0
    assert "| A_AUC |" in report.markdown and "anytime_curves.png" in report.markdown


def test_task_free_run_trains_on_the_stream_only(tmp_path: Path) -> None:
    run_in_process(tmp_path, [*IBLURRY, "mode=er", "exp.task_boundaries=false"])
    tasks = pd.read_csv(tmp_path / "results" / "tasks.csv")
    # no memory epochs between periods: one step per incoming batch of 16
    assert tasks["steps"].tolist() == np.cumsum(np.ceil(tasks["n_train_samples"] / 16)).tolist()
    assert tasks["n_seen_classes"].is_monotonic_increasing and tasks["test_acc"].iloc[-1] > 20


def test_mode_needing_task_boundaries_is_refused_task_free() -> None:
    result = run_cli([*IBLURRY, "mode=ewc", "exp.task_boundaries=false", "num_threads=1"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "mode=ewc" in result.stderr and "needs task boundaries" in result.stderr
    assert "er, " in result.stderr and "mir" in result.stderr  # the modes that can run


def test_eval_period_needs_an_online_stream(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="eval_period=50.*stream=offline"):
        run_in_process(tmp_path, ["mode=er", "stream=offline", "eval_period=50", "n_epoch=1"])


def test_resumed_task_free_run_repeats_the_run(tmp_path: Path, monkeypatch) -> None:
    """A task-free stream's optimizer runs through the periods, and the anytime points survive:
    resumed after a period or inside one, the run ends as the uninterrupted one."""
    overrides = [*IBLURRY, "mode=er", "eval_period=100", "augment_chunk=256"]
    run_in_process(tmp_path / "reference", [*overrides, "checkpoint_every=0"])
    every = [*overrides, "checkpoint_every=9"]
    kept = run_keeping_checkpoints(tmp_path / "checkpointed", every, monkeypatch)
    after_period = [k for k in kept if not k["inside"] and k["task"] == 2]
    inside = [k for k in kept if k["inside"] and k["task"] == 3]
    for n, checkpoint in enumerate([*after_period, inside[len(inside) // 2]]):
        resume_from(checkpoint["path"], tmp_path / f"resumed{n}", every)
        assert_same_results(tmp_path / f"resumed{n}", tmp_path / "reference")
        for name in ("anytime.csv", "summary.csv"):
            got = pd.read_csv(tmp_path / f"resumed{n}" / "results" / name)
            expected = pd.read_csv(tmp_path / "reference" / "results" / name)
            pd.testing.assert_frame_equal(
                got.drop(columns="seconds", errors="ignore"),
                expected.drop(columns="seconds", errors="ignore"),
            )


def test_gdumb_anytime_points_train_a_copy_on_the_memory(tmp_path: Path) -> None:
    """GDumb under eval_period (the CLIB paper's protocol): the memory takes the online stream
    in, each point trains a from-scratch copy on it; the run itself trains as without points.

    eval_period=0 keeps GDumb's offline route (an untouched default); the reference is the
    online intake route with an eval_period no batch reaches.
    """
    gdumb = [*IBLURRY, "mode=gdumb", "mode.anytime_epochs=10"]
    never = run_in_process(tmp_path / "never", [*gdumb, "eval_period=100000"])
    timed = run_in_process(tmp_path / "anytime", [*gdumb, "eval_period=100"])
    for name, value in final_weights(tmp_path / "never").items():
        assert torch.equal(value, final_weights(tmp_path / "anytime")[name]), name
    for name, dropped in NOT_TIMED.items():
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "anytime" / "results" / name).drop(columns=dropped),
            pd.read_csv(tmp_path / "never" / "results" / name).drop(columns=dropped),
            check_exact=True,
        )
    assert timed["A_last"] == never["A_last"] > 20
    assert (
        not (tmp_path / "never" / "results" / "anytime.csv").exists()
        or pd.read_csv(tmp_path / "never" / "results" / "anytime.csv").empty
    )

    curve = pd.read_csv(tmp_path / "anytime" / "results" / "anytime.csv")
    assert len(curve) == 14 and curve["n_seen_classes"].max() == 10
    # chance is 100 / n_seen_classes (10-25 %); 10 epochs on <= 60 digits give twice that
    assert (curve["accuracy"] > 2 * 100 / curve["n_seen_classes"]).all(), curve
    assert curve["accuracy"].iloc[-1] > 50 and timed["A_AUC"] > 50


def test_gdumb_anytime_epochs_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode.anytime_epochs=0"):
        run_in_process(tmp_path, [*IBLURRY, "mode=gdumb", "mode.anytime_epochs=0"])


def test_gdumb_trains_a_new_copy_only_when_its_inputs_changed(tmp_path: Path, monkeypatch) -> None:
    """A point whose memory, random streams and model are those of the last point gets the
    last copy back: the curve is the one of a run that retrains at every point."""
    from rainbow_runner.methods.gdumb import GDumb

    trained = []
    train = GDumb._train_from_scratch
    monkeypatch.setattr(
        GDumb, "_train_from_scratch", lambda self, idx: trained.append(1) or train(self, idx)
    )
    gdumb = [*IBLURRY, "mode=gdumb", "mode.anytime_epochs=2", "mem_size=20", "eval_period=40"]
    cached = run_in_process(tmp_path / "cached", gdumb)
    n_cached = len(trained)
    monkeypatch.setattr(GDumb, "_predictor_inputs", lambda self: object())  # never equal
    every = run_in_process(tmp_path / "every", gdumb)
    curve = pd.read_csv(tmp_path / "cached" / "results" / "anytime.csv")
    assert n_cached < len(curve) == len(trained) - n_cached
    pd.testing.assert_frame_equal(
        curve, pd.read_csv(tmp_path / "every" / "results" / "anytime.csv"), check_exact=True
    )
    assert cached["A_AUC"] == every["A_AUC"]
