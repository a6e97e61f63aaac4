"""CIFAR-10/100 from the python pickles or the Rainbow-Memory PNG folders."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rainbow_runner.datasets.base import DatasetError, ImageData, torchvision_download
from rainbow_runner.datasets.folder import channel_stats, load_image_folder, resize_images

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

# The only globals a CIFAR pickle needs: numpy's array rebuilders (under both numpy 1 and 2
# module names) and, for bytes pickled by Python 3 at protocol 2, codecs.encode.
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,
}

PICKLE_LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "labels": "labels",
        "names": "label_names",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "labels": "fine_labels",
        "names": "fine_label_names",
    },
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers and numpy arrays, never arbitrary objects."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return SAFE_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def read_cifar_pickle(path: str | Path) -> dict[str, Any]:
    """Load one CIFAR batch/meta file safely; keys (and name strings) come back as str."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            content = RestrictedUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as error:
        raise DatasetError(f"Corrupt or unsafe CIFAR file {path}: {error}") from error
    if not isinstance(content, dict):
        raise DatasetError(f"{path} does not hold a dict (got {type(content).__name__}).")
    return {_text(key): value for key, value in content.items()}


def _read_batches(
    folder: Path, files: list[str], label_key: str
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for file_name in files:
        batch = read_cifar_pickle(folder / file_name)
        if "data" not in batch or label_key not in batch:
            raise DatasetError(f"{folder / file_name} lacks 'data' or '{label_key}'.")
        data = np.asarray(batch["data"], dtype=np.uint8)
        batch_labels = np.asarray(batch[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch_labels):
            raise DatasetError(
                f"{folder / file_name}: data has shape {data.shape} and {len(batch_labels)} "
                "labels; expected (N, 3072) uint8 and N labels."
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _synthetic_files(split: str, labels: torch.Tensor, class_names: list[str]) -> list[str]:
    """Paper-style names `split/<class>/<1-based index within class, 4 digits>.png`."""
    seen = [0] * len(class_names)
    files = []
    for label in labels.tolist():
        seen[label] += 1
        files.append(f"{split}/{class_names[label]}/{seen[label]:04d}.png")
    return files


def load_cifar_pickles(name: str, folder: Path, image_size: int | None = None) -> ImageData:
    """Read a CIFAR "python version" folder (cifar-10-batches-py or cifar-100-python)."""
    layout = PICKLE_LAYOUT[name]
    train_x, train_y = _read_batches(folder, layout["train"], layout["labels"])
    test_x, test_y = _read_batches(folder, layout["test"], layout["labels"])
    meta = read_cifar_pickle(folder / layout["meta"])
    class_names = [str(_text(value)) for value in meta.get(layout["names"], [])]
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    if len(class_names) < n_classes:
        raise DatasetError(
            f"{folder / layout['meta']} names {len(class_names)} classes, need {n_classes}."
        )
    if image_size:
        train_x, test_x = resize_images(train_x, image_size), resize_images(test_x, image_size)
    mean, std = channel_stats(train_x)
    return ImageData(
        name=name,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        class_names=class_names,
        mean=mean,
        std=std,
        hflip=True,
        # Assumes the paper's PNGs were numbered in pickle order; the folder layout is exact.
        train_files=_synthetic_files("train", train_y, class_names),
        test_files=_synthetic_files("test", test_y, class_names),
        extras={"root": str(folder), "layout": "pickle"},
    )


def cifar_candidates(name: str, data_root: str) -> tuple[list[Path], list[Path]]:
    """RM folder-layout roots and pickle folders to try, in search order."""
    base = Path(data_root)
    pickle_folder = PICKLE_LAYOUT[name]["folder"]
    folders = [base / "dataset" / name, base / name]
    pickles = [base / pickle_folder, base / name / pickle_folder, base]
    return folders, pickles


def load_cifar(
    name: str, data_root: str, download: bool = False, image_size: int | None = None
) -> ImageData:
    """CIFAR-10/100: RM PNG folders first (exact paper file names), then the python pickles."""
    folders, pickles = cifar_candidates(name, data_root)
    first_train = PICKLE_LAYOUT[name]["train"][0]
    for root in folders:
        if (root / "train").is_dir():
            data = load_image_folder(root, name, image_size, eager=True, channels=3)
            data.extras["layout"] = "folder"
            return data
    for folder in pickles:
        if (folder / first_train).is_file():
            return load_cifar_pickles(name, folder, image_size)
    if download:
        torchvision_download(name, data_root)
        return load_cifar_pickles(name, pickles[0], image_size)
    looked = "; ".join(
        [f"{root}/train/<class>/*.png" for root in folders]
        + [f"{folder}/{first_train}" for folder in pickles]
    )
    raise DatasetError(
        f"{name} not found: looked for {looked}. Put the Rainbow-Memory PNG folders in "
        f"data_root/dataset/{name}/{{train,test}}/<class>/, or unpack the CIFAR python version "
        f"({PICKLE_LAYOUT[name]['folder']}) into data_root, or set download=true to let "
        "torchvision fetch it."
    )
