"""End-to-end runs on digits: outputs, stream semantics, determinism, and er > finetune."""

import math

import pandas as pd
import pytest

from rainbow_runner.methods.er import ExperienceReplay
from tests.conftest import TINY, run_cli, run_in_process


def read(run_dir, name):
    return pd.read_csv(run_dir / "results" / name)


def test_cli_run_writes_log_csvs_and_tensorboard(tmp_path):
    result = run_cli(["mode=er", "exp=disjoint", *TINY, f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-2000:]
    log = (tmp_path / "run.log").read_text()
    assert "task 5/5" in log
    last_line = [line for line in log.splitlines() if "A_last" in line][-1]
    assert "A_avg" in last_line and "F_last" in last_line and "I_last" in last_line
    tasks = read(tmp_path, "tasks.csv")
    assert list(tasks.task) == [0, 1, 2, 3, 4]
    assert list(tasks.n_seen_classes) == [2, 4, 6, 8, 10]
    assert tasks.memory_size.iloc[-1] == 100
    matrix = read(tmp_path, "acc_matrix.csv")
    assert matrix.shape == (5, 6)
    summary = read(tmp_path, "summary.csv").iloc[0]
    assert summary.status == "complete" and summary.tasks_done == 5
    assert summary.A_last == pytest.approx(tasks.test_acc.iloc[-1])
    assert summary.A_avg == pytest.approx(tasks.test_acc.mean())
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / ".hydra" / "config.yaml").exists()
    assert (tmp_path / "run_info.json").exists()


def test_disjoint_accuracy_matrix_rows_match_the_task_accuracy(tmp_path):
    run_in_process(tmp_path, ["mode=finetune", "exp=disjoint", *TINY])
    tasks, matrix = read(tmp_path, "tasks.csv"), read(tmp_path, "acc_matrix.csv")
    for task in range(5):
        seen = matrix.iloc[task, 1 : task + 2].to_numpy()
        # The task accuracy is the size-weighted mean of the seen groups' accuracies.
        assert seen.min() - 1e-3 <= tasks.test_acc[task] <= seen.max() + 1e-3
        assert (matrix.iloc[task, task + 2 :] == 0).all()  # unseen classes have no logits yet
    assert tasks.test_acc[0] == pytest.approx(matrix.iloc[0, 1])


def test_online_stream_takes_one_step_per_incoming_batch(tmp_path):
    run_in_process(tmp_path, ["mode=finetune", "stream=online", "batchsize=16", *TINY])
    tasks = read(tmp_path, "tasks.csv")
    steps_per_task = [math.ceil(n / 16) for n in tasks.n_train_samples]
    assert tasks.steps.tolist() == pd.Series(steps_per_task).cumsum().tolist()


def test_online_iter_repeats_steps_and_memory_epochs_add_replay(tmp_path):
    run_in_process(tmp_path, ["mode=er", "stream.online_iter=2", "stream.memory_epochs=1", *TINY])
    tasks = read(tmp_path, "tasks.csv")
    first_task = math.ceil(tasks.n_train_samples[0] / 16) * 2 + math.ceil(100 / 16)
    assert tasks.steps[0] == first_task


def test_offline_er_draws_memory_into_every_step_or_concatenates_it(tmp_path):
    common = ["mode=er", "stream=offline", "n_epoch=2", "mem_size=50", "progress=false"]
    run_in_process(tmp_path / "per_step", common)  # replay=per_step, the default
    run_in_process(tmp_path / "concat", [*common, "replay=concat"])
    per_step, concat = (
        read(tmp_path / "per_step", "tasks.csv"),
        read(tmp_path / "concat", "tasks.csv"),
    )
    first = 2 * math.ceil(per_step.n_train_samples[0] / 16)
    assert per_step.steps[0] == first  # the memory is empty during the first task
    assert per_step.steps[1] == first + 2 * math.ceil(per_step.n_train_samples[1] / 16)
    second = 2 * math.ceil((concat.n_train_samples[1] + 50) / 16)  # stream + memory, shuffled
    assert concat.steps[0] == first and concat.steps[1] == first + second


def test_joint_trains_once_on_everything(tmp_path):
    summary = run_in_process(tmp_path, ["mode=joint", "n_epoch=3", "progress=false"])
    tasks = read(tmp_path, "tasks.csv")
    assert len(tasks) == 1 and tasks.n_train_samples[0] == 1437
    assert tasks.n_seen_classes[0] == 10
    assert summary["A_last"] > 85.0


def test_replay_beats_finetuning_on_a_disjoint_stream(tmp_path):
    common = ["exp=disjoint", "stream=online", "mem_size=200", "n_epoch=1", "progress=false"]
    finetune = run_in_process(tmp_path / "ft", ["mode=finetune", *common])
    replay = run_in_process(tmp_path / "er", ["mode=er", *common])
    assert finetune["A_last"] < 40.0  # catastrophic forgetting: little beyond the last task
    assert replay["A_last"] > finetune["A_last"] + 25.0
    assert replay["F_last"] < finetune["F_last"]


def test_same_seed_gives_the_same_csv_and_another_seed_does_not(tmp_path):
    settings = ["mode=er", "exp=blurry10", *TINY]
    run_in_process(tmp_path / "a", [*settings, "seed=3"])
    run_in_process(tmp_path / "b", [*settings, "seed=3"])
    run_in_process(tmp_path / "c", [*settings, "seed=4"])
    columns = lambda d: read(d, "tasks.csv").drop(columns=["wall_seconds"])  # noqa: E731
    pd.testing.assert_frame_equal(columns(tmp_path / "a"), columns(tmp_path / "b"))
    assert not columns(tmp_path / "a").equals(columns(tmp_path / "c"))


def test_split_seed_changes_the_stream_but_not_the_training_seed(tmp_path):
    settings = ["mode=finetune", "exp=disjoint", *TINY]
    run_in_process(tmp_path / "a", [*settings, "split_seed=1"])
    run_in_process(tmp_path / "b", [*settings, "split_seed=2"])
    first, second = read(tmp_path / "a", "tasks.csv"), read(tmp_path / "b", "tasks.csv")
    assert not first.test_acc.equals(second.test_acc)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_finished_tasks(tmp_path, monkeypatch):
    original = ExperienceReplay.loss

    def loss_that_diverges_in_task_2(self, batch):
        loss, logits = original(self, batch)
        return (loss * float("nan") if self.context.task_id >= 1 else loss), logits

    monkeypatch.setattr(ExperienceReplay, "loss", loss_that_diverges_in_task_2)
    with pytest.raises(RuntimeError, match="training loss became nan in task 2/5"):
        run_in_process(tmp_path, ["mode=er", *TINY])
    assert len(read(tmp_path, "tasks.csv")) == 1
    summary = read(tmp_path, "summary.csv").iloc[0]
    assert summary.status == "failed: NonFiniteLossError" and summary.tasks_done == 1
