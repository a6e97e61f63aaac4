"""Where conf/ lives, its resolvers, and the config a command line composes, without a run."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

# conf/ sits beside runner/ in the repository and inside the installed rainbow_runner package.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def memory_of(mode: str, value, absent):
    """value when the mode keeps a memory, else absent: run directories of finetune, joint and
    slda say `none`/`mem0`, not the unused default memory's name and size."""
    from rainbow_runner.datasets.choices import ChoiceError
    from rainbow_runner.methods import METHODS

    try:
        return value if METHODS.get(str(mode)).uses_memory else absent
    except ChoiceError:  # an unknown mode is reported by the run's checks, by name
        return value


if not OmegaConf.has_resolver("mul"):
    OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b))
if not OmegaConf.has_resolver("memory_of"):
    OmegaConf.register_new_resolver("memory_of", memory_of)


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `rainbow-runner <overrides>` would run with (tests, benchmarks, notebooks)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@cache
def group_options(group: str) -> dict[str, dict]:
    """conf/<group>/*.yaml as written (interpolations unresolved), by option name."""
    return {
        path.stem: OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        for path in sorted((CONFIG_DIR / group).glob("*.yaml"))
    }


def group_choice(cfg: DictConfig, group: str) -> str:
    """The conf/<group>/ option a config's group came from (`mlp400`, not the function `mlp`).

    Hydra's record of the choices when a run is in progress; otherwise (a config composed or
    loaded outside a run) the option whose literal values the group holds, else the first with
    its _target_.
    """
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get(group)
        if choice is not None:
            return str(choice)
    content = OmegaConf.to_container(cfg[group], resolve=False)
    for name, option in group_options(group).items():
        literal = {k: v for k, v in option.items() if not (isinstance(v, str) and "${" in v)}
        if all(content.get(key) == value for key, value in literal.items()):
            return name
    same_target = [
        n for n, o in group_options(group).items() if o.get("_target_") == content.get("_target_")
    ]
    return (
        same_target[0]
        if same_target
        else str(content.get("_target_", "unknown")).rsplit(".", 1)[-1]
    )
