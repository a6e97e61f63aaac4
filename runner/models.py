"""Networks as a feature extractor plus a linear head that grows as classes are exposed."""

from __future__ import annotations

import ctypes
import math
import sys
from contextlib import AbstractContextManager, nullcontext

import torch
import torchvision
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
    backbone = torchvision.models.resnet34(weights=None)
    if in_shape[0] != 3:
        backbone.conv1 = nn.Conv2d(in_shape[0], 64, 7, 2, 3, bias=False)
    feature_dim = backbone.fc.in_features
    backbone.fc = nn.Identity()
    return ContinualModel(backbone, feature_dim, n_classes)


# --- speed: mixed precision, memory format, compilation (conf: amp, channels_last, compile) ----

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def switch_setting(value: object, key: str) -> str:
    """A yes/no/auto setting as 'auto', 'on' or 'off' (YAML may hand us a bool)."""
    if value is True or value in ("on", "true"):
        return "on"
    if value is False or value is None or value in ("off", "false"):
        return "off"
    if value == "auto":
        return "auto"
    raise ValueError(f"{key}={value} is not a valid setting; use auto, true or false.")


class MixedPrecision:
    """Autocast around the forward pass and, for fp16, loss scaling; a no-op when off.

    amp=auto is bf16 on CUDA GPUs that support it (else fp16 with a GradScaler) and off on CPU,
    where the default float32 path stays bit-for-bit what it was.
    """

    def __init__(self, setting: object, device: torch.device) -> None:
        mode = "off" if setting is False or setting is None else str(setting)
        if mode not in AMP_CHOICES:
            raise ValueError(f"amp={setting} is not a valid setting; use one of {AMP_CHOICES}.")
        if mode == "auto":
            mode = "off"
            if device.type == "cuda":
                mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        self.mode = mode
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
        self.scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> AbstractContextManager:
        """The context the forward pass (and evaluation) runs in."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """loss.backward() and optimizer.step(), through the GradScaler for fp16."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)  # unscales .grad first, so after_step hooks see true grads
        self.scaler.update()


def optimize_model(
    model: ContinualModel, device: torch.device, channels_last: object, compile_backbone: object
) -> str:
    """In place: NHWC weights and inputs for convolutions, torch.compile of the backbone.

    channels_last=auto turns it on for convolutional models on CUDA only (on CPU it is rarely
    faster); compile=true compiles the backbone in place (same module, same state_dict keys;
    the growing head stays eager). Returns a one-line description for the log.
    """
    has_conv = any(isinstance(module, nn.Conv2d) for module in model.modules())
    nhwc = switch_setting(channels_last, "channels_last")
    use_nhwc = has_conv and (nhwc == "on" or (nhwc == "auto" and device.type == "cuda"))
    if use_nhwc:
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    compiled = switch_setting(compile_backbone, "compile") == "on"
    if compiled:
        model.backbone.compile()
    return f"channels_last {'on' if use_nhwc else 'off'} | compile {'on' if compiled else 'off'}"


def keep_freed_memory() -> bool:
    """Let glibc reuse freed blocks instead of returning them to the OS after every step.

    Each step frees and reallocates the same MB-sized gradients and temporaries; glibc's
    defaults unmap or trim them, so every step page-faults them back in (measured: 1.7M minor
    faults and ~40% of an mlp400 batch-16 step on CPU). Process-wide and harmless: memory
    stays at the run's peak. Returns whether the allocator accepted it (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(
            libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
            and libc.mallopt(m_trim_threshold, 1024 * 1024 * 1024)
        )
    except (OSError, AttributeError):
        return False
