"""What every data set loader returns: uint8 image tensors plus the facts the runner needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


class DatasetError(RuntimeError):
    """A missing, corrupt or unknown data set; the message says where we looked and what to do."""


def torchvision_download(name: str, data_root: str) -> None:
    """Fetch a data set with torchvision's downloader (opt-in download=true; never in tests)."""
    import torchvision.datasets as tv

    dataset_class = {
        "mnist": tv.MNIST,
        "fashion_mnist": tv.FashionMNIST,
        "cifar10": tv.CIFAR10,
        "cifar100": tv.CIFAR100,
    }[name]
    try:
        dataset_class(root=data_root, train=True, download=True)
    except Exception as error:  # noqa: BLE001 - report any network/disk failure as DatasetError
        raise DatasetError(f"Downloading {name} into {data_root} failed: {error}") from error


class ImageSource(Protocol):
    """Images indexed by a tensor of positions: a plain uint8 tensor or a lazy folder reader."""

    shape: tuple[int, ...]

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor: ...

    def __len__(self) -> int: ...


@dataclass
class ImageData:
    """A classification data set as uint8 (N, C, H, W) images and int64 labels 0..n_classes-1."""

    name: str
    train_x: ImageSource
    train_y: torch.Tensor
    test_x: ImageSource
    test_y: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True
    train_files: list[str] | None = None
    test_files: list[str] | None = None
    extras: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]
