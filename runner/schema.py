"""The top-level settings: each one's type, range and meaning, in one table.

check_settings() turns every wrong value into `<key>=<value> must be ...` before anything runs;
the same table can print the settings' help. Keys a config does not hold are skipped (a group
may move a setting elsewhere), keys the table does not know are left to their owners.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

SEED_MAX = 2**32 - 1  # numpy's seeds


class ConfigError(ValueError):
    """A setting is out of range; the message names the value and what is allowed."""


def shown(value: Any) -> str:
    """A value as it would be typed on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(shown(item) for item in value) + "]"
    return str(value)


@dataclass(frozen=True)
class Setting:
    """One setting: its kind ('int', 'number', 'bool', 'choice', 'list', 'text'), limits, help.

    choices may be a callable, so registries are consulted only when a value is checked.
    """

    kind: str
    help: str
    low: float | None = None
    high: float | None = None
    above_low: bool = False  # low itself is not allowed (lr > 0)
    below_high: bool = False  # high itself is not allowed (val_share < 1)
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] = ()
    nullable: bool = False
    also: tuple[str, ...] = ()  # words accepted besides the kind's values (crop_padding: auto)

    def allowed(self) -> str:
        """What the setting takes, as a phrase after 'must be'."""
        if self.kind in ("int", "number"):
            what = "a whole number" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None and self.below_high:
                phrase = f"strictly between {shown(self.low)} and {shown(self.high)} ({what})"
            elif self.low is not None and self.high is not None:
                phrase = f"between {shown(self.low)} and {shown(self.high)} ({what})"
            elif self.above_low:
                phrase = f"greater than {shown(self.low)} ({what})"
            elif self.low is not None:
                phrase = f"{shown(self.low)} or more ({what})"
            else:
                phrase = what
        elif self.kind == "bool":
            phrase = "true or false"
        elif self.kind == "choice":
            phrase = "one of " + ", ".join(shown(c) for c in self.options())
        elif self.kind == "list":
            phrase = "a list of " + ", ".join(self.options()) + " (e.g. [cutmix,autoaug] or [])"
        else:
            phrase = "a non-empty text"
        words = "".join(f" or {word}" for word in self.also)
        return phrase + words + (" or null" if self.nullable else "")

    def options(self) -> tuple[Any, ...]:
        return self.choices() if callable(self.choices) else self.choices

    def fits(self, value: Any) -> bool:
        """Whether value is of the setting's type and inside its range."""
        if value is None:
            return self.nullable
        if isinstance(value, str) and value in self.also:
            return True
        if self.kind in ("int", "number"):
            numeric = (int,) if self.kind == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, numeric):
                return False
            if not math.isfinite(value):
                return False
            if self.low is not None and (value <= self.low if self.above_low else value < self.low):
                return False
            if self.high is not None and self.below_high:
                return value < self.high
            return self.high is None or value <= self.high
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.options())
        if self.kind == "list":
            options = self.options()
            return isinstance(value, (list, ListConfig)) and all(
                isinstance(v, str) and v in options for v in value
            )
        return isinstance(value, str) and bool(value)


def _trans_entries() -> tuple[str, ...]:
    from rainbow_runner.datasets.augment.pipeline import BATCH_MIXES, IMAGE_TRANSFORMS

    return tuple(sorted(IMAGE_TRANSFORMS) + sorted(BATCH_MIXES))


def _uncertainty_metrics() -> tuple[str, ...]:
    from rainbow_runner.memory.uncertainty import UNCERTAINTY_METRICS

    return tuple(UNCERTAINTY_METRICS)


def _amp_modes() -> tuple[Any, ...]:
    from rainbow_runner.runner.models.speed import AMP_CHOICES

    return (*AMP_CHOICES, False)


SWITCH = ("auto", True, False, "on", "off")

# Every setting the runner reads from the top level (and the stream/exp numbers), with the text
# of conf/config.yaml's comments.
SETTINGS: dict[str, Setting] = {
    "scenario": Setting(
        "choice",
        "class_incremental (no task id at test), task_incremental (task id known, multi-head), "
        "domain_incremental (same classes, inputs transformed per task)",
        choices=("class_incremental", "task_incremental", "domain_incremental"),
    ),
    "seed": Setting("int", "training seed (model init, batch order, memory draws)", 0, SEED_MAX),
    "split_seed": Setting("int", "seed of the class order and the task split", 0, SEED_MAX),
    "tuning_tasks": Setting("int", "tasks of a separate tuning stream (0 = reported)", 0),
    "n_tasks": Setting("int", "number of tasks; must divide the data set's class count", 1),
    "n_epoch": Setting("int", "offline: epochs per task; online: epochs on the memory", 0),
    "batchsize": Setting("int", "stream samples per gradient step", 1),
    "mem_batchsize": Setting("int", "memory samples added to each step by replaying modes", 0),
    "lr": Setting("number", "learning rate", 0, above_low=True),
    "mem_size": Setting("int", "episodic memory capacity in samples (0 = no memory)", 0),
    "trans": Setting("list", "augmentations on top of the base crop/flip", choices=_trans_entries),
    "warmup_epochs": Setting("int", "the first N passes of each task run at 0.1*lr", 0),
    "lr_schedule_per": Setting(
        "choice",
        "the lr schedule steps per epoch (restarted each task) or per task",
        choices=("epoch", "task"),
    ),
    "grad_clip": Setting("number", "max total gradient norm per step (0 = off)", 0, nullable=True),
    "patience": Setting("int", "early stopping: epochs without a better validation accuracy", 0),
    "val_share": Setting(
        "number",
        "share of each task held out for early stopping",
        0,
        1,
        above_low=True,
        below_high=True,
    ),
    "restore_best": Setting("bool", "end each task with its best validation epoch's weights"),
    "crop_padding": Setting(
        "int", "base random crop's padding in px (0 = no crop)", 0, also=("auto",)
    ),
    "flip": Setting("choice", "base random horizontal flip", choices=("auto", True, False)),
    "replay": Setting(
        "choice", "offline replay: memory in every step or appended", choices=("per_step", "concat")
    ),
    "uncert_metric": Setting(
        "choice",
        "deprecated: mem_manage.metric",
        choices=_uncertainty_metrics,
        nullable=True,
    ),
    "uncert_k": Setting("int", "deprecated: mem_manage.k", 1, nullable=True),
    "topk": Setting("int", "also report top-k accuracy (at most the class count)", 1),
    "device": Setting("text", "auto (cuda when available), cpu or cuda[:N]"),
    "amp": Setting("choice", "mixed precision", choices=_amp_modes),
    "channels_last": Setting("choice", "NHWC convolutions", choices=SWITCH),
    "compile": Setting("choice", "torch.compile the backbone", choices=SWITCH),
    "augment_chunk": Setting("int", "stream images prepared in one call (0 = one per step)", 0),
    "cuda_graphs": Setting(
        "choice", "replay the autoaug/randaug passes as CUDA graphs", choices=SWITCH
    ),
    "num_threads": Setting(
        "int", "CPU threads for torch (0 = by the model's size, or the job's share)", 0
    ),
    "data_root": Setting("text", "where data sets are looked for"),
    "download": Setting("bool", "let torchvision download MNIST/Fashion-MNIST/CIFAR"),
    "eval_batchsize": Setting("int", "test-time batch size", 1),
    "eval_period": Setting("int", "anytime evaluation every N stream samples (0 = off)", 0),
    "joint_acc": Setting(
        "number", "joint-training accuracy (%) of this setting, for I_last", 0, 100, nullable=True
    ),
    "log_every": Setting("int", "TensorBoard/progress update (and loss sum) every N steps", 1),
    "progress": Setting("bool", "show a progress bar"),
    "resume": Setting("bool", "continue from <run dir>/checkpoint.pt"),
    "overwrite": Setting("bool", "replace the earlier run's outputs in the run directory"),
    "checkpoint_every": Setting("int", "also checkpoint inside a task every N steps", 0),
    "keep_checkpoint": Setting("bool", "keep checkpoint.pt after a complete run"),
    "stream.online_iter": Setting("int", "gradient steps per incoming batch", 1),
    "stream.memory_epochs": Setting("int", "epochs on the memory alone after each task", 0),
    "exp.blurry": Setting("number", "% of each class's samples dealt to other tasks", 0, 100),
    "exp.disjoint_classes": Setting("number", "i-Blurry: % of classes in one period", 0, 100),
    "exp.task_boundaries": Setting("bool", "i-Blurry: the periods act as tasks (false: task-free)"),
}

_ABSENT = object()

# A value of the wrong kind often has an obvious intended form: say it.
_HINTS: dict[str, Callable[[Any], str]] = {
    "trans": lambda v: f" (a single entry is written trans=[{v}])" if isinstance(v, str) else "",
}


def setting_error(key: str, value: Any, setting: Setting) -> ConfigError:
    """The one-paragraph message for a value that does not fit its setting."""
    about = f"({key}: {setting.help})"
    if setting.kind == "list" and isinstance(value, list):
        unknown = [v for v in value if not (isinstance(v, str) and v in setting.options())]
        if unknown:
            return ConfigError(
                f"unknown {key} entry {shown(unknown[0])!r} in {key}={shown(value)}; valid "
                f"entries are: {', '.join(setting.options())} {about}."
            )
    if setting.kind == "choice" and isinstance(value, str):
        return ConfigError(
            f"{key}={value}: unknown {key} {value!r}; valid choices are: "
            f"{', '.join(shown(c) for c in setting.options())} {about}."
        )
    hint = _HINTS.get(key, lambda _v: "")(value)
    return ConfigError(f"{key}={shown(value)} must be {setting.allowed()}{hint} {about}.")


def check_settings(cfg: DictConfig) -> None:
    """Raise ConfigError for the first setting of the table whose value does not fit."""
    for key, setting in SETTINGS.items():
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
        except OmegaConfBaseException as error:
            reason = str(error).splitlines()[0]
            raise ConfigError(f"{key} cannot be read from the config: {reason}.") from error
        if value is _ABSENT:
            continue
        if isinstance(value, ListConfig):
            value = list(value)
        if not setting.fits(value):
            raise setting_error(key, value, setting)


def settings_help() -> str:
    """One line per setting: key, what it takes, what it is (for a --help listing)."""
    return "\n".join(f"{key}: {s.allowed()}. {s.help}" for key, s in SETTINGS.items())
