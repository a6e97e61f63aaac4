"""CIFAR readers: python pickles exactly like the real ones, unsafe pickles, RM PNG folders."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rainbow_runner.datasets import DatasetError, load_dataset
from rainbow_runner.datasets.cifar import read_cifar_pickle

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer"] + [
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def dump(path: Path, content: object, protocol: int) -> None:
    path.write_bytes(pickle.dumps(content, protocol=protocol))


def write_cifar10(root: Path, per_batch: int = 4, protocol: int = 2) -> tuple[np.ndarray, list]:
    """cifar-10-batches-py with bytes keys, (N, 3072) uint8 data and list labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    all_data, all_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        dump(folder / name, batch, protocol)
        all_data.append(data)
        all_labels += labels
    meta = {
        b"num_cases_per_batch": per_batch,
        b"label_names": [n.encode() for n in CIFAR10_NAMES],
        b"num_vis": 3072,
    }
    dump(folder / "batches.meta", meta, protocol)
    return np.concatenate(all_data), all_labels


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_pickles(tmp_path: Path, protocol: int) -> None:
    data_rows, labels = write_cifar10(tmp_path, protocol=protocol)
    data = load_dataset("cifar10", str(tmp_path))
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.hflip is True
    n, c, h, w = 7, 2, 5, 30  # row-major, channel-first: index c*1024 + h*32 + w
    assert int(data.train_x[n, c, h, w]) == int(data_rows[n, c * 1024 + h * 32 + w])
    assert data.train_y.tolist() + data.test_y.tolist() == labels
    assert data.class_names == CIFAR10_NAMES
    first = data.train_files[0]
    assert first == f"train/{CIFAR10_NAMES[labels[0]]}/0001.png"
    assert data.extras["layout"] == "pickle"


def test_cifar100_pickles_in_data_root_itself(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for name, n in (("train", 6), ("test", 3)):
        content = {
            b"filenames": [b"x.png"] * n,
            b"batch_label": b"training batch 1 of 1",
            b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        dump(tmp_path / name, content, 2)
    meta = {
        b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)],
        b"coarse_label_names": [f"super{i}".encode() for i in range(20)],
    }
    dump(tmp_path / "meta", meta, 2)
    data = load_dataset("cifar100", str(tmp_path))
    assert data.n_classes == 100 and data.train_x.shape == (6, 3, 32, 32)
    assert data.class_names[3] == "class03"
    assert data.train_y.max() < 100 and data.test_y.shape == (3,)


class Exploit:
    """Pickles to a call of os.system: the restricted reader must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    dump(path, {b"data": Exploit(marker), b"labels": []}, 2)
    with pytest.raises(DatasetError, match=r"(posix|os|nt)\.system is not allowed"):
        read_cifar_pickle(path)
    assert not marker.exists()


def test_truncated_pickle_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", str(tmp_path))


def write_rm_folder(root: Path, classes: list[str], per_class: int) -> dict[str, np.ndarray]:
    """dataset/<split>/<class>/NNNN.png, 32x32 RGB, as the paper's PNG copy of CIFAR."""
    rng = np.random.default_rng(3)
    pixels = {}
    for split, n in (("train", per_class), ("test", 1)):
        for klass in classes:
            (root / split / klass).mkdir(parents=True)
            for index in range(1, n + 1):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                name = f"{split}/{klass}/{index:04d}.png"
                Image.fromarray(image).save(root / name)
                pixels[name] = image
    return pixels


def test_rm_folder_layout(tmp_path: Path) -> None:
    pixels = write_rm_folder(tmp_path / "dataset" / "cifar10", ["truck", "airplane"], 3)
    write_cifar10(tmp_path)  # the folder layout wins when both are present
    data = load_dataset("cifar10", str(tmp_path))
    assert data.extras["layout"] == "folder" and isinstance(data.train_x, torch.Tensor)
    assert data.class_names == ["airplane", "truck"]
    assert data.train_files[:2] == ["train/airplane/0001.png", "train/airplane/0002.png"]
    assert data.train_x.shape == (6, 3, 32, 32) and data.test_y.tolist() == [0, 1]
    position = data.train_files.index("train/truck/0002.png")
    expected = torch.from_numpy(pixels["train/truck/0002.png"]).permute(2, 0, 1)
    assert torch.equal(data.train_x[position], expected)
    assert data.train_y[position] == 1


def test_missing_cifar_names_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar100", str(tmp_path))
    message = str(error.value)
    assert str(tmp_path / "dataset" / "cifar100") in message
    assert str(tmp_path / "cifar-100-python" / "train") in message
    assert "download=true" in message
