"""What changes a run's floating-point results without changing any setting's meaning.

A checkpoint records it (arithmetic_settings) and a resumed run must find the same (checked in
runner/checkpoint.py), so that it ends with the CSVs of the run that was never stopped: torch's
thread count changes how reductions are split, the device and its model change the kernels,
log_every decides where the loss sums are taken, and library versions change everything.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import torch
from omegaconf import DictConfig


def arithmetic_settings(
    cfg: DictConfig, device: torch.device, pending_steps: int
) -> dict[str, Any]:
    """What decides the floating-point results besides the settings: call after the threads
    are set. pending_steps: the trainer's bound on the steps summed in one go."""
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        model = torch.cuda.get_device_name(index)
    else:
        index, model = None, f"cpu ({torch.backends.cpu.get_cpu_capability()})"
    return {
        "torch_threads": torch.get_num_threads(),
        "device_type": device.type,
        "device_index": index,
        "device_model": model,
        "log_every": int(cfg.log_every),
        "augment_chunk": int(cfg.augment_chunk),
        "max_pending_steps": int(pending_steps),
        "torch_version": str(torch.__version__),
        "numpy_version": metadata.version("numpy"),
    }


def restore_hint(key: str, saved: Any) -> str:
    """How to get the saved value back, for the error message."""
    if key == "torch_threads":
        return f"num_threads={saved}"
    if key == "device_type":
        return "device=cpu" if saved == "cpu" else "device=cuda (on a machine with a GPU)"
    if key == "device_model":
        if str(saved).startswith("cpu ("):
            capability = str(saved)[5:-1].lower()
            return f"the environment variable ATEN_CPU_CAPABILITY={capability} if this CPU has it"
        return f"a machine whose GPU is a {saved}"
    if key in ("log_every", "augment_chunk"):
        return f"{key}={saved}"
    if key == "torch_version":
        return f"pip install torch=={saved}"
    if key == "numpy_version":
        return f"pip install numpy=={saved}"
    return "the runner version that wrote the checkpoint"


LABELS = {
    "torch_threads": "torch threads",
    "device_type": "device type",
    "device_model": "device",
    "max_pending_steps": "steps summed at once",
    "torch_version": "torch",
    "numpy_version": "numpy",
}
# Recorded but not compared: the same GPU model at another index computes the same numbers.
NOT_COMPARED = frozenset({"device_index"})


# Differences a command-line override undoes (the others need another machine or install).
_OVERRIDDEN = {"torch_threads", "log_every", "augment_chunk"}


def restoring_override(key: str, saved: Any) -> str | None:
    """The override that gives the saved value back, when there is one."""
    if key in _OVERRIDDEN or (key == "device_type" and saved == "cpu"):
        return restore_hint(key, saved)
    return None


def arithmetic_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The recorded keys whose value differs now (both records from arithmetic_settings)."""
    return [
        key
        for key in saved
        if key not in NOT_COMPARED and key in current and saved[key] != current[key]
    ]
