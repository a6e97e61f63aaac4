"""Every registered mode end to end on digits, in both streams and both split kinds."""

from __future__ import annotations

import pandas as pd
import pytest

from rainbow_runner.methods import METHODS
from tests.conftest import TINY, run_in_process

SETTINGS = [
    ("online", "disjoint"),
    ("online", "blurry10"),
    ("offline", "disjoint"),
    ("offline", "blurry10"),
]


# Settings a mode refuses before training, each refusal tested in its own test file.
REFUSED = {("expert_gate", "online")}  # the gate trains on the whole task first


@pytest.mark.parametrize(
    "mode,stream,exp",
    [
        (mode, stream, exp)
        for mode in METHODS.names()
        for stream, exp in SETTINGS
        if (mode, stream) not in REFUSED
    ],
)
def test_every_mode_runs_every_task_and_learns(tmp_path, mode, stream, exp):
    summary = run_in_process(tmp_path, [f"mode={mode}", f"stream={stream}", f"exp={exp}", *TINY])
    tasks = pd.read_csv(tmp_path / "results" / "tasks.csv")
    n_tasks = 1 if mode == "joint" else 5
    assert summary["status"] == "complete" and summary["tasks_done"] == n_tasks
    if METHODS.get(mode).uses_memory:
        assert (tasks.memory_size <= 100).all() and tasks.memory_size.iloc[-1] > 0
    else:
        assert (tasks.memory_size == 0).all()
    expected = [2, 4, 6, 8, 10] if exp == "disjoint" else [10] * 5
    assert tasks.n_seen_classes.tolist() == expected[-n_tasks:]
    # 10 classes: chance is 10%. finetune, the lower bound, knows about its last task's classes;
    # so does A-GEM in class-incremental runs with one head (as in Mammoth's seq-CIFAR-10 table:
    # A-GEM 20.0, SGD 19.6): its projection guards old tasks' loss, not their logits' scale.
    # from_scratch is finetune with a fresh model at every task: it, too, knows the last task's
    # classes only (two of ten, ~19.5% on digits), by design
    assert summary["A_last"] > (15.0 if mode in ("finetune", "agem", "from_scratch") else 20.0)
