"""Which scenario a run is in, what it refuses, and the data and split each scenario builds."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from rainbow_runner.datasets import load_dataset
from rainbow_runner.datasets.base import ImageData
from rainbow_runner.datasets.gem_format import read_gem_file
from rainbow_runner.datasets.scenarios import (
    CLASS_INCREMENTAL,
    DOMAIN_INCREMENTAL,
    SCENARIOS,
    TASK_INCREMENTAL,
)
from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.datasets.transformed import (
    MAX_ROTATION,
    TRANSFORMS,
    transform_of,
    transformed_stream,
    tuning_stream,
)
from rainbow_runner.methods import METHODS
from rainbow_runner.runner.schema import ConfigError

DOMAIN_DATASETS = "permuted_<name>, rotated_<name> (e.g. permuted_fashion_mnist) or gem_file"
GEM_FILE = "gem_file"


def scenario_of(cfg: DictConfig) -> str:
    return str(cfg.get("scenario", CLASS_INCREMENTAL))


def is_domain_data(name: str) -> bool:
    """Whether dataset=name is a task sequence of transformed inputs (domain-incremental)."""
    return transform_of(name) is not None


def tuning_tasks_of(cfg: DictConfig) -> int:
    return int(OmegaConf.select(cfg, "tuning_tasks", default=0) or 0)


def check_tuning(cfg: DictConfig) -> None:
    """tuning_tasks=K: a tuning run of K tasks, on a permuted/rotated data set only."""
    tuning_tasks = tuning_tasks_of(cfg)
    if not tuning_tasks:
        return
    if not is_domain_data(str(cfg.dataset.name)):
        raise ConfigError(
            f"tuning_tasks={tuning_tasks} draws a separate tuning stream of transformed "
            f"tasks; it needs dataset={DOMAIN_DATASETS.replace(' or gem_file', '')}, not "
            f"dataset={cfg.dataset.name} (use tuning_tasks=0)."
        )
    if int(cfg.n_tasks) != tuning_tasks:
        raise ConfigError(
            f"tuning_tasks={tuning_tasks} is a tuning run of {tuning_tasks} tasks but "
            f"n_tasks={cfg.n_tasks}; set n_tasks={tuning_tasks} (reported runs: "
            f"tuning_tasks=0)."
        )


def check_scenario(cfg: DictConfig) -> None:
    """Refuse a scenario the method, the data set or the split cannot run, before any data.

    domain_incremental ignores exp= (its tasks are the transforms, not class groups)."""
    scenario, mode = scenario_of(cfg), cfg.mode.name
    if scenario not in SCENARIOS:
        raise ConfigError(f"scenario={scenario}: valid scenarios are {', '.join(SCENARIOS)}.")
    method = METHODS.get(mode)
    if scenario not in method.scenarios:
        raise ConfigError(
            f"mode={mode} cannot run in scenario={scenario}; it runs in scenario="
            f"{' or '.join(method.scenarios)}."
        )
    check_tuning(cfg)
    if cfg.dataset.name == GEM_FILE:  # the file says which scenarios fit: checked once read
        return
    domain_data = is_domain_data(str(cfg.dataset.name))
    if domain_data and scenario != DOMAIN_INCREMENTAL:
        raise ConfigError(
            f"dataset={cfg.dataset.name} is a domain-incremental stream (every task has every "
            f"class, the inputs change); scenario={scenario} does not fit it: use "
            f"scenario={DOMAIN_INCREMENTAL} (its default)."
        )
    if scenario == DOMAIN_INCREMENTAL and not domain_data:
        raise ConfigError(
            f"scenario={DOMAIN_INCREMENTAL} needs a data set whose inputs change per task: "
            f"{DOMAIN_DATASETS}; dataset={cfg.dataset.name} has one input distribution."
        )
    if scenario == TASK_INCREMENTAL and (
        float(cfg.exp.blurry) > 0 or cfg.exp.get("disjoint_classes") is not None
    ):
        raise ConfigError(
            f"scenario={scenario} needs tasks with their own classes (exp=disjoint); "
            f"exp={cfg.exp.name} mixes classes over tasks."
        )


def load_data_and_split(cfg: DictConfig, build_split) -> tuple[ImageData, TaskSplit]:
    """The run's data and task split: transformed copies per task (domain_incremental), else
    the data set and build_split's class split, marked with the scenario."""
    name = str(cfg.dataset.name)
    transform = transform_of(name)
    tuning_tasks = tuning_tasks_of(cfg)
    if transform is not None:
        kind, base = transform
        data = load_dataset(
            base, str(cfg.data_root), bool(cfg.download), cfg.dataset.get("image_size")
        )
        stream = tuning_stream if tuning_tasks else transformed_stream
        return stream(
            data,
            kind,
            int(cfg.n_tasks),
            int(cfg.split_seed),
            cfg.dataset.get("samples_per_task"),
            float(cfg.dataset.get("max_rotation", MAX_ROTATION)),
        )
    if name == GEM_FILE:
        return gem_file_stream(cfg)
    data = load_dataset(name, str(cfg.data_root), bool(cfg.download), cfg.dataset.image_size)
    split = build_split(cfg, data)
    split.scenario = scenario_of(cfg)
    return data, split


def gem_file_stream(cfg: DictConfig) -> tuple[ImageData, TaskSplit]:
    """dataset=gem_file: the file's tasks; its scenario and task count must match the run's."""
    path = cfg.dataset.get("path")
    if not path:
        raise ConfigError("dataset=gem_file needs dataset.path=<a GEM-format .pt file>.")
    data, split = read_gem_file(str(path), int(cfg.split_seed), cfg.dataset.get("samples_per_task"))
    scenario = scenario_of(cfg)
    if split.scenario == DOMAIN_INCREMENTAL and scenario != DOMAIN_INCREMENTAL:
        raise ConfigError(
            f"dataset.path={path} holds a domain-incremental stream (every task has the same "
            f"classes); scenario={scenario} does not fit it: use scenario={DOMAIN_INCREMENTAL}."
        )
    if split.scenario != DOMAIN_INCREMENTAL:
        if scenario == DOMAIN_INCREMENTAL:
            raise ConfigError(
                f"dataset.path={path} holds a class split (each task its own classes); "
                f"scenario={DOMAIN_INCREMENTAL} does not fit it: use scenario="
                f"{TASK_INCREMENTAL} or {CLASS_INCREMENTAL}."
            )
        split.scenario = scenario
    if split.n_tasks != int(cfg.n_tasks):
        raise ConfigError(
            f"dataset.path={path} holds {split.n_tasks} tasks but n_tasks={cfg.n_tasks}; "
            f"set n_tasks={split.n_tasks}."
        )
    return data, split


__all__ = ["TASK_INCREMENTAL", "TRANSFORMS", "check_scenario", "load_data_and_split"]
