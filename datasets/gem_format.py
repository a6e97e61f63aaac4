"""GEM-format files (facebookresearch/GradientEpisodicMemory's data/*.pt), read and written.

A file is `torch.save([train_tasks, test_tasks])`, each task `[descriptor, X, y]`: X float
(N, D) in [0, 1] (D = C*H*W: 784 for MNIST, 3072 for CIFAR), y int64 (N,). It is read with
`torch.load(weights_only=True)`, so a pickle holding any other object is refused, never run.
Tasks that share one label set form a domain-incremental stream (permuted/rotated MNIST); tasks
with disjoint label sets of equal size a class split in file order (task_incremental or
class_incremental, as GEM's CIFAR-100).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from rainbow_runner.datasets.base import DatasetError, ImageData
from rainbow_runner.datasets.folder import channel_stats
from rainbow_runner.datasets.scenarios import DOMAIN_INCREMENTAL, TASK_INCREMENTAL
from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.datasets.transformed import check_samples_per_task, domain_split

FORMAT = (
    "torch.save([train_tasks, test_tasks]) with each task "
    "[descriptor, X float (N, D) in [0, 1], y int64 (N,)]"
)


def image_shape(n_features: int) -> tuple[int, int, int]:
    """(C, H, W) of a flat row: one channel if D is a square, else three (CIFAR)."""
    for channels in (1, 3):
        side = math.isqrt(n_features // channels)
        if n_features % channels == 0 and side * side * channels == n_features:
            return channels, side, side
    raise DatasetError(
        f"GEM-format rows of {n_features} values are not square images of 1 or 3 channels."
    )


def _load(path: Path) -> object:
    if not path.is_file():
        raise DatasetError(f"dataset.path={path}: no such file (a GEM-format file: {FORMAT}).")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for foreign objects, anything for bad bytes
        raise DatasetError(
            f"dataset.path={path} is not a GEM-format file that loads with weights_only=True "
            f"(tensors, numbers, strings and lists only; {FORMAT}): "
            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        ) from error


def _checked_tasks(content: object, path: Path) -> tuple[list, list]:
    """The train and test task lists, each task (X, y) checked, or a DatasetError."""
    if not (isinstance(content, (list, tuple)) and len(content) == 2):
        raise DatasetError(f"dataset.path={path} does not hold [train_tasks, test_tasks]: {FORMAT}")
    checked = []
    for part, tasks in zip(("train", "test"), content, strict=True):
        if not isinstance(tasks, (list, tuple)) or not tasks:
            raise DatasetError(f"dataset.path={path}: {part}_tasks is not a non-empty list.")
        rows = []
        for number, task in enumerate(tasks):
            ok = isinstance(task, (list, tuple)) and len(task) == 3
            x, y = (task[1], task[2]) if ok else (None, None)
            ok = ok and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
            ok = ok and x.is_floating_point() and x.dim() == 2 and y.dim() == 1
            ok = ok and len(x) == len(y) and not y.is_floating_point()
            if ok and len(x) and (x.min() < 0 or x.max() > 1):
                ok = False
            if not ok:
                raise DatasetError(f"dataset.path={path}: {part} task {number} is not {FORMAT}.")
            rows.append((x, y.long()))
        checked.append(rows)
    if len(checked[0]) != len(checked[1]):
        raise DatasetError(
            f"dataset.path={path}: {len(checked[0])} training tasks, {len(checked[1])} test tasks."
        )
    return checked[0], checked[1]


def read_gem_file(
    path: str | Path, seed: int = 0, samples_per_task: float | None = None
) -> tuple[ImageData, TaskSplit]:
    """The file's tasks as uint8 images and the split they form (see the module docstring).

    samples_per_task draws that many of each task's training rows (GEM's main.py), seeded.
    """
    path = Path(path)
    train, test = _checked_tasks(_load(path), path)
    shape = image_shape(train[0][0].shape[1])
    generator = torch.Generator().manual_seed(int(seed))
    kept = []
    for x, y in train:
        per_task = check_samples_per_task(samples_per_task, len(y))
        drawn = torch.randperm(len(y), generator=generator)[:per_task] if samples_per_task else None
        kept.append((x, y) if drawn is None else (x[drawn], y[drawn]))
    label_sets = [set(y.unique().tolist()) for _, y in kept]
    n_classes = int(max(int(y.max()) for _, y in kept + test)) + 1

    def images(x: torch.Tensor) -> torch.Tensor:
        return (x * 255).round().to(torch.uint8).reshape(len(x), *shape)

    sizes = [len(y) for _, y in kept]
    starts = [sum(sizes[:task]) for task in range(len(sizes))]
    tasks = [torch.arange(s, s + n) for s, n in zip(starts, sizes, strict=True)]
    if all(labels == label_sets[0] for labels in label_sets):
        split = domain_split(n_classes, tasks)
        split.test_tasks = torch.cat(
            [torch.full((len(y),), t, dtype=torch.long) for t, (_, y) in enumerate(test)]
        )
    else:
        split = class_split_in_file_order(label_sets, tasks, n_classes, path)
    train_x = torch.cat([images(x) for x, _ in kept])
    mean, std = channel_stats(train_x)
    data = ImageData(
        name="gem_file",
        train_x=train_x,
        train_y=torch.cat([y for _, y in kept]),
        test_x=torch.cat([images(x) for x, _ in test]),
        test_y=torch.cat([y for _, y in test]),
        class_names=[str(label) for label in range(n_classes)],
        mean=mean,
        std=std,
        hflip=False,
    )
    return data, split


def class_split_in_file_order(
    label_sets: list[set[int]], tasks: list[torch.Tensor], n_classes: int, path: Path
) -> TaskSplit:
    """Tasks with disjoint label sets of equal size: their classes in file order."""
    size = len(label_sets[0])
    union = set().union(*label_sets)
    if any(len(labels) != size for labels in label_sets) or len(union) != size * len(tasks):
        raise DatasetError(
            f"dataset.path={path}: the tasks neither share one label set (domain-incremental) "
            f"nor hold disjoint label sets of equal size (a class split); sizes "
            f"{[len(labels) for labels in label_sets]}."
        )
    if union != set(range(n_classes)):
        raise DatasetError(f"dataset.path={path}: labels must be 0..{len(union) - 1}.")
    order = torch.tensor([label for labels in label_sets for label in sorted(labels)])
    exposed = [(task + 1) * size for task in range(len(tasks))]
    return TaskSplit(order, tasks, exposed, size, scenario=TASK_INCREMENTAL)


def write_gem_file(data: ImageData, split: TaskSplit, path: str | Path, descriptors: list) -> None:
    """Our stream as a GEM-format file: task t's training rows and its test rows."""

    def rows(images: torch.Tensor) -> torch.Tensor:
        return images.reshape(len(images), -1).float() / 255.0

    train_tasks, test_tasks = [], []
    test_groups = split.test_groups(split.relabel(data.test_y))
    for task, indices in enumerate(split.train_tasks):
        train_tasks.append([descriptors[task], rows(data.train_x[indices]), data.train_y[indices]])
        mine = torch.nonzero(test_groups == task).flatten()
        test_tasks.append([descriptors[task], rows(data.test_x[mine]), data.test_y[mine]])
    torch.save([train_tasks, test_tasks], path)


__all__ = ["DOMAIN_INCREMENTAL", "read_gem_file", "write_gem_file"]
