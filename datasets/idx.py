"""MNIST and Fashion-MNIST from the standard IDX files (gzipped or not), read with numpy."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from rainbow_runner.datasets.base import DatasetError, ImageData, torchvision_download
from rainbow_runner.datasets.folder import channel_stats, resize_images

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
DEBIAN_FOLDERS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}  # fmt: skip
UBYTE_CODE = 0x08


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Parse one uint8 IDX file after checking its magic number, dimensions and length."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"Corrupt or unreadable IDX file {path}: {error}") from error
    header = 4 + 4 * ndim
    if len(data) < header or data[:2] != b"\x00\x00" or data[2] != UBYTE_CODE or data[3] != ndim:
        raise DatasetError(
            f"{path} is not a uint8 IDX file with {ndim} dimension(s) "
            f"(magic {data[:4].hex() or 'missing'}, expected 000008{ndim:02x})."
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DatasetError(
            f"{path} is truncated or padded: {len(data)} bytes for dimensions {dims}, "
            f"expected {expected}. Delete it and fetch it again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def idx_folders(name: str, data_root: str) -> list[Path]:
    """Every folder an IDX data set may sit in, in search order."""
    base = Path(data_root)
    folders = [
        base,
        base / name,
        base / name.replace("_", "-"),
        base / TORCHVISION_FOLDERS[name] / "raw",
    ]
    if name in DEBIAN_FOLDERS:
        folders.append(DEBIAN_FOLDERS[name])
    return list(dict.fromkeys(folders))  # mnist == mnist with "-": each folder once


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in folder (raw preferred over .gz), or None if any is missing."""
    found = {}
    for key, stem in IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _missing_message(name: str, folders: list[Path]) -> str:
    files = ", ".join(f"{stem}[.gz]" for stem in IDX_FILES.values())
    looked = "; ".join(str(folder) for folder in folders)
    debian = (
        " On Debian/Ubuntu `apt-get install dataset-fashion-mnist` installs them in "
        "/usr/share/datasets/fashion-mnist."
        if name in DEBIAN_FOLDERS
        else ""
    )
    return (
        f"{name} not found: looked for {files} in {looked}. Copy the four IDX files into "
        f"data_root (or data_root/{name}), or set download=true to let torchvision fetch them "
        f"into data_root/{TORCHVISION_FOLDERS[name]}/raw.{debian}"
    )


def load_idx_dataset(
    name: str, data_root: str, download: bool = False, image_size: int | None = None
) -> ImageData:
    """Load mnist or fashion_mnist as uint8 (N, 1, 28, 28) with paper-style train file names."""
    folders = idx_folders(name, data_root)
    files = next((found for folder in folders if (found := find_idx_files(folder))), None)
    if files is None and download:
        torchvision_download(name, data_root)
        files = find_idx_files(folders[3])
    if files is None:
        raise DatasetError(_missing_message(name, folders))
    arrays = {key: read_idx(path, 3 if key.endswith("x") else 1) for key, path in files.items()}
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"{split}_x"]), len(arrays[f"{split}_y"])
        if n_images != n_labels:
            raise DatasetError(
                f"{files[f'{split}_x']} holds {n_images} images but {files[f'{split}_y']} "
                f"holds {n_labels} labels."
            )
        if n_labels and arrays[f"{split}_y"].max() >= 10:
            raise DatasetError(f"{files[f'{split}_y']} has labels outside 0..9.")
    train_x = torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1)
    test_x = torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1)
    if image_size:
        train_x, test_x = resize_images(train_x, image_size), resize_images(test_x, image_size)
    mean, std = channel_stats(train_x)
    train_y = torch.from_numpy(arrays["train_y"].astype(np.int64))
    test_y = torch.from_numpy(arrays["test_y"].astype(np.int64))
    return ImageData(
        name=name,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        class_names=list(CLASS_NAMES[name]),
        mean=mean,
        std=std,
        hflip=name == "fashion_mnist",
        # The paper's MNIST collections name images train/<label>/<position in the IDX file>.png.
        train_files=[f"train/{y}/{i}.png" for i, y in enumerate(train_y.tolist())],
        test_files=[f"test/{y}/{i}.png" for i, y in enumerate(test_y.tolist())],
        extras={"files": {key: str(path) for key, path in files.items()}},
    )
