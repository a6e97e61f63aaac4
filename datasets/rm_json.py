"""Replay the Rainbow-Memory paper's exact task streams from its collection JSON files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from rainbow_runner.datasets.base import DatasetError
from rainbow_runner.datasets.splits import TaskSplit

RECORD_KEYS = ("file_name", "klass", "label")


def find_split_files(split_dir: str, dataset: str, exp: str, seed: int) -> tuple[Path, int]:
    """The folder holding `{ds}_train_{exp}_rand{seed}_cls{N}_task0.json` and its N."""
    folders = [Path(split_dir), Path(split_dir) / dataset]
    stem = f"{dataset}_train_{exp}_rand{seed}_cls"
    found = sorted(
        (folder, int(match.group(1)))
        for folder in folders
        if folder.is_dir()
        for path in folder.glob(f"{stem}*_task0.json")
        if (match := re.fullmatch(rf"{re.escape(stem)}(\d+)_task0\.json", path.name))
    )
    if not found:
        available = available_stems(folders, f"{dataset}_train_*_task0.json")
        raise DatasetError(
            f"No split file {stem}<N>_task0.json in {' or '.join(map(str, folders))}. "
            f"Available for {dataset}: {', '.join(available) or 'none'}."
        )
    if len({n for _, n in found}) > 1:
        raise DatasetError(f"Several class-per-task counts for {stem}*: {found}; keep one.")
    return found[0]


def _read_records(path: Path) -> list[dict]:
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"Cannot read split file {path}: {error}") from error
    if not isinstance(records, list) or not all(
        isinstance(record, dict) and all(key in record for key in RECORD_KEYS) for record in records
    ):
        raise DatasetError(f"{path} is not a list of {{file_name, klass, label}} records.")
    return records


def _class_order(records: list[dict], class_names: list[str], source: str) -> torch.Tensor:
    """class_order[label] = index of the label's klass in class_names, checked one-to-one."""
    class_index = {name: index for index, name in enumerate(class_names)}
    label_of: dict[str, int] = {}
    for record in records:
        klass, label = str(record["klass"]), int(record["label"])
        if label_of.setdefault(klass, label) != label:
            raise DatasetError(
                f"{source}: class {klass!r} has labels {label_of[klass]} and {label}."
            )
    unknown = sorted(set(label_of) - set(class_index))
    if unknown:
        raise DatasetError(f"{source}: classes {unknown[:5]} are not in the data set's classes.")
    n_classes = len(class_names)
    if sorted(label_of.values()) != list(range(n_classes)):
        raise DatasetError(
            f"{source}: labels {sorted(label_of.values())} are not one per class "
            f"0..{n_classes - 1}."
        )
    order = torch.empty(n_classes, dtype=torch.int64)
    for klass, label in label_of.items():
        order[label] = class_index[klass]
    return order


def read_rm_split(
    split_dir: str,
    dataset: str,
    exp: str,
    seed: int,
    n_tasks: int,
    train_files: list[str],
    class_names: list[str],
) -> TaskSplit:
    """Build the TaskSplit of the paper's files `{ds}_train_{exp}_rand{seed}_cls{N}_task{i}.json`.

    Args:
        split_dir: folder of the JSON files, or its parent holding a `{dataset}/` folder.
        train_files: the data set's train file names (`train/<klass>/<file>.png`), one per sample.
        class_names: the data set's class names, indexed by its original labels.
    """
    folder, per_task = find_split_files(split_dir, dataset, exp, seed)
    stem = f"{dataset}_train_{exp}_rand{seed}_cls{per_task}_task"
    n_files = len(list(folder.glob(f"{stem}*.json")))
    if n_files != n_tasks or per_task * n_tasks != len(class_names):
        raise DatasetError(
            f"{folder}/{stem}*.json: {n_files} task files of {per_task} classes, but the run asks "
            f"for n_tasks={n_tasks} over {len(class_names)} classes."
        )
    paths = [folder / f"{stem}{task}.json" for task in range(n_tasks)]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DatasetError(f"Missing split files: {', '.join(missing)}.")
    tasks_records = [_read_records(path) for path in paths]
    class_order = _class_order(
        [record for records in tasks_records for record in records],
        class_names,
        f"{folder}/{stem}*",
    )
    position = {name: index for index, name in enumerate(train_files)}
    train_tasks = []
    for path, records in zip(paths, tasks_records, strict=True):
        names = [record["file_name"] for record in records]
        unknown = [name for name in names if name not in position]
        if unknown:
            raise DatasetError(
                f"{path}: {len(unknown)} file names are not in the data set's train files, "
                f"e.g. {unknown[:3]} (the data set lists e.g. {train_files[:2]})."
            )
        train_tasks.append(torch.tensor([position[name] for name in names], dtype=torch.int64))
    blurry = exp != "disjoint"
    exposed = [len(class_names) if blurry else (task + 1) * per_task for task in range(n_tasks)]
    return TaskSplit(class_order, train_tasks, exposed, per_task)


def available_stems(folders: list[Path], pattern: str) -> list[str]:
    """The split-file stems (names less `_task<i>.json`) matching pattern, to name in errors."""
    return sorted(
        {
            re.sub(r"_task\d+\.json$", "", path.name)
            for folder in folders
            if folder.is_dir()
            for path in folder.glob(pattern)
        }
    )
