"""make_split: disjoint and blurry task splits over random labels."""

from __future__ import annotations

import pytest
import torch

from rainbow_runner.datasets import make_split


def random_labels(n_classes: int = 10, n_samples: int = 5000, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, n_classes, (n_samples,), generator=torch.Generator().manual_seed(seed))


def task_of_sample(split, n_samples: int) -> torch.Tensor:
    owner = torch.full((n_samples,), -1, dtype=torch.int64)
    for task, indices in enumerate(split.train_tasks):
        owner[indices] = task
    return owner


@pytest.mark.parametrize("blurry", [0, 10, 30])
@pytest.mark.parametrize("n_classes,n_tasks", [(10, 5), (10, 2), (100, 5)])
def test_every_sample_exactly_once(blurry: int, n_classes: int, n_tasks: int) -> None:
    labels = random_labels(n_classes)
    split = make_split(labels, n_classes, n_tasks, blurry, seed=1)
    everything = torch.cat(split.train_tasks)
    assert torch.equal(everything.sort().values, torch.arange(len(labels)))
    disjoint_sizes = torch.bincount(split.relabel(labels) // split.classes_per_task).tolist()
    assert [len(task) for task in split.train_tasks] == disjoint_sizes


def test_disjoint_tasks_hold_only_their_classes() -> None:
    labels = random_labels()
    split = make_split(labels, 10, 5, 0, seed=2)
    for task, indices in enumerate(split.train_tasks):
        groups = split.label_group(split.relabel(labels[indices]))
        assert groups.unique().tolist() == [task]
    assert split.exposed == [2, 4, 6, 8, 10] and split.n_tasks == 5


def test_blurry10_major_share() -> None:
    labels = torch.arange(10).repeat_interleave(1000)
    split = make_split(labels, 10, 5, 10, seed=3)
    owner = task_of_sample(split, len(labels))
    own_task = split.label_group(split.relabel(labels))
    for klass in range(10):
        counts = torch.bincount(owner[labels == klass], minlength=5)
        share = counts.max().item() / counts.sum().item()
        assert 0.90 <= share <= 0.94  # 90% kept + about 1/5 of its 10% pooled share
        assert counts.argmax() == own_task[labels == klass][0]
        assert (counts > 0).all()  # every blurry task holds every class
    assert split.exposed == [10] * 5


def test_seeds_reproduce_and_differ() -> None:
    labels = random_labels()
    first, again = make_split(labels, 10, 5, 10, 7), make_split(labels, 10, 5, 10, 7)
    other = make_split(labels, 10, 5, 10, 8)
    assert torch.equal(first.class_order, again.class_order)
    assert all(torch.equal(a, b) for a, b in zip(first.train_tasks, again.train_tasks, strict=True))
    assert not torch.equal(first.train_tasks[0], other.train_tasks[0])


@pytest.mark.parametrize("n_tasks,blurry", [(3, 0), (0, 0), (-1, 10), (5, -1), (5, 101)])
def test_bad_arguments(n_tasks: int, blurry: float) -> None:
    with pytest.raises(ValueError):
        make_split(random_labels(), 10, n_tasks, blurry, seed=1)


def test_a_given_class_order_is_kept_and_a_bad_one_is_refused():
    labels = torch.arange(100) % 10
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    split = make_split(labels, 10, 5, 0.0, seed=1, class_order=order)
    assert split.class_order.tolist() == order
    assert sorted(labels[split.train_tasks[0]].unique().tolist()) == [1, 3]  # task 0: 3 and 1
    shuffled = make_split(labels, 10, 5, 0.0, seed=1)
    assert [len(t) for t in split.train_tasks] == [len(t) for t in shuffled.train_tasks]
    with pytest.raises(ValueError, match=r"exp.class_order=\[0, 0, 1\] is not an order"):
        make_split(labels, 10, 5, 0.0, seed=1, class_order=[0, 0, 1])
