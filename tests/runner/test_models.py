"""Networks build for 1- and 3-channel inputs and their heads grow without forgetting rows."""

import pytest
import torch

from rainbow_runner.runner import models


def test_growing_head_keeps_trained_rows_and_adds_new_ones():
    model = models.mlp((1, 8, 8), n_classes=2, hidden=16)
    with torch.no_grad():
        model.head.weight.fill_(0.5)
        model.head.bias.fill_(-1.0)
    model.grow(5)
    assert model.n_classes == 5
    assert torch.all(model.head.weight[:2] == 0.5) and torch.all(model.head.bias[:2] == -1.0)
    assert not torch.all(model.head.weight[2:] == 0.5)
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 5)
    model.grow(4)  # never shrinks
    assert model.n_classes == 5


@pytest.mark.parametrize(
    ("factory", "shape"),
    [
        (models.resnet18_cifar, (3, 32, 32)),
        (models.resnet32_cifar, (1, 28, 28)),
        (models.resnet34, (3, 64, 64)),
        (models.mlp, (1, 28, 28)),
    ],
)
def test_models_give_features_and_logits(factory, shape):
    model = factory(shape, 7).eval()
    x = torch.randn(2, *shape)
    features = model.features(x)
    assert features.shape == (2, model.feature_dim)
    assert model(x).shape == (2, 7)
