"""Networks (a backbone plus a growing head) and the speed settings the loop applies to them."""

from rainbow_runner.runner.models.networks import (
    BasicBlock,
    ContinualModel,
    GrowingHead,
    mlp,
    resnet18_cifar,
    resnet32_cifar,
    resnet34,
)
from rainbow_runner.runner.models.speed import (
    AMP_CHOICES,
    MixedPrecision,
    keep_freed_memory,
    optimize_model,
    switch_setting,
)
from rainbow_runner.runner.models.vit import VisionTransformerModel, vit

__all__ = [
    "AMP_CHOICES",
    "BasicBlock",
    "ContinualModel",
    "GrowingHead",
    "MixedPrecision",
    "keep_freed_memory",
    "mlp",
    "optimize_model",
    "resnet18_cifar",
    "resnet32_cifar",
    "resnet34",
    "switch_setting",
    "vit",
    "VisionTransformerModel",
]
