"""`rainbow-runner --help`: what the runner does, its groups and their options, every key.

Built from conf/ (the groups, their options, the comment on each group's defaults line) and
runner/schema.py (each top-level key's range and one-line description), so it cannot drift.
"""

from __future__ import annotations

import re
import textwrap

from omegaconf import OmegaConf

from rainbow_runner.runner.config import CONFIG_DIR
from rainbow_runner.runner.schema import SETTINGS, Setting, shown

HIDDEN_GROUPS = {"mem_manage_by_mode", "hydra"}  # internal: the mode's default memory
BUILT_IN_LAUNCHERS = ("basic", "submitit_local")  # Hydra's and its submitit plugin's own

INTRODUCTION = """\
rainbow-runner: continual-learning experiments from the command line (Hydra).

Pick a method, a memory, a data set, a stream and a split as group=option, change any key as
key=value; the runner trains task after task, evaluates after each, and writes run.log,
results/ (tasks.csv, acc_matrix.csv, summary.csv), tb/ (TensorBoard; logger=[...] adds csv,
wandb, mlflow) and .hydra/ into its run directory. Exit status: 0 done, 2 bad input (one
`error: ...` paragraph), 1 the run failed.

Usage: rainbow-runner [--multirun] [group=option ...] [key=value ...]
       (also `python -m rainbow_runner`, or `python -m runner` in the repository)"""

EXAMPLES = """\
Examples:
  rainbow-runner                                      # mode=rm on the embedded digits (~20 s)
  rainbow-runner mode=er mem_manage=reservoir dataset=fashion_mnist exp=disjoint seed=1
  rainbow-runner mode=ewc mode.reg_coef=10            # a method knob (conf/mode/ewc.yaml)
  rainbow-runner experiment=cifar10_blurry10_online mode=rm trans=[cutmix,autoaug]
  rainbow-runner --multirun mode=er,rm 'seed=range(1,4)'   # a sweep, then its report
  rainbow-runner mode=finetune --cfg job              # print the composed config, run nothing
  rainbow-runner 'logger=[tensorboard,wandb]'         # also an offline W&B run (<run dir>/wandb)
  rainbow-report multirun/<time>                      # mean ± std over seeds per configuration

More: --hydra-help (Hydra's own flags), README.md, docs/."""


def group_comments() -> dict[str, str]:
    """The comment after each group's line in conf/config.yaml's defaults list."""
    comments = {}
    for line in (CONFIG_DIR / "config.yaml").read_text().splitlines():
        match = re.match(r"\s+- (?:optional )?(?:override )?([\w/@]+):\s*\S+\s*#\s*(.*)", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def groups() -> dict[str, list[str]]:
    """Every user-facing config group under conf/ with its options."""
    found = {
        folder.name: sorted(path.stem for path in folder.glob("*.yaml"))
        for folder in sorted(CONFIG_DIR.iterdir())
        if folder.is_dir() and folder.name not in HIDDEN_GROUPS and not folder.name.startswith("_")
    }
    launchers = sorted(path.stem for path in (CONFIG_DIR / "hydra" / "launcher").glob("*.yaml"))
    found["hydra/launcher"] = [*BUILT_IN_LAUNCHERS, *launchers]
    return found


def allowed(setting: Setting) -> str:
    """The setting's range; a registry's names (read only when a value is checked) by kind."""
    if callable(setting.choices):
        return {"list": "a list", "choice": "a name"}.get(setting.kind, setting.kind) + (
            " or null" if setting.nullable else ""
        )
    return setting.allowed()


def key_lines() -> list[str]:
    """One line per key of conf/config.yaml (and the stream/exp numbers in SETTINGS)."""
    defaults = OmegaConf.load(CONFIG_DIR / "config.yaml")
    lines = []
    for key, setting in SETTINGS.items():
        default = OmegaConf.select(defaults, key, default=None) if "." not in key else None
        if key in defaults:
            raw = defaults._get_node(key)._value()  # interpolations as written: ${seed}
            default = raw if isinstance(raw, str) else shown(default)
        name = f"{key}={default}" if default is not None else key
        lines.append(f"  {name:<24} {setting.help} [{allowed(setting)}]")
    return lines


def help_text() -> str:
    """The text `--help` prints."""
    comments = group_comments()
    text = [INTRODUCTION, "", "Groups (group=option; the first line of each file says more):"]
    for group, options in groups().items():
        comment = comments.get(group) or ("where sweep jobs run" if "launcher" in group else "")
        text.append(f"  {group:<16} {comment}")
        indent = " " * 21
        text.append(
            textwrap.fill(", ".join(options), 100, initial_indent=indent, subsequent_indent=indent)
        )
    text += ["", "Keys (key=default, description [allowed values]):", *key_lines()]
    text += [
        "  mode.<knob>, mem_manage.<knob>   the method's and the memory's arguments (conf/mode/,"
        " conf/mem_manage/)",
        "",
        EXAMPLES,
    ]
    return "\n".join(text) + "\n"
