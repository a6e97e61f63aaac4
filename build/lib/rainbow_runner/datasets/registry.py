"""One entry point, `load_dataset(name, ...)`, so configs pick a data set by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from rainbow_runner.datasets.base import DatasetError, ImageData
from rainbow_runner.datasets.cifar import load_cifar
from rainbow_runner.datasets.digits import load_digits
from rainbow_runner.datasets.folder import load_folder_dataset, load_imagenet
from rainbow_runner.datasets.idx import load_idx_dataset

Loader = Callable[[str, bool, "int | None"], ImageData]

LOADERS: dict[str, Loader] = {
    "digits": load_digits,
    "mnist": partial(load_idx_dataset, "mnist"),
    "fashion_mnist": partial(load_idx_dataset, "fashion_mnist"),
    "cifar10": partial(load_cifar, "cifar10"),
    "cifar100": partial(load_cifar, "cifar100"),
    "imagenet": load_imagenet,
    "image_folder": load_folder_dataset,
}
DATASET_NAMES: tuple[str, ...] = tuple(LOADERS)


def load_dataset(
    name: str, data_root: str, download: bool = False, image_size: int | None = None
) -> ImageData:
    """Load a data set by name; unknown names fail with the list of valid ones."""
    if name not in LOADERS:
        raise DatasetError(
            f"Unknown data set {name!r}; valid names are {', '.join(DATASET_NAMES)}."
        )
    return LOADERS[name](str(data_root), download, image_size)
