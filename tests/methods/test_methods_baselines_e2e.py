"""Each baseline end to end on digits, in both streams and both split kinds."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import TINY, run_in_process
from tests.methods.test_methods_common import BASELINES

SETTINGS = [
    ("online", "disjoint"),
    ("online", "blurry10"),
    ("offline", "disjoint"),
    ("offline", "blurry10"),
]


@pytest.mark.parametrize("stream,exp", SETTINGS)
@pytest.mark.parametrize("mode", BASELINES)
def test_baseline_runs_every_task_and_learns(tmp_path, mode, stream, exp):
    summary = run_in_process(tmp_path, [f"mode={mode}", f"stream={stream}", f"exp={exp}", *TINY])
    tasks = pd.read_csv(tmp_path / "results" / "tasks.csv")
    assert summary["status"] == "complete" and summary["tasks_done"] == 5
    assert (tasks.memory_size <= 100).all() and tasks.memory_size.iloc[-1] > 0
    expected = [2, 4, 6, 8, 10] if exp == "disjoint" else [10] * 5
    assert tasks.n_seen_classes.tolist() == expected
    assert summary["A_last"] > 20.0  # 10 classes: chance is 10%
