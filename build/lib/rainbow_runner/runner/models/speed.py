"""Speed settings around a network: mixed precision, memory format, compilation, allocator."""

from __future__ import annotations

import ctypes
import sys
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from rainbow_runner.runner.models.networks import ContinualModel

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

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """loss.backward(), leaving true (unscaled) gradients in .grad for gradient hooks."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step() after backward(); fp16 skips a step whose gradients overflowed."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)  # already unscaled by backward()
        self.scaler.update()

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """backward() then step(): a plain training step (the bare-model benchmark's)."""
        self.backward(loss, optimizer)
        self.step(optimizer)


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
