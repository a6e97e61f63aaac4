"""Networks as a feature extractor plus a linear head that grows as classes are exposed."""

from __future__ import annotations

import math

import torch
from torch import nn


class GrowingHead(nn.Module):
    """A linear classifier whose new class rows are added without touching the old ones."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        self.bias = nn.Parameter(torch.empty(n_classes))
        self._init_rows(self.weight, self.bias)

    def _init_rows(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(bias, -bound, bound)

    def reset_parameters(self) -> None:
        """Fresh random rows for every class, as for any layer a model re-initialises."""
        self._init_rows(self.weight, self.bias)

    @property
    def n_classes(self) -> int:
        return self.weight.shape[0]

    def grow(self, n_classes: int) -> None:
        """Add rows for newly exposed classes; existing rows keep their trained values."""
        extra = n_classes - self.n_classes
        if extra <= 0:
            return
        new_weight = torch.empty(extra, self.in_features, device=self.weight.device)
        new_bias = torch.empty(extra, device=self.bias.device)
        self._init_rows(new_weight, new_bias)
        self.weight = nn.Parameter(torch.cat([self.weight.data, new_weight]))
        self.bias = nn.Parameter(torch.cat([self.bias.data, new_bias]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(features, self.weight, self.bias)


class ContinualModel(nn.Module):
    """Backbone + growing head; methods reach the features for NME, herding and distillation."""

    def __init__(self, backbone: nn.Module, feature_dim: int, n_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head = GrowingHead(feature_dim, n_classes)
        self.channels_last = False  # set by optimize_model: feed convolutions NHWC images

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def n_classes(self) -> int:
        return self.head.n_classes

    def grow(self, n_classes: int) -> None:
        self.head.grow(n_classes)


def mlp(
    in_shape: tuple[int, int, int],
    n_classes: int,
    hidden: int = 400,
    depth: int = 2,
    batchnorm: bool = True,
) -> ContinualModel:
    """The paper's MNIST network: flatten, then `depth` (Linear, BatchNorm, ReLU) layers."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for _ in range(depth):
        if batchnorm:
            layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden)]
        else:
            layers.append(nn.Linear(width, hidden))
        layers.append(nn.ReLU(inplace=True))
        width = hidden
    return ContinualModel(nn.Sequential(*layers), width, n_classes)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions and a shortcut)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def _cifar_resnet(in_channels: int, widths: list[int], blocks: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
    ]
    in_planes = widths[0]
    for stage, (planes, count) in enumerate(zip(widths, blocks, strict=True)):
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(in_planes, planes, stride))
            in_planes = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def resnet18_cifar(in_shape: tuple[int, int, int], n_classes: int) -> ContinualModel:
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool)."""
    backbone = _cifar_resnet(in_shape[0], [64, 128, 256, 512], [2, 2, 2, 2])
    return ContinualModel(backbone, 512, n_classes)


def resnet32_cifar(in_shape: tuple[int, int, int], n_classes: int) -> ContinualModel:
    """ResNet-32 for CIFAR: three stages of five basic blocks."""
    backbone = _cifar_resnet(in_shape[0], [16, 32, 64], [5, 5, 5])
    return ContinualModel(backbone, 64, n_classes)


def resnet34(in_shape: tuple[int, int, int], n_classes: int) -> ContinualModel:
    """torchvision's ResNet-34 (ImageNet stem), randomly initialised, fc replaced by our head."""
    import torchvision  # only this network needs it

    backbone = torchvision.models.resnet34(weights=None)
    if in_shape[0] != 3:
        backbone.conv1 = nn.Conv2d(in_shape[0], 64, 7, 2, 3, bias=False)
    feature_dim = backbone.fc.in_features
    backbone.fc = nn.Identity()
    return ContinualModel(backbone, feature_dim, n_classes)
