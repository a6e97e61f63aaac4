"""mode=rm end to end on digits: outputs, batch composition, offline protocol, warm-up, errors."""

import re

import pandas as pd
import pytest

from rainbow_runner.runner.options import apply_deprecated_keys
from rainbow_runner.runner.steps import StepRunner
from tests.conftest import TINY, compose_config, record_learning_rates, run_cli, run_in_process


def read(run_dir, name):
    return pd.read_csv(run_dir / "results" / name)


def test_rm_defaults_to_the_uncertainty_memory_and_its_knobs_live_under_mem_manage():
    cfg = compose_config(["mode=rm", "mem_manage.metric=vr_randaug", "mem_manage.k=5"])
    assert cfg.mem_manage.name == "uncertainty"
    assert (cfg.mem_manage.metric, cfg.mem_manage.k) == ("vr_randaug", 5)
    assert compose_config(["mode=rm", "mem_manage=reservoir"]).mem_manage.name == "reservoir"


def test_the_old_top_level_uncert_keys_still_work_with_a_deprecation_line():
    cfg = compose_config(["mode=rm", "uncert_metric=vr_randaug", "uncert_k=5"])
    warnings = apply_deprecated_keys(cfg)
    assert (cfg.mem_manage.metric, cfg.mem_manage.k) == ("vr_randaug", 5)
    assert warnings == [
        "uncert_metric=vr_randaug is deprecated: use mem_manage.metric=vr_randaug "
        "(mem_manage=uncertainty takes it).",
        "uncert_k=5 is deprecated: use mem_manage.k=5 (mem_manage=uncertainty takes it).",
    ]
    assert apply_deprecated_keys(compose_config(["mode=rm"])) == []


def test_cli_rm_run_with_paper_augmentation_writes_every_output(tmp_path):
    result = run_cli(
        ["mode=rm", "trans=[cutmix,autoaug]", *TINY, f"hydra.run.dir={tmp_path}"], timeout=240
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = (tmp_path / "run.log").read_text()
    assert "task 5/5" in log and "uncertainty (vr, K=12)" in log
    tasks = read(tmp_path, "tasks.csv")
    assert list(tasks.task) == [0, 1, 2, 3, 4] and (tasks.memory_size == 100).all()
    summary = read(tmp_path, "summary.csv").iloc[0]
    assert summary.status == "complete" and summary.trans == "cutmix+autoaug"
    assert summary.A_last == pytest.approx(tasks.test_acc.iloc[-1])
    updates = read(tmp_path, "memory_updates.csv")
    assert list(updates.task) == [0, 1, 2, 3, 4]
    assert updates.scoring_seconds.iloc[0] == 0 and (updates.scoring_seconds.iloc[1:] > 0).all()
    assert (updates.mem_manage == "uncertainty").all()
    assert read(tmp_path, "acc_matrix.csv").shape == (5, 6)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "run_info.json").exists()


def test_online_steps_pair_each_stream_batch_with_as_many_memory_samples(tmp_path, monkeypatch):
    sizes: list[int] = []
    original = StepRunner.train_step

    def recording_step(self, batch):
        sizes.append((self.method.context.task_id, len(batch.y)))
        return original(self, batch)

    monkeypatch.setattr(StepRunner, "train_step", recording_step)
    run_in_process(tmp_path, ["mode=rm", *TINY, "stream.memory_epochs=0"])
    first = [n for task, n in sizes if task == 0]
    later = [n for task, n in sizes if task == 1]
    assert max(first) == 16  # the memory is empty during the first stream
    assert later[:-1] == [32] * (len(later) - 1)  # 16 stream + 16 memory


def test_offline_rm_trains_on_stream_plus_equally_many_memory_samples(tmp_path):
    run_in_process(tmp_path, ["mode=rm", "stream=offline", *TINY])
    tasks = read(tmp_path, "tasks.csv")
    steps = tasks.steps.diff().fillna(tasks.steps.iloc[0]).astype(int).tolist()
    n = tasks.n_train_samples.tolist()
    assert steps[0] == -(-n[0] // 16)  # n_epoch=1, memory still empty
    assert steps[1:] == [-(-2 * k // 16) for k in n[1:]]  # stream + memory cycled to its size
    assert read(tmp_path, "memory_updates.csv").memory_size.tolist() == [100] * 5


@pytest.mark.parametrize(
    ("warmup", "stream_lr", "memory_lr"),
    [(0, 0.05, 0.05 / 1.1), (1, 0.005, 0.05), (2, 0.005, 0.005)],
)
def test_warmup_epochs_run_at_a_tenth_of_lr_and_delay_the_schedule(
    tmp_path, monkeypatch, warmup, stream_lr, memory_lr
):
    rates = record_learning_rates(monkeypatch)
    overrides = ["mode=rm", *TINY, "lr=0.05", "scheduler=anneal", f"warmup_epochs={warmup}"]
    run_in_process(tmp_path, overrides)
    for task in range(5):
        stream = [lr for t, epoch, lr in rates if t == task and epoch == 1]
        memory = [lr for t, epoch, lr in rates if t == task and epoch == 2]
        assert stream and stream == pytest.approx([stream_lr] * len(stream))
        assert memory and memory == pytest.approx([memory_lr] * len(memory))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "mem_manage.metric=entropy",
            "unknown mem_manage.metric 'entropy'; valid choices are: vr, ",
        ),
        ("mem_manage.k=0", "mem_manage.k=0 must be 1 or more"),
        ("trans=[cutmix,mixup]", "unknown trans entry 'mixup'"),
    ],
)
def test_bad_rm_settings_are_refused_before_training(tmp_path, override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        run_in_process(tmp_path, ["mode=rm", override, *TINY])
    assert not (tmp_path / "results" / "tasks.csv").exists()
