"""Trackers: where a run's scalars, config and final metrics go besides results/ (logger=...).

Each tracker is a small module imported only when `logger=[...]` selects it, so a run pays
for no tracker it does not use; the ones with their own package (wandb, mlflow) are optional
extras, checked before the run starts.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rainbow_runner.runner.schema import ConfigError


@dataclass(frozen=True)
class TrackerEntry:
    """Where a tracker lives and the package it needs (None: only what the runner has)."""

    module: str
    cls: str
    package: str | None = None


TRACKERS: dict[str, TrackerEntry] = {
    "csv": TrackerEntry("csv_file", "CsvTracker"),
    "mlflow": TrackerEntry("mlflow_run", "MlflowTracker", "mlflow"),
    "tensorboard": TrackerEntry("tensorboard", "TensorBoardTracker"),
    "wandb": TrackerEntry("wandb_run", "WandbTracker", "wandb"),
}


@dataclass(frozen=True)
class RunContext:
    """What every tracker is told about its run when it opens."""

    run_dir: Path
    config: dict  # the resolved config
    purge_step: int | None = None  # a resumed run: steps from here on are logged again
    tasks_done: int = 0  # a resumed run: tasks from here on are logged again


class Tracker:
    """One destination of a run's logged values; a tracker overrides what it can store.

    scalar's axis says what step counts: "step" (the run's gradient steps: train/*), "task"
    (the task index: test/*, train/task_loss, memory/*), "samples" (stream samples seen:
    anytime/acc) or "final" (the run's headline metrics).
    """

    def scalar(self, tag: str, value: float, step: int, axis: str = "step") -> None:
        """One value of a series."""

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        """A distribution after a task (memory classes)."""

    def text(self, tag: str, text: str) -> None:
        """A text record (the resolved config as YAML)."""

    def summary(self, settings: dict, metrics: dict[str, float]) -> None:
        """The run's settings that identify it and its headline metrics, at its end."""

    def close(self, complete: bool = True) -> None:
        """Flush and finish; called once, after a complete (or a failed) run."""


def selected(loggers: Mapping | None) -> list[str]:
    """The tracker names a config selects (`logger: {tensorboard: {...}, csv: {...}}`)."""
    return list(loggers or {})


def check_trackers(loggers: Mapping | None) -> None:
    """Refuse an unknown tracker or one whose package is missing, before anything runs."""
    for name in selected(loggers):
        entry = TRACKERS.get(name)
        if entry is None:
            raise ConfigError(
                f"logger={name}: unknown logger {name!r}; valid loggers are: "
                f"{', '.join(TRACKERS)} (several at once: logger=[tensorboard,csv])."
            )
        if entry.package and importlib.util.find_spec(entry.package) is None:
            raise ConfigError(
                f"logger={name} needs the {entry.package} package, which is not installed: "
                f"pip install 'rainbow-runner[{name}]' (or, in the repository, bash "
                f"scripts/setup.sh test,sweep,{name}), or leave {name} out of logger=[...]."
            )
    wandb_mode = (loggers or {}).get("wandb", {}).get("mode", "offline")
    if wandb_mode not in ("offline", "online", "disabled"):
        raise ConfigError(
            f"logger.wandb.mode={wandb_mode}: unknown mode; valid modes are: offline, online, "
            f"disabled."
        )


def open_trackers(loggers: Mapping | None, context: RunContext) -> list[Tracker]:
    """The selected trackers, each imported now and given its options from conf/logger/."""
    trackers = []
    for name in selected(loggers):
        entry = TRACKERS[name]
        module = importlib.import_module(f"{__name__}.{entry.module}")
        options = dict((loggers or {})[name] or {})
        trackers.append(getattr(module, entry.cls)(context, **options))
    return trackers
