"""Task-free streams: classes exposed as the stream shows them (a head grown mid-task), and the
check that a mode which needs task boundaries is not run without them (exp.task_boundaries).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from rainbow_runner.datasets.base import ImageData
from rainbow_runner.datasets.iblurry import make_iblurry_split, read_iblurry_split
from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.memory import MEMORIES, Memory
from rainbow_runner.methods import METHODS, Method
from rainbow_runner.runner.schema import ConfigError


def build_iblurry_split(cfg: DictConfig, data: ImageData) -> TaskSplit:
    """exp=iblurry: the paper's collection files when exp.split_files is set, else generated."""
    disjoint, blurry = float(cfg.exp.disjoint_classes), float(cfg.exp.blurry)
    if cfg.exp.split_files:
        if disjoint != int(disjoint) or blurry != int(blurry):
            raise ConfigError(
                f"exp.split_files names files by whole percentages; exp.disjoint_classes="
                f"{disjoint:g} and exp.blurry={blurry:g} must be integers (e.g. 50 and 10)."
            )
        return read_iblurry_split(
            str(cfg.exp.split_files),
            cfg.dataset.name,
            int(cfg.n_tasks),
            int(disjoint),
            int(blurry),
            int(cfg.split_seed),
            data.train_files or [],
            data.train_y,
            data.class_names,
        )
    return make_iblurry_split(
        data.train_y, data.n_classes, int(cfg.n_tasks), disjoint, blurry, int(cfg.split_seed)
    )


def task_boundaries(cfg: DictConfig) -> bool:
    """Whether the periods act as tasks (always, outside exp=iblurry)."""
    return bool(cfg.exp.get("task_boundaries", True))


def check_task_free(cfg: DictConfig) -> None:
    """exp.task_boundaries=false and eval_period need an online stream; a task-free run needs a
    mode without needs_task_boundaries and a memory that takes in the stream as it flows."""
    online = trains_online(cfg)
    period = int(cfg.get("eval_period", 0) or 0)
    if period < 0:
        raise ConfigError(f"eval_period={period} must be 0 (off) or a number of stream samples.")
    if period and not online:
        raise ConfigError(
            f"eval_period={period} evaluates every {period} stream samples of an online stream, "
            f"but mode={cfg.mode.name} with stream={cfg.stream.name} trains offline; use "
            f"stream=online with a mode that trains online, or eval_period=0."
        )
    if task_boundaries(cfg):
        return
    method = METHODS.get(cfg.mode.name)
    if method.needs_task_boundaries or method.offline_only or not online:
        free = [name for name in METHODS.names() if task_free_mode(name)]
        raise ConfigError(
            f"exp.task_boundaries=false runs a truly task-free online stream, but mode="
            f"{cfg.mode.name} with stream={cfg.stream.name} needs task boundaries (it acts at "
            f"the end of each task, or trains offline); modes that can run task-free (with "
            f"stream=online) are: {', '.join(free)}; or keep exp.task_boundaries=true, where the "
            f"periods act as tasks."
        )
    memory = MEMORIES.get(cfg.mem_manage.name)
    if method.uses_memory and int(cfg.mem_size) > 0 and not streaming_memory(cfg):
        raise ConfigError(
            f"exp.task_boundaries=false: mem_manage={cfg.mem_manage.name} ({memory.__name__}) "
            f"updates the memory at the end of each task, which a task-free stream has not; use "
            f"a memory that takes in the stream as it flows (e.g. mem_manage=reservoir) or keep "
            f"exp.task_boundaries=true."
        )


def trains_online(cfg: DictConfig) -> bool:
    """Whether the run streams online: stream=online and a mode that trains online, or an
    offline-only mode that takes in the stream for anytime evaluation (anytime_online, with
    eval_period > 0: GDumb)."""
    if cfg.stream.name != "online":
        return False
    method = METHODS.get(cfg.mode.name)
    anytime = method.anytime_online and int(cfg.get("eval_period", 0) or 0) > 0
    return not method.offline_only or anytime


def acts_at_task_ends(method: type[Method], memory: Memory) -> bool:
    """Whether a mode with its memory needs the periods to act as tasks: the method says so,
    or the memory is updated at the end of each task rather than as the stream flows."""
    memory_at_ends = method.uses_memory and memory.capacity > 0 and not memory.streaming
    return method.needs_task_boundaries or memory_at_ends


def task_free_mode(name: str) -> bool:
    method = METHODS.get(name)
    return not (method.needs_task_boundaries or method.offline_only)


def streaming_memory(cfg: DictConfig) -> bool:
    """Whether the configured memory manager takes in each incoming batch (class attribute, or
    the parametric manager's intake=stream)."""
    memory = MEMORIES.get(cfg.mem_manage.name)
    return bool(getattr(memory, "streaming", False)) or cfg.mem_manage.get("intake") == "stream"


def grow_head(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, n_classes: int
) -> None:
    """Grow the head mid-task and put its new parameters in the optimizer in place of the old
    ones; the old rows keep their optimizer state (momentum, Adam moments), the new rows start
    from zero state, and the rest of the optimizer and its schedule go on. (The paper's code
    drops the head's state; a fused optimizer needs every parameter's state or none.)"""
    old = list(model.head.parameters())
    model.grow(n_classes)
    new = list(model.head.parameters())
    if optimizer is None or all(a is b for a, b in zip(old, new, strict=True)):
        return
    replace = {id(a): b for a, b in zip(old, new, strict=True)}
    for group in optimizer.param_groups:
        group["params"] = [replace.get(id(p), p) for p in group["params"]]
    for before, after in zip(old, new, strict=True):
        state = optimizer.state.pop(before, None)
        if state is not None:
            optimizer.state[after] = {key: _grown(value, after) for key, value in state.items()}


def _grown(value: object, parameter: torch.Tensor) -> object:
    """A per-element state tensor of the old head, its new rows zero; other state as it was."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape == parameter.shape:
        return value
    grown = torch.zeros_like(parameter, dtype=value.dtype)
    grown[: value.shape[0]] = value
    return grown
