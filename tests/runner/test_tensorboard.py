"""The events a run writes, read back as TensorBoard reads them: per-task accuracies equal to
the CSVs, the task loss under train/, the resolved config as text, and the HParams record."""

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import run_cli

OVERRIDES = ["mode=ewc", "mode.reg_coef=2", "n_tasks=2", "n_epoch=1", "mem_size=50"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tb") / "run"
    args = [*OVERRIDES, "num_threads=1", "progress=false", "log_every=10"]
    result = run_cli([*args, f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="module")
def events(run_dir):
    accumulator = EventAccumulator(str(run_dir / "tb"), size_guidance={"tensors": 0})
    return accumulator.Reload()


def scalars(events, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_per_task_accuracies_equal_the_csvs(events, run_dir):
    matrix = pd.read_csv(run_dir / "results" / "acc_matrix.csv")
    tasks = pd.read_csv(run_dir / "results" / "tasks.csv")
    for group in range(2):
        expected = list(enumerate(matrix[f"task{group}"]))
        assert scalars(events, f"test/acc_task{group}") == [
            (step, pytest.approx(value, abs=1e-4)) for step, value in expected
        ]
    assert [v for _, v in scalars(events, "test/accuracy")] == pytest.approx(list(tasks.test_acc))
    losses = [v for _, v in scalars(events, "train/task_loss")]
    assert losses == pytest.approx(list(tasks.train_loss), rel=1e-6)
    assert "test/train_loss" not in events.Tags()["scalars"]
    assert "test_acc_top1" not in tasks.columns  # topk=1: test_acc says it already
    assert not any(tag.startswith("test/accuracy_top") for tag in events.Tags()["scalars"])


def test_the_resolved_config_is_text(events):
    [text] = events.Tensors("config/text_summary")
    assert "reg_coef: 2" in text.tensor_proto.string_val[0].decode()


def test_hparams_hold_the_settings_and_the_headline_metrics(events, run_dir):
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info.hparams
    summary = pd.read_csv(run_dir / "results" / "summary.csv").iloc[0]
    assert start["mode"].string_value == "ewc" and start["model"].string_value == "mlp400"
    assert start["optimizer"].string_value == "sgd"
    assert start["mem_size"].number_value == 50
    assert start["mode.reg_coef"].string_value == "2"  # a command-line override
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {info.name.tag for info in experiment.experiment.metric_infos}
    assert metric_tags == {f"summary/{m}" for m in ("A_last", "A_avg", "F_last", "I_last")}
    for metric in ("A_last", "A_avg", "F_last"):
        [(_, value)] = scalars(events, f"summary/{metric}")
        assert value == pytest.approx(summary[metric], abs=1e-4)
    print(sorted(start), sorted(metric_tags))
