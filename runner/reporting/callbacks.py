"""Hydra callbacks (conf/config.yaml): a guard before a run or sweep, the report after a sweep."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)


def _directory(config: DictConfig, key: str) -> Path:
    """hydra.run.dir or hydra.sweep.dir, resolved; an unresolvable value is the user's error."""
    from rainbow_runner.runner.rundir import RunDirectoryError

    try:
        return Path(str(OmegaConf.select(config, key, throw_on_missing=True)))
    except OmegaConfBaseException as error:
        reason = str(error).splitlines()[0]
        raise RunDirectoryError(f"{key} cannot be resolved: {reason}.") from error


class RunDirectoryGuard(Callback):
    """Runs before Hydra creates a run's directory, writes .hydra/ or opens run.log in it.

    A single run's settings are checked and its directory locked here, so a rejected run (or a
    second run in a busy directory) writes nothing there; the run itself (runner/app.py) reuses
    this process's lock. A sweep locks its sweep directory and refuses a second sweep in it.
    """

    def __init__(self) -> None:
        self.run_directory = None
        self.sweep_lock = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from rainbow_runner.runner import rundir
        from rainbow_runner.runner.app import USER_ERRORS
        from rainbow_runner.runner.cli import reject
        from rainbow_runner.runner.config_check import check_config

        try:
            check_config(config)
            self.run_directory = rundir.claim(_directory(config, "hydra.run.dir"))
        except USER_ERRORS as error:
            reject(error)  # an exception would only become a warning here
        self.run_directory.remember_hydra_files()

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rainbow_runner.runner import rundir

        if self.run_directory is not None:
            rundir.release(self.run_directory)
            self.run_directory = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from rainbow_runner.runner.cli import reject
        from rainbow_runner.runner.rundir import RunDirectoryError, claim_sweep

        try:
            self.sweep_lock = claim_sweep(
                _directory(config, "hydra.sweep.dir"),
                list(config.hydra.overrides.task),
                bool(config.get("resume", False)),
                bool(config.get("overwrite", False)),
            )
        except RunDirectoryError as error:
            reject(error)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.sweep_lock is not None:
            self.sweep_lock.release()
            self.sweep_lock = None


class SweepReport(Callback):
    """Writes report.md/csv and the plots into the sweep directory once every job has ended."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rainbow_runner.runner.reporting.report import write_report

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            report = write_report([sweep_dir], sweep_dir)
        except Exception as error:  # a finished sweep must not fail because of its report
            log.warning("no report for %s: %s: %s", sweep_dir, type(error).__name__, error)
            return
        log.info("report: %s", sweep_dir / "report.md")
        print(report.markdown, flush=True)
