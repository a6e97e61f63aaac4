"""Class-incremental task splits: disjoint and blurryN, reproducible from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rainbow_runner.datasets.scenarios import CLASS_INCREMENTAL


@dataclass
class TaskSplit:
    """Which training samples each task streams, and which labels it exposes.

    Labels are positions in ``class_order``: task i of a disjoint split owns labels
    [i * classes_per_task, (i + 1) * classes_per_task).
    """

    class_order: torch.Tensor
    train_tasks: list[torch.Tensor]
    exposed: list[int]
    classes_per_task: int
    # True (i-Blurry): an online stream exposes a class when its first sample arrives; exposed[t]
    # then counts the classes seen by the end of period t (offline runs expose those at its start).
    stream_exposure: bool = False
    scenario: str = CLASS_INCREMENTAL
    # domain_incremental: each test sample's task (its input transform); None: the task is the
    # one that owns the sample's class.
    test_tasks: torch.Tensor | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.train_tasks)

    @property
    def n_classes(self) -> int:
        return len(self.class_order)

    def relabel(self, original_labels: torch.Tensor) -> torch.Tensor:
        """Map original class ids to their positions in the class order."""
        position = torch.empty_like(self.class_order)
        position[self.class_order] = torch.arange(len(self.class_order))
        return position[original_labels]

    @property
    def n_groups(self) -> int:
        """Columns of the accuracy matrix: the tasks of the test samples."""
        if self.test_tasks is not None:
            return int(self.test_tasks.max()) + 1
        return self.n_classes // self.classes_per_task

    def label_group(self, labels: torch.Tensor) -> torch.Tensor:
        """The task whose classes a label belongs to (the columns of the accuracy matrix)."""
        return labels // self.classes_per_task

    def test_groups(self, test_labels: torch.Tensor) -> torch.Tensor:
        """Each test sample's task: its transform's (domain_incremental), else its class's."""
        if self.test_tasks is not None:
            return self.test_tasks.to(test_labels.device)
        return self.label_group(test_labels)

    def as_joint(self) -> TaskSplit:
        """All tasks' samples as one task exposing every class (the joint upper bound)."""
        everything = torch.cat(self.train_tasks)
        return TaskSplit(
            self.class_order,
            [everything],
            [self.n_classes],
            self.classes_per_task,
            scenario=self.scenario,
            test_tasks=self.test_tasks,
        )


def check_split_arguments(n_classes: int, n_tasks: int, blurry_pct: float) -> None:
    """Reject task counts and blurry levels that cannot form a split, naming the valid ones."""
    if n_tasks <= 0 or n_classes % n_tasks != 0:
        divisors = [d for d in range(1, n_classes + 1) if n_classes % d == 0]
        raise ValueError(
            f"n_tasks={n_tasks} does not divide the {n_classes} classes into equal tasks; "
            f"valid values are {divisors}."
        )
    if not 0 <= blurry_pct <= 100:
        raise ValueError(f"blurry level {blurry_pct} is outside 0..100 (e.g. exp=blurry10).")


def check_class_order(class_order: list[int], n_classes: int) -> None:
    """A given class order must name every class id 0..n_classes-1 exactly once."""
    if sorted(class_order) != list(range(n_classes)):
        raise ValueError(
            f"exp.class_order={list(class_order)} is not an order of the {n_classes} class ids "
            f"0..{n_classes - 1} (each exactly once); use null for a seeded shuffle."
        )


def make_split(
    train_labels: torch.Tensor,
    n_classes: int,
    n_tasks: int,
    blurry_pct: float,
    seed: int,
    class_order: list[int] | None = None,
) -> TaskSplit:
    """Shuffle the class order by seed (or take the given one) and deal samples to tasks,
    disjoint or blurry.

    Blurry: every class keeps (100 - blurry_pct)% of its samples in its own task; the rest of
    all classes form one pool, shuffled and dealt so that task sizes equal the disjoint ones.
    Every sample appears exactly once over the tasks.
    """
    check_split_arguments(n_classes, n_tasks, blurry_pct)
    generator = torch.Generator().manual_seed(int(seed))
    shuffled = torch.randperm(n_classes, generator=generator)  # drawn either way: same streams
    if class_order is None:
        class_order = shuffled
    else:
        check_class_order(class_order, n_classes)
        class_order = torch.tensor(class_order, dtype=torch.long)
    classes_per_task = n_classes // n_tasks
    split = TaskSplit(class_order, [], [], classes_per_task)
    labels = split.relabel(train_labels)
    task_of_sample = labels // classes_per_task

    kept_per_task: list[list[torch.Tensor]] = [[] for _ in range(n_tasks)]
    pool: list[torch.Tensor] = []
    keep_fraction = 1.0 - blurry_pct / 100.0
    for label in range(n_classes):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_keep = int(round(keep_fraction * len(members)))
        kept_per_task[label // classes_per_task].append(members[:n_keep])
        pool.append(members[n_keep:])

    pool_all = torch.cat(pool)
    pool_all = pool_all[torch.randperm(len(pool_all), generator=generator)]
    task_sizes = torch.bincount(task_of_sample, minlength=n_tasks).tolist()
    start = 0
    for task in range(n_tasks):
        kept = torch.cat(kept_per_task[task])
        n_from_pool = task_sizes[task] - len(kept)
        task_indices = torch.cat([kept, pool_all[start : start + n_from_pool]])
        start += n_from_pool
        split.train_tasks.append(
            task_indices[torch.randperm(len(task_indices), generator=generator)]
        )
        blurry = blurry_pct > 0
        split.exposed.append(n_classes if blurry else (task + 1) * classes_per_task)
    return split
