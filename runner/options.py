"""A mode's and a memory's config keys are their constructor's arguments: read and checked here.

conf/mode/<name>.yaml and conf/mem_manage/<name>.yaml hold `name` plus one key per keyword
argument of the registered class; a typo or a value of the wrong type fails before the run
starts, naming the valid keys.
"""

from __future__ import annotations

import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rainbow_runner.datasets.choices import Registry
from rainbow_runner.memory import MEMORIES, Memory
from rainbow_runner.methods import METHODS

# Arguments the runner passes itself, never from the config (a memory's n_classes and n_tasks:
# the run's totals, for fixed quotas, passed to the memories that take them).
_SUPPLIED = {"self", "context", "capacity", "seed", "n_classes", "n_tasks"}
# Top-level keys that moved under mem_manage (old name -> new key); still read, with a warning.
DEPRECATED_MEMORY_KEYS = {"uncert_metric": "metric", "uncert_k": "k"}


class OptionError(ValueError):
    """A mode or memory option that its class does not take, or of the wrong type."""


def _options(section: DictConfig) -> dict[str, Any]:
    values = OmegaConf.to_container(section, resolve=True)
    return {key: value for key, value in values.items() if key != "name"}


def method_options(cfg: DictConfig) -> dict[str, Any]:
    """conf/mode/<mode>.yaml's keys: the method's constructor arguments."""
    return _options(cfg.mode)


def memory_options(cfg: DictConfig) -> dict[str, Any]:
    """conf/mem_manage/<name>.yaml's keys: the memory's constructor arguments."""
    return _options(cfg.mem_manage)


def build_memory(cfg: DictConfig, capacity: int, n_classes: int, n_tasks: int) -> Memory:
    """The configured memory: conf/mem_manage/<name>.yaml's keys plus what the runner supplies."""
    memory_class = MEMORIES.get(cfg.mem_manage.name)
    parameters = inspect.signature(memory_class.__init__).parameters
    supplied = {"n_classes": n_classes, "n_tasks": n_tasks}
    supplied = {key: value for key, value in supplied.items() if key in parameters}
    return memory_class(capacity=capacity, seed=int(cfg.seed), **supplied, **memory_options(cfg))


def accepted_options(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword arguments a registered class takes from the config."""
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name: parameter
        for name, parameter in parameters.items()
        if name not in _SUPPLIED
        and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }


def _fits(value: Any, default: Any) -> bool:
    """Whether a config value has the type of the argument's default (ints pass as floats)."""
    if default is inspect.Parameter.empty or default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


def check_options(group: str, registry: Registry, section: DictConfig) -> None:
    """Refuse keys the class does not take and values whose type does not fit its default."""
    name = str(section.name)
    accepted = accepted_options(registry.get(name))
    where = f"conf/{group}/{name}.yaml"
    valid = ", ".join(f"{group}.{key}" for key in accepted) or "none"
    for key, value in _options(section).items():
        if key not in accepted:
            raise OptionError(
                f"{group}={name} has no option {group}.{key}; its options are: {valid} "
                f"(documented in {where})."
            )
        default = accepted[key].default
        if not _fits(value, default):
            raise OptionError(
                f"{group}.{key}={value!r} is a {type(value).__name__}; {group}={name} takes a "
                f"{type(default).__name__} there (default {default!r}, see {where})."
            )


def check_method_and_memory_options(cfg: DictConfig) -> None:
    """Both option sets of a composed config (mem_manage=default resolves first)."""
    check_options("mode", METHODS, cfg.mode)
    if cfg.mem_manage.name != "default":
        check_options("mem_manage", MEMORIES, cfg.mem_manage)


def apply_deprecated_keys(cfg: DictConfig) -> list[str]:
    """Move old top-level memory keys under mem_manage; one warning line for each one set."""
    warnings = []
    for old, new in DEPRECATED_MEMORY_KEYS.items():
        value = cfg.get(old)
        if value is None:
            continue
        if new in cfg.mem_manage:
            cfg.mem_manage[new] = value
        warnings.append(
            f"{old}={value} is deprecated: use mem_manage.{new}={value} "
            f"(mem_manage={cfg.mem_manage.name} {'takes' if new in cfg.mem_manage else 'ignores'}"
            " it)."
        )
    return warnings
