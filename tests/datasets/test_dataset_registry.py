"""The name registry: every name dispatches, unknown names fail helpfully."""

from __future__ import annotations

import pytest

from rainbow_runner.datasets import DATASET_NAMES, DatasetError, load_dataset


def test_names() -> None:
    assert set(DATASET_NAMES) == {
        "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet", "image_folder",
    }  # fmt: skip


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(DatasetError) as error:
        load_dataset("svhn", "./data")
    assert "'svhn'" in str(error.value)
    assert all(name in str(error.value) for name in DATASET_NAMES)


def test_image_size_resizes_tensor_data_sets() -> None:
    data = load_dataset("digits", "", image_size=16)
    assert data.train_x.shape == (1437, 1, 16, 16) and data.image_shape == (1, 16, 16)
