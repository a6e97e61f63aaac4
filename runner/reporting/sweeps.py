"""Which jobs a sweep directory holds: those its multirun.yaml launched, and no others."""

from __future__ import annotations

from pathlib import Path

from rainbow_runner.runner.rundir import sweep_overrides

SWEEP_RECORD = "multirun.yaml"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _job_key(overrides: list[str]) -> tuple[str, ...]:
    """A job's overrides as compared: sorted, without those a continuation may change."""
    return tuple(sorted(sweep_overrides(overrides)))


def sweep_jobs(record: Path) -> set[tuple[str, ...]]:
    """The jobs a multirun.yaml launched, as their override lists (Hydra's basic sweeper)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from rainbow_runner.runner.config import CONFIG_DIR

    config = OmegaConf.load(record)
    sweeper = OmegaConf.select(config, "hydra.sweeper._target_")
    if sweeper != BASIC_SWEEPER:
        raise ValueError(f"it was swept by {sweeper}, whose jobs cannot be listed")
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += list(config.hydra.overrides.task)
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONFIG_DIR)))
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    batches = BasicSweeper.split_arguments(parsed, None)
    return {_job_key(job) for batch in batches for job in batch}


def sweep_record_of(run_dir: Path) -> Path | None:
    """The multirun.yaml of the sweep directory run_dir lies in (None for a single run)."""
    for parent in run_dir.parents:
        if (parent / SWEEP_RECORD).exists():
            return parent / SWEEP_RECORD
    return None


def foreign_runs(run_dirs: list[Path]) -> tuple[list[Path], list[str]]:
    """The run directories a sweep directory's multirun.yaml did not launch, with why.

    A second sweep written into the same sweep directory replaces multirun.yaml; the first
    sweep's jobs are then no part of what the directory says it holds, and are not merged.
    """
    from omegaconf import OmegaConf

    foreign, problems, jobs_of = [], [], {}
    for run_dir in run_dirs:
        record = sweep_record_of(run_dir)
        overrides_file = run_dir / ".hydra" / "overrides.yaml"
        if record is None or not overrides_file.exists():
            continue
        if record not in jobs_of:
            try:
                jobs_of[record] = sweep_jobs(record)
            except Exception as error:  # an unreadable record: say so, keep its jobs
                jobs_of[record] = None
                problems.append(f"`{record}`: its jobs could not be listed ({error}); not checked")
        if jobs_of[record] is None:
            continue
        overrides = [str(o) for o in OmegaConf.load(overrides_file)]
        if _job_key(overrides) not in jobs_of[record]:
            foreign.append(run_dir)
            problems.append(
                f"`{run_dir}`: not a job of `{record}` ({' '.join(overrides)}); another sweep "
                f"wrote it into the same directory, so it is not merged"
            )
    return foreign, problems
