"""ImageFolder readers: lazy decoding, resize + centre crop, grayscale, ImageNet lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rainbow_runner.datasets import DatasetError, load_dataset
from rainbow_runner.datasets.folder import IMAGENET_MEAN, LazyImageFolder, load_image_folder

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "owl": (0, 0, 255)}


def write_folder(root: Path, test_split: str = "val", size: tuple[int, int] = (40, 30)) -> None:
    """Solid-colour images per class: 3 train, 1 test; mixed PNG/JPEG, non-square."""
    for split, n in (("train", 3), (test_split, 1)):
        for klass, colour in COLOURS.items():
            (root / split / klass).mkdir(parents=True)
            for index in range(n):
                suffix = "png" if index % 2 == 0 else "jpg"
                Image.new("RGB", size, colour).save(root / split / klass / f"{index}.{suffix}")


def test_lazy_folder_decodes_batches(tmp_path: Path) -> None:
    write_folder(tmp_path)
    data = load_image_folder(tmp_path, image_size=16, eager=False)
    assert isinstance(data.train_x, LazyImageFolder) and data.extras["lazy"] is True
    assert data.train_x.shape == (9, 3, 16, 16) and len(data.test_x) == 3
    assert data.class_names == ["cat", "dog", "owl"] and data.test_y.tolist() == [0, 1, 2]
    assert data.train_files[0] == "train/cat/0.png" and data.test_files[1] == "val/dog/0.png"
    batch = data.train_x[torch.tensor([0, 4, 8])]
    assert batch.shape == (3, 3, 16, 16) and batch.dtype == torch.uint8
    centre = batch[:, :, 8, 8].int()
    expected = torch.tensor([COLOURS["cat"], COLOURS["dog"], COLOURS["owl"]])
    assert (centre - expected).abs().max() <= 3  # JPEG may shift a solid colour slightly
    assert data.train_x[torch.tensor(4)].shape == (3, 16, 16)


def test_resize_shorter_side_then_centre_crop(tmp_path: Path) -> None:
    image = np.zeros((10, 30, 3), np.uint8)  # H 10, W 30: left/middle/right thirds
    image[:, 10:20] = 200
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    Image.fromarray(image).save(tmp_path / "train" / "a" / "x.png")
    Image.fromarray(image).save(tmp_path / "test" / "a" / "x.png")
    data = load_image_folder(tmp_path, image_size=10, eager=False)
    crop = data.train_x[torch.tensor([0])][0]
    assert crop.shape == (3, 10, 10) and int(crop.min()) >= 190  # only the middle third kept


def test_small_folder_is_eager_and_keeps_native_size(tmp_path: Path) -> None:
    write_folder(tmp_path, test_split="test", size=(12, 12))
    data = load_dataset("image_folder", str(tmp_path))
    assert isinstance(data.train_x, torch.Tensor) and data.train_x.shape == (9, 3, 12, 12)
    assert data.mean[0] == pytest.approx(1 / 3, abs=0.02)


def test_grayscale_folder_has_one_channel(tmp_path: Path) -> None:
    for split in ("train", "test"):
        (tmp_path / split / "zero").mkdir(parents=True)
        Image.new("L", (8, 8), 128).save(tmp_path / split / "zero" / "a.png")
    data = load_image_folder(tmp_path, eager=False)
    assert data.train_x.shape == (1, 1, 8, 8)
    assert torch.equal(
        data.train_x[torch.tensor([0])], torch.full((1, 1, 8, 8), 128, dtype=torch.uint8)
    )


def test_imagenet_lazy_at_224(tmp_path: Path) -> None:
    write_folder(tmp_path / "imagenet")
    data = load_dataset("imagenet", str(tmp_path))
    assert isinstance(data.train_x, LazyImageFolder) and data.train_x.shape == (9, 3, 224, 224)
    assert data.mean == IMAGENET_MEAN and data.name == "imagenet"
    assert data.test_x[torch.tensor([2])].shape == (1, 3, 224, 224)


def test_unknown_test_class_and_missing_folders(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "val" / "emu").mkdir()
    with pytest.raises(DatasetError, match="emu"):
        load_image_folder(tmp_path)
    empty = tmp_path / "empty"
    with pytest.raises(DatasetError, match="image_folder: .*train does not exist"):
        load_dataset("image_folder", str(empty))
    with pytest.raises(DatasetError) as error:
        load_dataset("imagenet", str(empty))
    assert str(empty / "imagenet") in str(error.value) and str(empty / "dataset") in str(
        error.value
    )
