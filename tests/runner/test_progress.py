"""The progress bar: one per task, its total set before the first step and equal to the steps
the task takes (online, offline, with memory epochs), the run's position in its description."""

import pytest

from rainbow_runner.runner import steps
from tests.conftest import run_in_process

TINY = ["n_tasks=2", "mem_size=50", "progress=true", "num_threads=1", "log_every=5"]


class RecordingBar:
    """Stands in for tqdm: what the total was at the first step and at the end."""

    bars: list["RecordingBar"] = []

    def __init__(self, total=None, desc="", **_):
        self.total, self.desc, self.n = total, desc, 0
        self.total_at_first_step = None
        self.postfix = {}
        RecordingBar.bars.append(self)

    def update(self, n=1):
        if self.n == 0:
            self.total_at_first_step = self.total
        self.n += n

    def set_postfix(self, **postfix):
        self.postfix = postfix

    def refresh(self):
        pass

    def close(self):
        self.closed_total = self.total


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.bars = []
    monkeypatch.setattr(steps, "tqdm", RecordingBar)
    return RecordingBar.bars


@pytest.mark.parametrize(
    "overrides",
    [
        ["mode=er", "stream=online", "n_epoch=2"],  # stream pass + 2 memory epochs per task
        ["mode=finetune", "stream=online", "n_epoch=1"],  # no memory epochs
        ["mode=er", "stream=offline", "n_epoch=2"],  # replay=per_step: the pool is the task
        ["mode=er", "stream=online", "n_epoch=1", "stream.online_iter=2", "batchsize=7"],
    ],
    ids=["er_online", "finetune_online", "er_offline", "online_iter_2"],
)
def test_the_total_is_set_before_the_first_step_and_equals_the_steps(bars, tmp_path, overrides):
    run_in_process(tmp_path / "run", [*TINY, *overrides])
    assert [bar.desc for bar in bars] == ["task 1/2", "task 2/2"]
    for bar in bars:
        assert bar.n > 0
        assert bar.total_at_first_step == bar.n == bar.closed_total
    assert bars[-1].postfix["run_step"] <= sum(bar.n for bar in bars)


def test_a_pass_longer_than_planned_grows_the_total_once_and_ends_exact(bars, tmp_path):
    """rm offline cycles the memory into the pool (twice the task's steps from task 2 on)."""
    run_in_process(tmp_path / "run", [*TINY, "mode=rm", "stream=offline", "n_epoch=1"])
    for bar in bars:
        assert bar.total_at_first_step > 0 and bar.n == bar.closed_total
