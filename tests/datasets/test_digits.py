"""scikit-learn digits: shapes, value range, reproducible stratified split."""

from __future__ import annotations

import pytest
import torch

from rainbow_runner.datasets import load_dataset


def test_digits_shapes_and_classes() -> None:
    data = load_dataset("digits", "")
    assert data.train_x.shape == (1437, 1, 8, 8) and data.test_x.shape == (360, 1, 8, 8)
    assert data.train_x.dtype == torch.uint8 and int(data.train_x.max()) == 255
    assert data.n_classes == 10 and data.image_shape == (1, 8, 8) and data.hflip is False
    train_counts = torch.bincount(data.train_y, minlength=10)
    test_counts = torch.bincount(data.test_y, minlength=10)
    assert (test_counts * 4 - train_counts).abs().max() <= 5  # stratified 80/20


def test_digits_is_deterministic_and_stats_from_train() -> None:
    first, second = load_dataset("digits", ""), load_dataset("digits", "")
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    pixels = first.train_x.double() / 255
    assert first.mean[0] == pytest.approx(float(pixels.mean()), abs=1e-9)
    assert first.std[0] == pytest.approx(float(pixels.std(unbiased=False)), abs=1e-9)
