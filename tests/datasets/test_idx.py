"""IDX readers (MNIST, Fashion-MNIST) on tiny files written in the exact format."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from rainbow_runner.datasets import DatasetError, idx, load_dataset
from rainbow_runner.datasets.idx import IDX_FILES, read_idx

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array as IDX: magic 0x0000 08 <ndim>, big-endian dims, data."""
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = False) -> dict:
    """Write the four IDX files of a small random set; return the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": np.arange(n_train, dtype=np.uint8) % 10,
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_set(tmp_path / "mnist", gz=gz)
    data = load_dataset("mnist", str(tmp_path))
    assert data.train_x.shape == (12, 1, 28, 28) and data.test_x.shape == (5, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(arrays["train_x"]))
    assert data.test_y.tolist() == arrays["test_y"].tolist()
    assert data.hflip is False and data.class_names == [str(d) for d in range(10)]
    assert data.train_files[:2] == ["train/0/0.png", "train/1/1.png"]
    expected_mean = arrays["train_x"].mean() / 255
    assert data.mean[0] == pytest.approx(expected_mean, abs=1e-9)
    assert data.std[0] == pytest.approx(arrays["train_x"].std() / 255, abs=1e-9)


def test_fashion_mnist_torchvision_layout(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "FashionMNIST" / "raw", gz=True)
    data = load_dataset("fashion_mnist", str(tmp_path), image_size=14)
    assert data.hflip is True and data.class_names[0] == "T-shirt/top"
    assert data.train_x.shape == (12, 1, 14, 14) and data.train_x.dtype == torch.uint8


def test_truncated_gz_names_the_file(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", str(tmp_path))


def test_truncated_raw_file_is_rejected(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte is truncated"):
        load_dataset("mnist", str(tmp_path))


def test_bad_magic_and_wrong_dims(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 2) + b"\x00" * 8)  # float32 code
    with pytest.raises(DatasetError, match="not a uint8 IDX file"):
        read_idx(path, 1)
    path.write_bytes(idx_bytes(np.zeros((2, 3, 3), np.uint8)))
    with pytest.raises(DatasetError, match="1 dimension"):
        read_idx(path, 1)


def test_image_and_label_counts_must_match(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DatasetError, match="12 images but"):
        load_dataset("mnist", str(tmp_path))


def test_missing_names_every_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(idx.DEBIAN_FOLDERS, "fashion_mnist", tmp_path / "debian")
    with pytest.raises(DatasetError) as error:
        load_dataset("fashion_mnist", str(tmp_path))
    message = str(error.value)
    for folder in idx.idx_folders("fashion_mnist", str(tmp_path)):
        assert str(folder) in message
    assert "apt-get install dataset-fashion-mnist" in message and "download=true" in message
    with pytest.raises(DatasetError, match=r"MNIST[/\\]raw"):
        load_dataset("mnist", str(tmp_path))


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist(tmp_path: Path) -> None:
    data = load_dataset("fashion_mnist", str(tmp_path))
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [6000] * 10
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    assert data.mean[0] == pytest.approx(0.2860, abs=1e-3)


def test_the_missing_data_message_names_each_folder_once(tmp_path):
    with pytest.raises(DatasetError) as raised:
        load_dataset("mnist", str(tmp_path / "none"), False, None)
    message = str(raised.value)
    looked = message.split(" in ", 1)[1].split(". ", 1)[0].split("; ")
    assert len(looked) == len(set(looked)) == 3  # data_root, data_root/mnist, data_root/MNIST/raw
