"""logger=csv: every scalar as a row of one CSV (tag, axis, step, value); no extra package."""

from __future__ import annotations

import csv

import pandas as pd

from rainbow_runner.runner.files import replace_atomically
from rainbow_runner.runner.reporting.trackers import RunContext, Tracker

COLUMNS = ("tag", "axis", "step", "value")


class CsvTracker(Tracker):
    """Rows appended as they come (flushed at each task's rows and at the end); a resumed run
    first drops the rows an interrupted run logged past its checkpoint."""

    def __init__(self, context: RunContext, file: str = "results/scalars.csv") -> None:
        self.path = context.run_dir / file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if context.purge_step is not None and self.path.exists():
            self._drop_after(context.purge_step, context.tasks_done)
        else:
            self.path.write_text(",".join(COLUMNS) + "\n")
        self.handle = self.path.open("a", newline="")
        self.rows = csv.writer(self.handle)

    def _drop_after(self, purge_step: int, tasks_done: int) -> None:
        rows = pd.read_csv(self.path)
        keep = ((rows["axis"] == "step") & (rows["step"] < purge_step)) | (
            (rows["axis"] == "task") & (rows["step"] < tasks_done)
        )
        keep |= ~rows["axis"].isin(["step", "task", "final"])  # samples: no checkpoint count
        text = rows[keep].to_csv(index=False)
        replace_atomically(self.path, lambda handle: handle.write(text.encode()))

    def scalar(self, tag: str, value: float, step: int, axis: str = "step") -> None:
        self.rows.writerow((tag, axis, step, value))
        if axis != "step":
            self.handle.flush()

    def summary(self, settings: dict, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.scalar(f"summary/{name}", float(value), 0, "final")

    def close(self, complete: bool = True) -> None:
        self.handle.close()
