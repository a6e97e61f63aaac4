"""Reject bad settings before any data is loaded or any step is taken."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from rainbow_runner.memory import MEMORIES
from rainbow_runner.methods import METHODS


class ConfigError(ValueError):
    """A setting is out of range; the message names the value and what is allowed."""


_POSITIVE = ("batchsize", "n_tasks", "lr", "eval_batchsize", "topk", "log_every")
_NON_NEGATIVE = (
    "mem_size",
    "mem_batchsize",
    "n_epoch",
    "num_threads",
    "warmup_epochs",
    "checkpoint_every",
    "augment_chunk",
)


def check_config(cfg: DictConfig) -> None:
    """Every range and choice the runner relies on, with a message a user can act on."""
    METHODS.get(cfg.mode.name)
    if cfg.mem_manage.name == "default":
        raise ConfigError(
            f"mode={cfg.mode.name} has no default memory manager "
            f"(conf/mem_manage_by_mode/default_{cfg.mode.name}.yaml); pick one of: "
            f"{', '.join(MEMORIES.names())}."
        )
    MEMORIES.get(cfg.mem_manage.name)
    for key in _POSITIVE:
        if not cfg[key] > 0:
            raise ConfigError(f"{key}={cfg[key]} must be greater than 0.")
    for key in _NON_NEGATIVE:
        if cfg[key] < 0:
            raise ConfigError(f"{key}={cfg[key]} must be 0 or more.")
    if cfg.stream.online_iter < 1:
        raise ConfigError(f"stream.online_iter={cfg.stream.online_iter} must be 1 or more.")
    if cfg.stream.memory_epochs < 0:
        raise ConfigError(f"stream.memory_epochs={cfg.stream.memory_epochs} must be 0 or more.")
    if not 0 <= cfg.exp.blurry <= 100:
        raise ConfigError(
            f"exp.blurry={cfg.exp.blurry} is outside 0..100 (the % of each class's samples "
            f"dealt to other tasks; e.g. exp=blurry10 or exp.blurry=30)."
        )
    resolve_device(str(cfg.device))


def resolve_device(name: str) -> torch.device:
    """device=auto picks CUDA when present; an unusable device is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device={name} is not a device; use auto, cpu or cuda[:N].") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={name} was asked for but CUDA is not available; use auto or cpu."
        )
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name} is not supported; use auto, cpu or cuda[:N].")
    return device
