"""Reading the paper's collection JSON files, and checking make_split against them."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch

from rainbow_runner.datasets import DatasetError, make_split, read_rm_split

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO_ROOT.parent / "shared" / "rm_collections"
needs_collections = pytest.mark.skipif(
    not COLLECTIONS.is_dir(), reason=f"paper split files absent ({COLLECTIONS})"
)
CLASSES = ["ant", "bee", "cat", "dog"]
ORDER = ["dog", "ant", "cat", "bee"]  # label -> class name in the files


def write_toy_split(folder: Path, exp: str = "disjoint", seed: int = 1) -> list[list[str]]:
    """Two tasks of two classes; returns each task's file names in stream order."""
    folder.mkdir(parents=True, exist_ok=True)
    streams = []
    for task in range(2):
        records = [
            {"klass": klass, "file_name": f"train/{klass}/{index:04d}.png", "label": label}
            for index in (3, 1, 2)
            for label, klass in enumerate(ORDER)
            if label // 2 == task
        ]
        name = f"toy_train_{exp}_rand{seed}_cls2_task{task}.json"
        (folder / name).write_text(json.dumps(records))
        streams.append([record["file_name"] for record in records])
    return streams


def toy_train_files() -> list[str]:
    return [f"train/{klass}/{index:04d}.png" for klass in CLASSES for index in range(1, 5)]


def test_read_toy_disjoint(tmp_path: Path) -> None:
    streams = write_toy_split(tmp_path / "toy")
    files = toy_train_files()
    split = read_rm_split(str(tmp_path), "toy", "disjoint", 1, 2, files, CLASSES)
    assert [CLASSES[i] for i in split.class_order] == ORDER
    assert [[files[i] for i in task] for task in split.train_tasks] == streams
    assert split.exposed == [2, 4] and split.classes_per_task == 2
    original = torch.tensor([CLASSES.index(name.split("/")[1]) for name in files])
    relabelled = split.relabel(original)
    for task, indices in enumerate(split.train_tasks):
        assert split.label_group(relabelled[indices]).unique().tolist() == [task]


def test_blurry_exposes_all_classes(tmp_path: Path) -> None:
    write_toy_split(tmp_path, exp="blurry10", seed=2)
    split = read_rm_split(str(tmp_path), "toy", "blurry10", 2, 2, toy_train_files(), CLASSES)
    assert split.exposed == [4, 4]


def test_errors_are_clear(tmp_path: Path) -> None:
    write_toy_split(tmp_path)
    files = toy_train_files()
    with pytest.raises(DatasetError, match="Available for toy: toy_train_disjoint_rand1_cls2"):
        read_rm_split(str(tmp_path), "toy", "blurry10", 1, 2, files, CLASSES)
    with pytest.raises(DatasetError, match="2 task files .* n_tasks=4"):
        read_rm_split(str(tmp_path), "toy", "disjoint", 1, 4, files, CLASSES)
    with pytest.raises(DatasetError, match="not in the data set's train files"):
        read_rm_split(str(tmp_path), "toy", "disjoint", 1, 2, files[1:], CLASSES)
    with pytest.raises(DatasetError, match="not in the data set's classes"):
        read_rm_split(str(tmp_path), "toy", "disjoint", 1, 2, files, ["ant", "bee", "cat", "eel"])
    (tmp_path / "toy_train_disjoint_rand1_cls2_task1.json").unlink()
    with pytest.raises(DatasetError, match="1 task files"):
        read_rm_split(str(tmp_path), "toy", "disjoint", 1, 2, files, CLASSES)


def paper_tasks(exp: str, seed: int) -> list[list[dict]]:
    paths = sorted(
        (COLLECTIONS / "cifar10").glob(f"cifar10_train_{exp}_rand{seed}_cls2_task*.json")
    )
    return [json.loads(path.read_text()) for path in paths]


def major_shares(task_of_class_samples: dict[str, Counter]) -> dict[str, float]:
    return {k: max(c.values()) / sum(c.values()) for k, c in task_of_class_samples.items()}


@needs_collections
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_blurry10_matches_paper_files(seed: int) -> None:
    tasks = paper_tasks("blurry10", seed)
    assert len(tasks) == 5
    names = [record["file_name"] for task in tasks for record in task]
    assert len(names) == len(set(names))  # exactly once in the paper's files
    per_class: dict[str, Counter] = defaultdict(Counter)
    for task, records in enumerate(tasks):
        for record in records:
            per_class[record["klass"]][task] += 1
    paper = major_shares(per_class)

    classes = sorted(per_class)
    counts = [sum(per_class[k].values()) for k in classes]
    labels = torch.arange(len(classes)).repeat_interleave(torch.tensor(counts))
    split = make_split(labels, len(classes), 5, 10, seed)
    everything = torch.cat(split.train_tasks)
    assert torch.equal(everything.sort().values, torch.arange(len(labels)))
    ours_counts: dict[str, Counter] = defaultdict(Counter)
    for task, indices in enumerate(split.train_tasks):
        for label, n in zip(*labels[indices].unique(return_counts=True), strict=True):
            ours_counts[classes[int(label)]][task] = int(n)
    ours = major_shares(ours_counts)
    paper_mean, ours_mean = sum(paper.values()) / 10, sum(ours.values()) / 10
    assert abs(paper_mean - ours_mean) < 0.01
    assert all(abs(share - paper_mean) < 0.01 for share in ours.values())
    assert all(abs(share - ours_mean) < 0.01 for share in paper.values())


@needs_collections
def test_read_paper_cifar10_blurry10() -> None:
    tasks = paper_tasks("blurry10", 1)
    names = sorted(record["file_name"] for task in tasks for record in task)
    class_names = sorted({record["klass"] for task in tasks for record in task})
    split = read_rm_split(str(COLLECTIONS), "cifar10", "blurry10", 1, 5, names, class_names)
    assert split.n_tasks == 5 and split.classes_per_task == 2 and split.exposed == [10] * 5
    for task, records in zip(split.train_tasks, tasks, strict=True):
        assert [names[i] for i in task.tolist()] == [r["file_name"] for r in records]
    original = torch.tensor([class_names.index(name.split("/")[1]) for name in names])
    relabelled = split.relabel(original)
    for task, records in zip(split.train_tasks, tasks, strict=True):
        assert relabelled[task].tolist() == [r["label"] for r in records]
    everything = torch.cat(split.train_tasks)
    assert torch.equal(everything.sort().values, torch.arange(len(names)))
