"""Permuted and rotated streams: fixed per task, reproducible from split_seed, GEM's draws."""

from __future__ import annotations

import pytest
import torch

from rainbow_runner.datasets import load_dataset
from rainbow_runner.datasets.base import DatasetError
from rainbow_runner.datasets.scenarios import DOMAIN_INCREMENTAL
from rainbow_runner.datasets.transformed import (
    MAX_ROTATION,
    check_samples_per_task,
    permute_images,
    rotate_images,
    task_angles,
    task_permutations,
    transform_of,
    transformed_stream,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "")


def test_names_say_transform_and_base():
    assert transform_of("permuted_fashion_mnist") == ("permuted", "fashion_mnist")
    assert transform_of("rotated_digits") == ("rotated", "digits")
    assert transform_of("fashion_mnist") is None and transform_of("permuted_") is None


def test_permutations_are_fixed_per_task_and_reproducible_from_the_seed():
    first, again, other = (task_permutations(64, 4, s) for s in (3, 3, 4))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert len({tuple(p.tolist()) for p in first}) == 4  # a different one per task
    for permutation in first:  # GEM: task 0 is permuted too
        assert sorted(permutation.tolist()) == list(range(64))
        assert not torch.equal(permutation, torch.arange(64))


def test_angles_fall_in_their_task_slice_and_are_reproducible():
    angles = task_angles(5, 3)
    assert angles == task_angles(5, 3) and angles != task_angles(5, 4)
    width = MAX_ROTATION / 5
    for task, angle in enumerate(angles):
        assert task * width <= angle < (task + 1) * width


def test_max_rotation_stretches_the_slices_and_a_bad_one_is_refused():
    angles = task_angles(4, 3, max_rotation=180.0)
    assert angles == pytest.approx([2 * angle for angle in task_angles(4, 3)])
    assert max(angles) > MAX_ROTATION
    for bad in (0.0, -30.0, 400.0):
        with pytest.raises(DatasetError, match="max_rotation"):
            task_angles(4, 3, max_rotation=bad)


@pytest.mark.parametrize("kind", ["permuted", "rotated"])
def test_each_task_holds_its_transform_of_the_data(digits, kind):
    stream, split = transformed_stream(digits, kind, 3, 7, samples_per_task=100)
    again, _ = transformed_stream(digits, kind, 3, 7, samples_per_task=100)
    assert torch.equal(stream.train_x, again.train_x) and torch.equal(stream.test_x, again.test_x)
    assert split.scenario == DOMAIN_INCREMENTAL and split.exposed == [10, 10, 10]
    assert [len(t) for t in split.train_tasks] == [100, 100, 100]
    n_test = len(digits.test_y)
    assert torch.equal(split.test_tasks, torch.arange(3).repeat_interleave(n_test))
    assert torch.equal(stream.test_y, digits.test_y.repeat(3))
    for task in range(3):
        block = stream.test_x[task * n_test : (task + 1) * n_test]
        if kind == "permuted":
            expected = permute_images(digits.test_x, task_permutations(64, 3, 7)[task])
        else:
            expected = rotate_images(digits.test_x, task_angles(3, 7)[task])
        assert torch.equal(block, expected)
    blocks = stream.test_x.reshape(3, n_test, -1)
    assert not torch.equal(blocks[0], blocks[1])  # the tasks differ


def test_samples_per_task_takes_a_count_a_fraction_or_all():
    assert check_samples_per_task(None, 1437) == 1437
    assert check_samples_per_task(1000, 1437) == 1000
    assert check_samples_per_task(0.5, 1437) == 718
    for bad in (0, 2000, 1.5, "many"):
        with pytest.raises(ValueError, match="samples_per_task"):
            check_samples_per_task(bad, 1437)


def test_a_tuning_stream_has_its_own_transforms_and_never_the_test_set(digits):
    from rainbow_runner.datasets.transformed import TUNING_SEED_OFFSET, tuning_stream

    tuning, split = tuning_stream(digits, "permuted", 2, 7)
    reported, _ = transformed_stream(digits, "permuted", 2, 7)
    n_validation = len(digits.test_y)
    assert len(tuning.test_y) == 2 * n_validation and len(split.train_tasks[0]) == 1437 - 360
    # its validation rows are held-out training images under the tuning transforms
    permutation = task_permutations(64, 2, 7 + TUNING_SEED_OFFSET)[0]
    assert not torch.equal(permutation, task_permutations(64, 2, 7)[0])
    train_rows = {tuple(row.tolist()) for row in digits.train_x.flatten(1)}
    test_rows = {tuple(row.tolist()) for row in digits.test_x.flatten(1)}
    original = permutation.argsort()
    validation = tuning.test_x[:n_validation].flatten(1)[:, original]
    assert all(tuple(row.tolist()) in train_rows for row in validation)
    assert not any(tuple(row.tolist()) in test_rows - train_rows for row in validation)
    assert not torch.equal(tuning.test_x, reported.test_x)
