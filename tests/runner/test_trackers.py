"""logger=[...]: each tracker records the config, the per-step and per-task scalars and the
final metrics of a run, offline, and the values read back equal the run's own CSVs."""

import importlib.util
import json
import struct
from pathlib import Path

import pandas as pd
import pytest

from rainbow_runner.runner.reporting import trackers
from rainbow_runner.runner.reporting.trackers import check_trackers
from rainbow_runner.runner.schema import ConfigError
from tests.conftest import TINY, run_in_process

OPTIONAL = [name for name in ("wandb", "mlflow") if importlib.util.find_spec(name) is not None]
LOG_EVERY = 10
OVERRIDES = [*TINY, "n_tasks=2", "mode=er", f"log_every={LOG_EVERY}", "num_threads=1"]
OVERRIDES += ["keep_checkpoint=false"]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> tuple[Path, dict]:
    """One digits run with the CSV logger and every installed optional tracker."""
    run_dir = tmp_path_factory.mktemp("tracked") / "run"
    summary = run_in_process(run_dir, [*OVERRIDES, f"logger=[{','.join(['csv', *OPTIONAL])}]"])
    return run_dir, summary


def logged_every(steps: list[int]) -> bool:
    """Losses every LOG_EVERY steps (and at a task's end): at least 10, in order."""
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    return len(steps) >= 10 and steps[0] == LOG_EVERY and all(0 < g <= LOG_EVERY for g in gaps)


def tasks_of(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "results" / "tasks.csv")


def test_csv_logger_writes_every_scalar_with_its_axis(tracked_run):
    run_dir, summary = tracked_run
    scalars = pd.read_csv(run_dir / "results" / "scalars.csv")
    assert not (run_dir / "tb").exists()  # logger=[csv]: TensorBoard is not selected
    assert not (run_dir / "checkpoint.pt").exists()  # keep_checkpoint=false, a complete run
    steps = scalars[scalars.tag == "train/loss"]
    assert (steps.axis == "step").all() and len(steps) >= 10
    assert logged_every(list(steps.step))
    tasks = tasks_of(run_dir)
    for tag, column in [
        ("test/accuracy", "test_acc"),
        ("test/A_avg_so_far", "A_avg_so_far"),
        ("test/forgetting_so_far", "forgetting_so_far"),
    ]:
        rows = scalars[scalars.tag == tag]
        assert list(rows.axis) == ["task", "task"] and list(rows.step) == [0, 1]
        assert list(rows.value) == pytest.approx(list(tasks[column]))
    final = scalars[scalars.axis == "final"].set_index("tag").value
    assert final["summary/A_last"] == pytest.approx(summary["A_last"])
    assert final["summary/F_last"] == pytest.approx(summary["F_last"])


def test_csv_logger_of_a_resumed_run_drops_what_followed_the_checkpoint(tmp_path):
    from rainbow_runner.runner.reporting.trackers import RunContext
    from rainbow_runner.runner.reporting.trackers.csv_file import CsvTracker

    first = CsvTracker(RunContext(tmp_path, {}))
    for step in (10, 20, 30):
        first.scalar("train/loss", step / 10, step)
    first.scalar("test/accuracy", 50.0, 0, "task")
    first.scalar("test/accuracy", 60.0, 1, "task")
    first.close()  # interrupted after step 30; the checkpoint was at step 20, after task 0
    resumed = CsvTracker(RunContext(tmp_path, {}, purge_step=21, tasks_done=1))
    resumed.scalar("train/loss", 2.5, 25)
    resumed.close()
    rows = pd.read_csv(tmp_path / "results" / "scalars.csv")
    assert list(zip(rows.tag, rows.step, rows.value, strict=True)) == [
        ("train/loss", 10, 1.0),
        ("train/loss", 20, 2.0),
        ("test/accuracy", 0, 50.0),
        ("train/loss", 25, 2.5),
    ]


def test_unknown_or_missing_tracker_is_refused_with_the_install_command(monkeypatch):
    with pytest.raises(ConfigError, match=r"valid loggers are: csv, mlflow, tensorboard, wandb"):
        check_trackers({"neptune": {}})
    real = importlib.util.find_spec
    monkeypatch.setattr(
        trackers.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name)
    )
    with pytest.raises(ConfigError, match=r"pip install 'rainbow-runner\[wandb\]'"):
        check_trackers({"tensorboard": {}, "wandb": {"mode": "offline"}})
    check_trackers({"tensorboard": {}, "csv": {}})


def wandb_records(path: Path):
    """The protobuf records of an offline run's .wandb file (LevelDB log blocks of 32 KiB)."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending = path.read_bytes(), 7, b""  # a 7-byte ":W&B" header first
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:  # a block's tail too short for a record header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def items(entries) -> dict:
    """A record's key/value items (a key with a '/' may come as its nested parts)."""
    return {e.key or "/".join(e.nested_key): json.loads(e.value_json) for e in entries}


def test_wandb_offline_run_holds_config_history_and_summary(tracked_run):
    pytest.importorskip("wandb")
    run_dir, summary = tracked_run
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    config, history, final = {}, [], {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config = items(record.run.config.update)
        elif kind == "history":
            history.append(items(record.history.item))
        elif kind == "summary":
            final.update(items(record.summary.update))
    assert config["lr"] == 0.05 and config["mode"]["name"] == "er"
    losses = [row["global_step"] for row in history if "train/loss" in row]
    assert logged_every(losses)
    accuracy = [(row["task"], row["test/accuracy"]) for row in history if "test/accuracy" in row]
    assert accuracy == [
        (task, pytest.approx(acc)) for task, acc in enumerate(tasks_of(run_dir).test_acc)
    ]
    assert final["A_last"] == pytest.approx(summary["A_last"])
    assert final["F_last"] == pytest.approx(summary["F_last"])


def test_mlflow_file_store_holds_params_metrics_and_status(tracked_run):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run_dir, summary = tracked_run
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "rainbow-runner"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.params["lr"] == "0.05" and run.data.params["mode.name"] == "er"
    history = client.get_metric_history(run.info.run_id, "test/accuracy")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (task, pytest.approx(acc)) for task, acc in enumerate(tasks_of(run_dir).test_acc)
    ]
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert logged_every(sorted(m.step for m in losses))
    assert run.data.metrics["A_last"] == pytest.approx(summary["A_last"])
