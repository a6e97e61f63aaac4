"""How much arithmetic one training step costs, and the CPU threads that pays off for it.

On a CPU, torch's threads only help when each gets enough work per operation: a small MLP
(mlp400 on 28x28 images: ~8M multiply-adds per 16-sample step) runs faster on one thread than
on two, a ResNet (~1G per step) uses every core. num_threads=0 asks this rule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Multiply-adds of one step's forward pass each thread should have (measured on a 2-core
# machine: mlp400 at 3M and 8M per step was 15-65% slower on two threads; bench/README.md).
MACS_PER_THREAD = 50e6


def forward_macs(model: nn.Module, in_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of the Linear and Conv2d layers for one sample, from one eval-mode forward
    pass (no randomness used, no state changed); the growing head, a few classes wide, is not
    counted."""
    total = 0

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.Conv2d):
            kernel = math.prod(module.kernel_size) * module.in_channels // module.groups
            total += output.numel() * kernel

    hooks = [
        layer.register_forward_hook(count)
        for layer in model.modules()
        if isinstance(layer, (nn.Linear, nn.Conv2d))
    ]
    training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, *in_shape, device=device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return total


def threads_for(macs_per_step: float, cores: int) -> int:
    """One thread per MACS_PER_THREAD of work per step, between 1 and the cores."""
    return max(1, min(cores, int(macs_per_step // MACS_PER_THREAD)))
