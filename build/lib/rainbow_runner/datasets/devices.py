"""Small host tensors (indices, draws, masks) onto the device without stalling the host."""

from __future__ import annotations

import torch


def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """tensor on the device with no host sync: a pageable CUDA copy waits for the queue."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
