"""logger=tensorboard: event files under <run dir>/tb (scalars, histograms, config, HParams)."""

from __future__ import annotations

import numpy as np

from rainbow_runner.runner.reporting.trackers import RunContext, Tracker


class TensorBoardTracker(Tracker):
    """TensorBoard's writer, created (torch.utils.tensorboard imported, ~1 s) at the first
    event, so training starts without waiting for it."""

    def __init__(self, context: RunContext, dir: str = "tb") -> None:
        self.log_dir = context.run_dir / dir
        self.purge_step = context.purge_step
        self.events = None

    def writer(self):
        if self.events is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run hides the events an interrupted run logged past it.
            self.events = SummaryWriter(log_dir=str(self.log_dir), purge_step=self.purge_step)
        return self.events

    def scalar(self, tag: str, value: float, step: int, axis: str = "step") -> None:
        self.writer().add_scalar(tag, value, step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        if len(values):
            self.writer().add_histogram(tag, values, step)

    def text(self, tag: str, text: str) -> None:
        """Shown as a code block (TensorBoard renders text as Markdown)."""
        self.writer().add_text(tag, "    " + text.replace("\n", "\n    "), 0)

    def summary(self, settings: dict, metrics: dict[str, float]) -> None:
        """The HParams tab's record of this run: its settings and its headline metrics.

        Written into the run's own event stream (torch's add_hparams would open a second run
        directory), with each metric also as a scalar `summary/<name>` the tab reads.
        """
        from torch.utils.tensorboard.summary import hparams

        values = {key: value for key, value in settings.items() if value is not None}
        tags = {f"summary/{name}": float(value) for name, value in metrics.items()}
        experiment, session_start, session_end = hparams(values, tags)
        file_writer = self.writer()._get_file_writer()
        for record in (experiment, session_start, session_end):
            file_writer.add_summary(record)
        for tag, value in tags.items():
            self.events.add_scalar(tag, value, 0)

    def close(self, complete: bool = True) -> None:
        if self.events is not None:
            self.events.flush()
            self.events.close()
