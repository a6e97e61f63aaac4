"""scikit-learn's bundled 8x8 digits: a real data set that needs no download, for quick runs."""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.datasets.base import ImageData
from rainbow_runner.datasets.folder import channel_stats, resize_images

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits(
    data_root: str = "", download: bool = False, image_size: int | None = None
) -> ImageData:
    """The 1,797 digits as uint8 (N, 1, 8, 8), split 80/20 stratified with a fixed seed."""
    from sklearn.datasets import load_digits as sklearn_digits  # ~1 s to import: digits only
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    train_x, test_x = torch.from_numpy(train_x), torch.from_numpy(test_x)
    if image_size:
        train_x, test_x = resize_images(train_x, image_size), resize_images(test_x, image_size)
    mean, std = channel_stats(train_x)
    return ImageData(
        name="digits",
        train_x=train_x,
        train_y=torch.from_numpy(train_y),
        test_x=test_x,
        test_y=torch.from_numpy(test_y),
        class_names=[str(digit) for digit in range(10)],
        mean=mean,
        std=std,
        hflip=False,
    )
