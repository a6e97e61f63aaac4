"""The ViT model (torchvision's VisionTransformer + growing head): token access, a local
checkpoint loaded with weights_only=True, and a log line when it starts from random weights."""

from __future__ import annotations

import logging

import pytest
import torch

from rainbow_runner.runner.models import vit


def test_features_are_the_cls_output_of_tokens_then_encode_and_images_are_resized():
    model = vit((1, 8, 8), n_classes=3, image_size=16, patch_size=4)
    x = torch.randn(2, 1, 8, 8)
    tokens = model.tokens(x)
    assert tokens.shape == (2, 1 + 16, 32)  # [CLS] + (16 / 4)^2 patches
    assert torch.equal(model.features(x), model.encode(tokens)[:, 0])
    assert model(x).shape == (2, 3)


def test_a_local_checkpoint_loads_and_random_init_is_logged(tmp_path, caplog):
    source = vit((3, 8, 8), n_classes=2)
    path = tmp_path / "vit.pt"
    torch.save(source.backbone.state_dict(), path)
    with caplog.at_level(logging.INFO):
        loaded = vit((3, 8, 8), n_classes=2, weights=str(path))
        vit((3, 8, 8), n_classes=2)
    for name, value in source.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[name], value), name
    assert f"weights loaded from {path}" in caplog.text
    assert "no model.weights given: the backbone is randomly initialised" in caplog.text


def test_a_checkpoint_of_another_size_is_refused(tmp_path):
    path = tmp_path / "vit.pt"
    torch.save(vit((3, 8, 8), n_classes=2, hidden_dim=16, mlp_dim=32).backbone.state_dict(), path)
    with pytest.raises(RuntimeError, match="size mismatch"):
        vit((3, 8, 8), n_classes=2, weights=str(path))
