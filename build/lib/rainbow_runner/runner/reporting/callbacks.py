"""Hydra callbacks: the cross-run report, written when a multirun ends (conf/config.yaml)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


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
