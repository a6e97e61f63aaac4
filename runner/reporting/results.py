"""Run outputs: per-task CSVs rewritten after every task, a summary, the trackers' records."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from rainbow_runner.runner.files import replace_atomically

HEADLINE_METRICS = ("A_last", "A_avg", "F_last", "I_last")
SUMMARY_RESULTS = {*HEADLINE_METRICS, "BWT", "FWT", "tasks_done", "seconds", "status"}


def write_csv_atomically(frame: pd.DataFrame, path: Path) -> None:
    """A reader, a crash or a power cut never sees half a CSV (runner/files.py)."""
    text = io.StringIO()
    frame.to_csv(text, index=False)
    replace_atomically(Path(path), lambda handle: handle.write(text.getvalue().encode()))


class ResultWriter:
    """Owns results/ and the trackers (logger=..., TensorBoard by default) of one run.

    With open_now=False nothing is written until open(): a run builds and restores everything
    first, and only a run that passed every check touches its directory.
    """

    def __init__(
        self,
        run_dir: Path,
        tensorboard: bool = True,
        purge_step: int | None = None,
        open_now: bool = True,
        loggers: Mapping | None = None,
        config: dict | None = None,
    ) -> None:
        """loggers: the config's `logger` (tracker name -> options); None: TensorBoard alone
        (or nothing with tensorboard=False). config: the resolved config trackers record."""
        self.run_dir = Path(run_dir)
        self.results_dir = self.run_dir / "results"
        if loggers is None:
            loggers = {"tensorboard": {}} if tensorboard else {}
        self.loggers = loggers
        self.config = config or {}
        self.purge_step = purge_step
        self.task_rows: list[dict] = []
        self.acc_rows: list[np.ndarray] = []
        self.trackers: list = []
        self.opened = False
        self._tables_pending = False
        if open_now:
            self.open()

    def open(self) -> None:
        """Create results/ and the trackers; write the tables restored so far."""
        if self.opened:
            return
        self.opened = True
        self.results_dir.mkdir(parents=True, exist_ok=True)
        if self.loggers:
            from rainbow_runner.runner.reporting.trackers import RunContext, open_trackers

            context = RunContext(self.run_dir, self.config, self.purge_step, len(self.task_rows))
            self.trackers = open_trackers(self.loggers, context)
        if self._tables_pending:
            self._write_tables()

    def scalar(self, tag: str, value: float, step: int, axis: str = "step") -> None:
        """axis: "step" (gradient steps), "task" (task index) or "final" (see Tracker)."""
        for tracker in self.trackers:
            tracker.scalar(tag, value, step, axis)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        for tracker in self.trackers:
            tracker.histogram(tag, values, step)

    def text(self, tag: str, text: str) -> None:
        for tracker in self.trackers:
            tracker.text(tag, text)

    def hparams(self, settings: dict, metrics: dict[str, float]) -> None:
        """The run's identifying settings and headline metrics (TensorBoard's HParams tab, a
        tracker's summary)."""
        for tracker in self.trackers:
            tracker.summary(settings, metrics)

    def add_task(self, row: dict, acc_row: np.ndarray) -> None:
        """Record one task's results and rewrite tasks.csv and acc_matrix.csv."""
        self.task_rows.append(row)
        self.acc_rows.append(np.asarray(acc_row, dtype=float))
        self._write_tables()

    def _write_tables(self) -> None:
        if not self.opened:
            self._tables_pending = True
            return
        self._tables_pending = False
        write_csv_atomically(pd.DataFrame(self.task_rows), self.results_dir / "tasks.csv")
        matrix = pd.DataFrame(
            np.vstack(self.acc_rows),
            columns=[f"task{j}" for j in range(len(self.acc_rows[0]))],
        )
        matrix.insert(0, "after_task", range(len(self.acc_rows)))
        write_csv_atomically(matrix, self.results_dir / "acc_matrix.csv")

    def state_dict(self) -> dict:
        """The rows so far, so a resumed run rewrites the same tasks.csv and acc_matrix.csv."""
        return {"task_rows": [dict(row) for row in self.task_rows], "acc_rows": list(self.acc_rows)}

    def load_state_dict(self, state: dict) -> None:
        self.task_rows = [dict(row) for row in state["task_rows"]]
        self.acc_rows = [np.asarray(row, dtype=float) for row in state["acc_rows"]]
        if self.task_rows:  # back to the checkpoint's rows, even if no task is left to run
            self._write_tables()

    def write_task_row(self, table: str, row: dict) -> None:
        """Rewrite results/<table>.csv with this task's row after the earlier tasks' rows
        (a resumed run drops rows of tasks it runs again); row["task"] names the task."""
        path = self.results_dir / f"{table}.csv"
        rows = pd.read_csv(path) if path.exists() else pd.DataFrame()
        if len(rows):
            rows = rows[rows["task"] < row["task"]]
        frame = pd.concat([rows, pd.DataFrame([row])]) if len(rows) else pd.DataFrame([row])
        write_csv_atomically(frame, path)

    def write_summary(self, summary: dict) -> None:
        self.open()
        write_csv_atomically(pd.DataFrame([summary]), self.results_dir / "summary.csv")

    def write_json(self, name: str, content: dict) -> None:
        text = json.dumps(content, indent=2, default=str)
        replace_atomically(self.run_dir / name, lambda handle: handle.write(text.encode()))

    def close(self, complete: bool = True) -> None:
        """Finish every tracker (complete=False: the run failed or was interrupted)."""
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.close(complete)


def command_line_overrides() -> list[str]:
    """The job's overrides as typed (none outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def hparams_of(summary: dict, overrides: list[str]) -> dict:
    """What identifies a run in TensorBoard's HParams tab: the summary's settings, then every
    command-line override (`mode.reg_coef=1`) that is not already one of them."""
    settings = settings_of(summary)
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if not key.startswith("hydra."):
            settings.setdefault(key, value)
    return settings


def settings_of(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key not in SUMMARY_RESULTS}


def headline_metrics(summary: dict) -> dict:
    return {name: summary[name] for name in HEADLINE_METRICS if name in summary}
