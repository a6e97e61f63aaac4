"""Domain-incremental streams: permuted_<name> and rotated_<name> for any image data set.

Follows GEM's data scripts (facebookresearch/GradientEpisodicMemory, data/mnist_permutations.py
and data/mnist_rotations.py): every task, task 0 included, gets its own pixel permutation (none
is the identity); task t's rotation angle is drawn uniformly in the t-th of n_tasks equal slices
of [0, 90) degrees. Each task trains on its own draw of samples_per_task training samples (GEM's
main.py, 1,000 in the paper; all of them when None) and is tested on the whole test set under
its transform. Everything is drawn from one generator seeded by split_seed.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from rainbow_runner.datasets.base import DatasetError, ImageData
from rainbow_runner.datasets.folder import channel_stats
from rainbow_runner.datasets.scenarios import DOMAIN_INCREMENTAL
from rainbow_runner.datasets.splits import TaskSplit

TRANSFORMS: tuple[str, ...] = ("permuted", "rotated")
MAX_ROTATION = 90.0  # the default of GEM's data script's --max_rot (--min_rot 0)
TUNING_SEED_OFFSET = 1_000_003  # a tuning stream's transforms: never those of a reported stream


def transform_of(name: str) -> tuple[str, str] | None:
    """('permuted', 'digits') for dataset=permuted_digits; None for a plain data set."""
    kind, _, base = name.partition("_")
    return (kind, base) if kind in TRANSFORMS and base else None


def task_permutations(n_pixels: int, n_tasks: int, seed: int) -> list[torch.Tensor]:
    """One fixed pixel permutation per task, reproducible from seed."""
    generator = torch.Generator().manual_seed(int(seed))
    return [torch.randperm(n_pixels, generator=generator) for _ in range(n_tasks)]


def task_angles(n_tasks: int, seed: int, max_rotation: float = MAX_ROTATION) -> list[float]:
    """Task t's angle: uniform in [t, t + 1) * max_rotation / n_tasks degrees (GEM)."""
    if not 0 < float(max_rotation) <= 360:
        raise DatasetError(
            f"dataset.max_rotation={max_rotation} must be in (0, 360] degrees (GEM's data "
            f"script: 90, its run script: 180)."
        )
    generator = torch.Generator().manual_seed(int(seed))
    width = float(max_rotation) / n_tasks
    return [(t + float(torch.rand((), generator=generator))) * width for t in range(n_tasks)]


def permute_images(images: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images with their H*W pixel positions permuted (the same in every channel)."""
    n, c, h, w = images.shape
    return images.reshape(n, c, h * w)[:, :, permutation].reshape(n, c, h, w)


def rotate_images(images: torch.Tensor, angle: float) -> torch.Tensor:
    """(N, C, H, W) uint8 images rotated by angle degrees about the centre (nearest pixel, as
    PIL's default in GEM's script; corners filled with 0)."""
    from torchvision.transforms.functional import rotate

    return rotate(images, angle)


def check_samples_per_task(samples_per_task: float | None, n_train: int) -> int:
    """An int (at most the training set), a fraction in (0, 1], or None (all): a count."""
    if samples_per_task is None:
        return n_train
    if isinstance(samples_per_task, bool) or not isinstance(samples_per_task, (int, float)):
        raise ValueError(
            f"dataset.samples_per_task={samples_per_task!r} must be a whole number of samples "
            f"(1..{n_train}), a fraction in (0, 1] or null (all {n_train})."
        )
    if isinstance(samples_per_task, float) and 0 < samples_per_task <= 1:
        return max(1, math.floor(samples_per_task * n_train))
    if isinstance(samples_per_task, int) and 1 <= samples_per_task <= n_train:
        return samples_per_task
    raise ValueError(
        f"dataset.samples_per_task={samples_per_task} must be a whole number of samples "
        f"(1..{n_train}), a fraction in (0, 1] or null (all {n_train})."
    )


def transformed_stream(
    data: ImageData,
    kind: str,
    n_tasks: int,
    seed: int,
    samples_per_task: float | None = None,
    max_rotation: float = MAX_ROTATION,
) -> tuple[ImageData, TaskSplit]:
    """The data set as n_tasks transformed copies, and the domain-incremental split over them.

    Training rows are task 0's samples, then task 1's, ...; test rows likewise (the whole test
    set per task). Labels keep the data set's class ids (every task has every class).
    """
    if kind not in TRANSFORMS:
        raise DatasetError(f"unknown transform {kind!r}; valid ones are {', '.join(TRANSFORMS)}.")
    if not isinstance(data.train_x, torch.Tensor):
        raise DatasetError(
            f"{kind}_{data.name}: transformed streams need an in-memory data set "
            f"(digits, mnist, fashion_mnist, cifar10, cifar100), not a lazy folder."
        )
    n_train = len(data.train_y)
    per_task = check_samples_per_task(samples_per_task, n_train)
    generator = torch.Generator().manual_seed(int(seed) + 1)  # the draws, apart from transforms
    _, _, h, w = data.train_x.shape
    if kind == "permuted":
        transforms = [
            lambda x, p=p: permute_images(x, p) for p in task_permutations(h * w, n_tasks, seed)
        ]
    else:
        transforms = [
            lambda x, a=a: rotate_images(x, a) for a in task_angles(n_tasks, seed, max_rotation)
        ]
    train_x, train_y, test_x, tasks = [], [], [], []
    for task, transform in enumerate(transforms):
        drawn = torch.randperm(n_train, generator=generator)[:per_task]
        train_x.append(transform(data.train_x[drawn]))
        train_y.append(data.train_y[drawn])
        test_x.append(transform(data.test_x))
        tasks.append(torch.full((len(data.test_y),), task, dtype=torch.long))
    sizes = [len(y) for y in train_y]
    starts = [sum(sizes[:task]) for task in range(n_tasks)]
    stream_x = torch.cat(train_x)
    mean, std = channel_stats(stream_x)  # of the stream itself (rotation adds black corners)
    stream = replace(
        data,
        name=f"{kind}_{data.name}",
        mean=mean,
        std=std,
        train_x=stream_x,
        train_y=torch.cat(train_y),
        test_x=torch.cat(test_x),
        test_y=data.test_y.repeat(n_tasks),
        train_files=None,
        test_files=None,
    )
    split = domain_split(
        data.n_classes, [torch.arange(s, s + n) for s, n in zip(starts, sizes, strict=True)]
    )
    split.test_tasks = torch.cat(tasks)
    return stream, split


def held_out_validation(data: ImageData, seed: int) -> ImageData:
    """The training set split in two: as many validation rows as the test set has (drawn by
    seed) become the "test" set, the rest the training set; the real test set is left out."""
    if not isinstance(data.train_x, torch.Tensor):
        raise DatasetError(f"{data.name}: a tuning stream needs an in-memory data set.")
    n_validation = min(len(data.test_y), len(data.train_y) // 2)
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(int(seed)))
    validation, train = order[:n_validation], order[n_validation:]
    return replace(
        data,
        train_x=data.train_x[train],
        train_y=data.train_y[train],
        test_x=data.train_x[validation],
        test_y=data.train_y[validation],
    )


def tuning_stream(
    data: ImageData,
    kind: str,
    n_tasks: int,
    seed: int,
    samples_per_task: float | None = None,
    max_rotation: float = MAX_ROTATION,
) -> tuple[ImageData, TaskSplit]:
    """A tuning run's stream (A-GEM's and BCL's protocol: tune on the first tasks, report on
    the rest): n_tasks transforms of their own seed, validated on held-out training rows."""
    tuning_seed = int(seed) + TUNING_SEED_OFFSET
    held_out = held_out_validation(data, tuning_seed)
    return transformed_stream(held_out, kind, n_tasks, tuning_seed, samples_per_task, max_rotation)


def domain_split(n_classes: int, train_tasks: list[torch.Tensor]) -> TaskSplit:
    """Every task exposes every class from the start (the head is full-sized at once)."""
    return TaskSplit(
        class_order=torch.arange(n_classes),
        train_tasks=train_tasks,
        exposed=[n_classes] * len(train_tasks),
        classes_per_task=n_classes,
        scenario=DOMAIN_INCREMENTAL,
    )
