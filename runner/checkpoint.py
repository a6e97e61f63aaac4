"""Checkpoints: all a run needs to continue exactly where it stopped, stored without pickles.

One file, `<run dir>/checkpoint.pt`, replaced atomically after every task and every
`checkpoint_every` steps inside a task. It holds only what `torch.load(weights_only=True)`
accepts (tensors, numbers, strings, lists, tuples, dicts), so loading it runs no code.

A run resumes only with the settings it started with (check_same_config) and the same arithmetic
(check_same_arithmetic): thread count, device, summation windows and library versions, which
change the floating-point results without changing a single setting's meaning.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rainbow_runner.runner.arithmetic import (
    LABELS,
    arithmetic_differences,
    restore_hint,
    restoring_override,
)
from rainbow_runner.runner.files import replace_atomically

log = logging.getLogger("runner")

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1
# Settings left out of the config comparison. The first five, the trackers and keep_checkpoint
# never change what is computed; log_every, num_threads and device do change the floating-point
# rounding, and are compared through their effect (the arithmetic record: threads in use, device
# found) instead.
RUN_ENVIRONMENT_KEYS = frozenset(
    {
        "resume",
        "overwrite",
        "checkpoint_every",
        "progress",
        "data_root",
        "download",
        "log_every",
        "num_threads",
        "device",
        "logger",
        "keep_checkpoint",
    }
)


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and what to do about it."""


# --- what a checkpoint may contain -------------------------------------------------------------


def plain(value: Any, where: str = "checkpoint") -> Any:
    """`value` in types that weights_only loading accepts; numpy becomes torch or Python."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: numpy dtype {value.dtype} cannot be checkpointed safely.")
        return torch.from_numpy(np.array(value, copy=True, order="C"))
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.Size)):
        return value
    if type(value) in (dict, OrderedDict, Counter):
        converted = {key: plain(item, f"{where}.{key}") for key, item in value.items()}
        if type(value) is dict:
            return converted
        result = type(value)(converted)
        if hasattr(value, "_metadata"):  # module versions in a state_dict (BatchNorm reads them)
            result._metadata = plain(value._metadata, f"{where}._metadata")
        return result
    if type(value) in (list, tuple):
        return type(value)(plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    raise TypeError(
        f"{where} is a {type(value).__name__}; checkpoints hold only tensors, numbers, strings, "
        f"lists, tuples and dicts (a method's state_dict() must convert it)."
    )


def rng_state() -> dict[str, Any]:
    """Every global random stream: Python, numpy, torch CPU and, when present, CUDA."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": (version, torch.tensor(internal, dtype=torch.int64), gauss),
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put every global random stream back where rng_state() found it."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal.tolist()), gauss))
    numpy_state = state["numpy"]
    key = numpy_state["key"].numpy().astype(np.uint32)
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": key, "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state["cuda"]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


# --- files --------------------------------------------------------------------------------------


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write a temporary file of its own, sync it, rename it, sync the directory: a crash or a
    power cut leaves the old checkpoint or the new one."""
    content = plain(state)
    replace_atomically(Path(path), lambda handle: torch.save(content, handle))


def _restore_location(device: torch.device):
    """CUDA tensors go to this run's device (CPU when it has none); CPU tensors stay on CPU."""

    def restore(storage, location: str):
        if not location.startswith("cuda"):
            return storage
        return storage.cuda(device.index) if device.type == "cuda" else storage.cpu()

    return restore


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint at path, loaded with weights_only=True; any failure names the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=_restore_location(device), weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {reason[:200]}); it is "
            f"corrupt or not a rainbow-runner checkpoint. Delete it to start the run over, or "
            f"run without resume=true."
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"checkpoint {path} has format {found!r}, this runner reads format {FORMAT}; "
            f"delete it to start the run over."
        )
    return state


# --- resuming a run -----------------------------------------------------------------------------


def config_snapshot(cfg: DictConfig) -> dict[str, Any]:
    """The resolved settings that decide what a run computes, as dotted keys."""
    flat: dict[str, Any] = {}

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                visit(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    visit(OmegaConf.to_container(cfg, resolve=True), "")
    return {k: v for k, v in flat.items() if k.split(".")[0] not in RUN_ENVIRONMENT_KEYS}


def resume_command(run_dir: Path) -> str:
    """The command line that continues this run (its overrides, resume=true, its directory)."""
    overrides: list[str] = []
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            overrides = list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        overrides = []
    kept = [o for o in overrides if o.lstrip("+~").split("=")[0] not in ("resume", "overwrite")]
    return shlex.join(
        ["python", "-m", "runner", *kept, "resume=true", f"hydra.run.dir={Path(run_dir).resolve()}"]
    )


def check_same_config(state: dict[str, Any], cfg: DictConfig, path: Path) -> None:
    """A checkpoint continues only the run that wrote it: name every setting that differs."""
    saved, current = state["config"], config_snapshot(cfg)
    differing = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if not differing:
        return
    shown = ", ".join(
        f"{k}={saved.get(k, '<unset>')} (now {current.get(k, '<unset>')})" for k in differing[:8]
    )
    more = f" and {len(differing) - 8} more" if len(differing) > 8 else ""
    raise CheckpointError(
        f"checkpoint {path} belongs to a run with other settings: {shown}{more}. Resume it with "
        f"its own overrides: {state['command']}"
    )


def check_same_arithmetic(state: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume where the numbers would come out differently, naming each cause."""
    saved = state.get("arithmetic")
    if saved is None:
        log.warning(
            "checkpoint %s does not record its thread count, device or summation windows "
            "(written by an older runner): the resumed run may differ from an uninterrupted one",
            path,
        )
        return
    differing = arithmetic_differences(saved, current)
    if not differing:
        return
    shown = "; ".join(
        f"{LABELS.get(key, key)} {saved[key]} (now {current[key]}; restore with "
        f"{restore_hint(key, saved[key])})"
        for key in differing
    )
    overrides = [o for o in (restoring_override(k, saved[k]) for k in differing) if o]
    resume = f" Resume exactly with: {with_overrides(state['command'], overrides)}"
    raise CheckpointError(
        f"checkpoint {path} was written with other arithmetic, so resuming here would change "
        f"the results: {shown}.{resume if overrides else ''}"
    )


def with_overrides(command: str, overrides: list[str]) -> str:
    """command with each key=value of overrides replacing the same key's earlier value."""
    keys = {o.split("=", 1)[0] for o in overrides}
    words = [w for w in shlex.split(command) if w.lstrip("+~").split("=", 1)[0] not in keys]
    at = words.index("resume=true") if "resume=true" in words else len(words)
    return shlex.join([*words[:at], *overrides, *words[at:]])


def submitit_requeued(path: Path) -> bool:
    """A submitit job that finds its own checkpoint was pre-empted or timed out and requeued."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR")) and Path(path).exists()


def resume_state(
    cfg: DictConfig,
    path: Path,
    device: torch.device,
    arithmetic: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The checkpoint this run continues from, or None for a fresh start; writes nothing.

    The checkpoint must come from the same settings and, when `arithmetic` is given (see
    arithmetic_settings), the same arithmetic; otherwise CheckpointError says what differs.
    """
    path = Path(path)
    requeued = submitit_requeued(path)
    if not (bool(cfg.resume) or requeued):
        return None
    if not path.exists():
        log.info("resume=true but there is no checkpoint at %s: starting a fresh run", path)
        return None
    state = load_checkpoint(path, device)
    check_same_config(state, cfg, path)
    if arithmetic is not None:
        check_same_arithmetic(state, arithmetic, path)
    position = state["position"]
    where = (
        f"inside task {position['task'] + 1} (phase {position['phase']}, epoch "
        f"{position['epoch']}, {position['batch']} samples in)"
        if position["inside"]
        else f"after task {position['task']}"
    )
    log.info(
        "%s from %s: %s, step %d",
        "submitit requeue: resuming" if requeued and not cfg.resume else "resuming",
        path,
        where,
        state["global_step"],
    )
    return state


class Checkpointer:
    """Saves the trainer's state after each task and every `every` steps inside a task."""

    def __init__(
        self,
        path: Path,
        every: int,
        cfg: DictConfig,
        command: str,
        arithmetic: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.every = every
        self.header = {"format": FORMAT, "config": config_snapshot(cfg), "command": command}
        if arithmetic is not None:
            self.header["arithmetic"] = dict(arithmetic)
        self.last_step = 0

    def due(self, global_step: int) -> bool:
        """Whether a checkpoint inside the task is due at this step."""
        return self.every > 0 and global_step - self.last_step >= self.every

    def save(self, state: dict[str, Any]) -> None:
        save_checkpoint({**self.header, **state}, self.path)
        self.last_step = int(state["global_step"])
