"""What identifies a run in a report: every setting that can change its results, seeds aside.

A run's settings are its summary's columns plus its saved, resolved config (`.hydra/config.yaml`,
flattened to dotted keys such as `mode.reg_coef`) and its config-group choices
(`.hydra/hydra.yaml`: `optimizer`, `scheduler`, `model`). Runs are averaged only when all of them
are equal; the report shows the few that tell its rows apart.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Keys that cannot change a run's results: its seeds (averaged over) and its bookkeeping.
IGNORED = {
    "seed",
    "split_seed",
    "progress",
    "num_threads",
    "log_every",
    "resume",
    "overwrite",
    "checkpoint_every",
    "data_root",
    "download",
    "joint_acc",
    "logger",  # the trackers (group choice and logger.* options)
    "keep_checkpoint",
}
# Group choices already in the summary (by name) or implied by the resolved values.
IMPLIED_GROUPS = {"mode", "mem_manage", "dataset", "stream", "exp", "experiment"}
MISSING = "—"


def flatten(mapping: dict, prefix: str = "") -> dict:
    """{"mode": {"reg_coef": 1}} -> {"mode.reg_coef": 1}; lists become one string."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def setting_text(value) -> str:
    """A setting as compared and shown: lists joined with '+', None as 'null'."""
    if isinstance(value, list):
        return "+".join(map(str, value)) if value else "none"
    return "null" if value is None else str(value)


def saved_settings(
    run_dir: Path, summary_keys: set[str], memoryless: bool = False
) -> dict[str, str]:
    """The run's saved config and group choices, minus IGNORED and the summary's own columns
    (and, for a mode that keeps no memory, the unused memory's mem_manage.* options)."""
    from omegaconf import OmegaConf

    import rainbow_runner.runner.config  # noqa: F401  (the config's resolvers)

    settings: dict[str, str] = {}
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if hydra_file.exists():
        choices = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices") or {}
        for group, choice in OmegaConf.to_container(choices).items():
            skipped = group in IMPLIED_GROUPS or group in IGNORED
            if "/" not in group and "@" not in group and not skipped:
                settings[group] = setting_text(choice)
    config_file = run_dir / ".hydra" / "config.yaml"
    if config_file.exists():
        config = OmegaConf.load(config_file)
        try:
            container = OmegaConf.to_container(config, resolve=True)
        except Exception:  # an interpolation this version cannot resolve: compare it as written
            container = OmegaConf.to_container(config, resolve=False)
        for key, value in flatten(container).items():
            ignored = key in IGNORED or key.split(".")[0] in IGNORED
            ignored |= memoryless and key.startswith("mem_manage.")
            if not ignored and key not in summary_keys and key not in settings:
                settings[key] = setting_text(value)
    return settings


def distinguishing_keys(runs: pd.DataFrame, always: list[str], candidates: list[str]) -> list[str]:
    """The candidates, in order, that split the runs further than the keys before them do.

    A key determined by those before it (`optimizer.betas` once `optimizer` is shown, `mode.name`
    beside `mode`) is left out; the keys returned tell apart every two runs that all the
    candidates tell apart.
    """
    shown = list(always)
    count = runs[shown].drop_duplicates().shape[0] if shown else 1
    for key in candidates:
        if key in shown:
            continue
        finer = runs[[*shown, key]].drop_duplicates().shape[0]
        if finer > count:
            shown.append(key)
            count = finer
    return shown[len(always) :]
