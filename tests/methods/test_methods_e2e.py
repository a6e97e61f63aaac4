"""Every registered mode end to end on digits, in both streams and both split kinds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.arch_evidence import digits_vit
from rainbow_runner.datasets.scenarios import CLASS_INCREMENTAL
from rainbow_runner.methods import METHODS
from tests.conftest import TINY, run_in_process

SETTINGS = [
    ("online", "disjoint"),
    ("online", "blurry10"),
    ("offline", "disjoint"),
    ("offline", "blurry10"),
]


# Settings a mode refuses before training, each refusal tested in its own test file: pnn runs
# task_incremental only (tests/methods/test_methods_pnn.py), expert_gate offline only (its gate
# trains on the whole task first).
REFUSED = {("expert_gate", "online")}
CLASS_INCREMENTAL_MODES = [
    mode for mode in METHODS.names() if CLASS_INCREMENTAL in METHODS.get(mode).scenarios
]
# Modes that need another model: l2p prompts a frozen ViT, here one pretrained for seconds on
# digits' training split (the stand-in for the ImageNet-pretrained ViT the method assumes; a
# random frozen ViT gives chance-level features), with the head on its [CLS] output.
# cwr_star freezes the backbone after the first task (Avalanche's default): offline, the first
# task's single tiny epoch would be all its features ever learn (A_last 13.9 at n_epoch=1, 71.9
# at 3 on offline blurry10), so its offline runs take three.
EXTRA = {"l2p": ["model=vit_tiny", "mode.head_type=token"], "cwr_star": ["n_epoch=3"]}


@pytest.fixture(scope="module")
def pretrained_tiny_vit(tmp_path_factory) -> Path:
    """A vit_tiny backbone trained 8 epochs on digits' training images (~8 s on one core)."""
    return digits_vit(tmp_path_factory.mktemp("vit") / "vit_tiny_digits.pt")


@pytest.mark.parametrize(
    "mode,stream,exp",
    [
        (mode, stream, exp)
        for mode in CLASS_INCREMENTAL_MODES
        for stream, exp in SETTINGS
        if (mode, stream) not in REFUSED
    ],
)
def test_every_mode_runs_every_task_and_learns(tmp_path, request, mode, stream, exp):
    extra = EXTRA.get(mode, [])
    if mode == "l2p":
        extra = [*extra, f"model.weights={request.getfixturevalue('pretrained_tiny_vit')}"]
    given = {override.split("=")[0] for override in extra}
    tiny = [override for override in TINY if override.split("=")[0] not in given]
    overrides = [f"mode={mode}", f"stream={stream}", f"exp={exp}", *extra, *tiny]
    summary = run_in_process(tmp_path, overrides)
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
    # l2p is rehearsal-free with one head: on 8x8 digits and a tiny ViT its frozen features
    # barely separate old from new classes, and it, too, mostly knows the last task's classes.
    weak = ("finetune", "agem", "from_scratch", "l2p")
    assert summary["A_last"] > (15.0 if mode in weak else 20.0)
