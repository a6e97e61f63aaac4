"""Reject bad settings before any data is loaded, any step is taken or any file is written."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from rainbow_runner.memory import MEMORIES
from rainbow_runner.methods import METHODS
from rainbow_runner.runner.plugins import check_early_stopping
from rainbow_runner.runner.reporting.trackers import check_trackers
from rainbow_runner.runner.schema import ConfigError, check_settings
from rainbow_runner.runner.task_free import trains_online

__all__ = ["ConfigError", "check_config", "check_data_settings", "config_warnings"]


def check_config(cfg: DictConfig) -> None:
    """Every type, range and choice the runner relies on, with a message a user can act on."""
    check_settings(cfg)
    check_early_stopping(cfg, trains_online(cfg))
    if cfg.mem_manage.name == "default":
        raise ConfigError(
            f"mode={cfg.mode.name} has no default memory manager "
            f"(conf/mem_manage_by_mode/default_{cfg.mode.name}.yaml); pick one of: "
            f"{', '.join(MEMORIES.names())}."
        )
    MEMORIES.get(cfg.mem_manage.name)
    if cfg.get("resume") and cfg.get("overwrite"):
        raise ConfigError(
            "resume=true and overwrite=true contradict each other: resume=true continues the run "
            "in the run directory, overwrite=true replaces it; give one of them."
        )
    resolve_device(str(cfg.device))
    check_trackers(cfg.get("logger"))


def check_data_settings(cfg: DictConfig, n_classes: int) -> None:
    """The settings that depend on the data set, checked once it is loaded."""
    if int(cfg.topk) > n_classes:
        raise ConfigError(
            f"topk={cfg.topk} is more than the {n_classes} classes of dataset="
            f"{cfg.dataset.name}; use topk=1..{n_classes}."
        )


def config_warnings(cfg: DictConfig) -> list[str]:
    """Settings that are allowed but probably not meant: said once in the run's log."""
    warnings = []
    method = METHODS.get(cfg.mode.name)
    if method.uses_memory and int(cfg.mem_size) == 0:
        warnings.append(
            f"mem_size=0 with mode={cfg.mode.name}: the memory stays empty, so nothing is "
            f"replayed or kept (set mem_size=K to give the method its memory)."
        )
    return warnings


def resolve_device(name: str) -> torch.device:
    """device=auto picks CUDA when present; an unusable device is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device={name} is not a device; use auto, cpu or cuda[:N].") from error
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name} is not supported; use auto, cpu or cuda[:N].")
    if device.type == "cpu" and device.index not in (None, 0):
        raise ConfigError(f"device={name} does not exist: the CPU has no index; use device=cpu.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={name} was asked for but CUDA is not available; use auto or cpu."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device={name} does not exist: this machine has {count} CUDA device(s), "
                f"cuda:0..cuda:{count - 1}."
            )
    return device
