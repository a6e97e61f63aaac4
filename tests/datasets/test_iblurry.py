"""i-Blurry-N-M streams: generated from a seed, and read from the paper's collection files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rainbow_runner.datasets import load_dataset
from rainbow_runner.datasets.base import DatasetError
from rainbow_runner.datasets.iblurry import make_iblurry_split, read_iblurry_split


@pytest.fixture(scope="module")
def digit_labels() -> torch.Tensor:
    return load_dataset("digits", "./data", False, None).train_y


def periods_of_classes(labels: torch.Tensor, split) -> torch.Tensor:
    """counts[t, c]: samples of original class c in period t."""
    return torch.stack([torch.bincount(labels[t], minlength=10) for t in split.train_tasks])


def test_every_sample_once_and_disjoint_share(digit_labels: torch.Tensor) -> None:
    split = make_iblurry_split(digit_labels, 10, 5, 50, 10, seed=3)
    stream = torch.cat(split.train_tasks)
    assert torch.equal(stream.sort().values, torch.arange(len(digit_labels)))
    counts = periods_of_classes(digit_labels, split)
    periods_per_class = (counts > 0).sum(0)
    # 50% of 10 classes: 5 confined to one period, one per period; the other 5 blurry
    assert (periods_per_class == 1).sum() == 5
    confined = (periods_per_class == 1).nonzero().flatten()
    assert sorted(counts[:, confined].argmax(0).tolist()) == [0, 1, 2, 3, 4]
    assert (periods_per_class[periods_per_class > 1] == 5).all()  # spread over every other one


@pytest.mark.parametrize(("disjoint", "blurry"), [(50, 10), (0, 30), (50, 50), (20, 10)])
def test_blurry_share_within_one_sample(
    digit_labels: torch.Tensor, disjoint: int, blurry: int
) -> None:
    split = make_iblurry_split(digit_labels, 10, 5, disjoint, blurry, seed=1)
    counts = periods_of_classes(digit_labels, split)
    blurry_classes = ((counts > 0).sum(0) > 1).nonzero().flatten()
    n_disjoint = disjoint // 10 // 5 * 5  # whole classes per period, as the paper: 20% -> 0
    assert len(blurry_classes) == 10 - n_disjoint
    for klass in blurry_classes.tolist():
        total = int(counts[:, klass].sum())
        away = total - int(counts[:, klass].max())
        assert abs(away - blurry / 100 * total) <= 1, (klass, away, total)


def test_disjoint_100_is_class_incremental(digit_labels: torch.Tensor) -> None:
    split = make_iblurry_split(digit_labels, 10, 5, 100, 10, seed=1)
    counts = periods_of_classes(digit_labels, split)
    assert ((counts > 0).sum(0) == 1).all() and ((counts > 0).sum(1) == 2).all()
    assert split.exposed == [2, 4, 6, 8, 10]


def test_labels_follow_first_appearance(digit_labels: torch.Tensor) -> None:
    split = make_iblurry_split(digit_labels, 10, 5, 50, 10, seed=2)
    labels = split.relabel(digit_labels)[torch.cat(split.train_tasks)]
    first = [labels.tolist().index(label) for label in range(10)]
    assert first == sorted(first) and first[0] == 0
    ends = torch.cumsum(torch.tensor([len(t) for t in split.train_tasks]), 0)
    assert split.exposed == [int(labels[:end].max()) + 1 for end in ends]
    assert split.stream_exposure and split.exposed[-1] == 10


def test_reproducible_from_split_seed(digit_labels: torch.Tensor) -> None:
    one = make_iblurry_split(digit_labels, 10, 5, 50, 10, seed=7)
    again = make_iblurry_split(digit_labels, 10, 5, 50, 10, seed=7)
    other = make_iblurry_split(digit_labels, 10, 5, 50, 10, seed=8)
    assert all(torch.equal(a, b) for a, b in zip(one.train_tasks, again.train_tasks, strict=True))
    assert torch.equal(one.class_order, again.class_order)
    assert not torch.equal(one.train_tasks[0], other.train_tasks[0])


def test_bad_percentages_are_refused(digit_labels: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="exp.disjoint_classes=120"):
        make_iblurry_split(digit_labels, 10, 5, 120, 10, seed=1)
    with pytest.raises(ValueError, match="exp.blurry=-5"):
        make_iblurry_split(digit_labels, 10, 5, 50, -5, seed=1)


CLASSES = ["ant", "bee", "cat", "dog"]
FILES = [f"train/{klass}/{index:04d}.png" for klass in CLASSES for index in range(3)]
TRAIN_Y = torch.tensor([CLASSES.index(name.split("/")[1]) for name in FILES])
# The paper's format: {filepath, klass, label}, label fixed per class; two periods.
PERIODS = [
    [("cat", 0), ("ant", 0), ("cat", 1), ("dog", 2), ("cat", 2), ("ant", 1)],
    [("bee", 0), ("dog", 0), ("bee", 1), ("ant", 2), ("dog", 1), ("bee", 2)],
]
LABEL = {"cat": 0, "ant": 1, "dog": 2, "bee": 3}


def write_collection(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for task, period in enumerate(PERIODS):
        records = [
            {"filepath": f"train/{klass}/{index:04d}.png", "klass": klass, "label": LABEL[klass]}
            for klass, index in period
        ]
        (folder / f"toy_split2_n50_m10_rand1_task{task}.json").write_text(json.dumps(records))


def test_reads_the_papers_collection_files(tmp_path: Path) -> None:
    write_collection(tmp_path / "toy")
    split = read_iblurry_split(str(tmp_path), "toy", 2, 50, 10, 1, FILES, TRAIN_Y, CLASSES)
    streams = [[FILES[i] for i in task] for task in split.train_tasks]
    assert streams == [[f"train/{k}/{i:04d}.png" for k, i in period] for period in PERIODS]
    assert [CLASSES[c] for c in split.class_order] == ["cat", "ant", "dog", "bee"]
    assert split.exposed == [3, 4] and split.stream_exposure


def test_missing_collection_names_the_available_ones(tmp_path: Path) -> None:
    write_collection(tmp_path)
    with pytest.raises(DatasetError, match="toy_split2_n50_m30_rand1_task0.json.*toy_split2_n50"):
        read_iblurry_split(str(tmp_path), "toy", 2, 50, 30, 1, FILES, TRAIN_Y, CLASSES)
