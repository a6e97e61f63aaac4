"""logger=wandb: a Weights & Biases run, offline by default (files under <run dir>/wandb, sent
later with `wandb sync <run dir>/wandb/offline-run-*`)."""

from __future__ import annotations

import numpy as np

from rainbow_runner.runner.reporting.trackers import RunContext, Tracker

# Each axis is its own step metric, so train/* (gradient steps) and test/* (tasks) share a run.
AXIS_KEYS = {"step": "global_step", "task": "task", "samples": "samples_seen"}
AXIS_TAGS = {
    "global_step": ("train/*",),
    "task": ("train/task_loss", "test/*", "memory/*"),
    "samples_seen": ("anytime/*",),
}


class WandbTracker(Tracker):
    """wandb.init at the first value (importing wandb takes ~0.5 s), the resolved config as the
    run's config, scalars against their axis, histograms, the headline metrics in its summary."""

    def __init__(
        self,
        context: RunContext,
        project: str = "rainbow-runner",
        entity: str | None = None,
        mode: str = "offline",
        name: str | None = None,
        group: str | None = None,
        tags: list | None = None,
        dir: str = ".",
    ) -> None:
        self.context = context
        self.options = {
            "project": project,
            "entity": entity,
            "mode": mode,
            "name": name or context.run_dir.name,
            "group": group,
            "tags": list(tags or []),
            "dir": str(context.run_dir / dir),
        }
        self.run = None

    def started(self):
        if self.run is None:
            import wandb

            self.run = wandb.init(
                config=self.context.config,
                settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
                **self.options,
            )
            for key, tags in AXIS_TAGS.items():
                self.run.define_metric(key, hidden=True)
                for tag in tags:
                    self.run.define_metric(tag, step_metric=key)
        return self.run

    def scalar(self, tag: str, value: float, step: int, axis: str = "step") -> None:
        if axis == "final":
            self.started().summary[tag] = value
            return
        self.started().log({tag: value, AXIS_KEYS[axis]: step})

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        import wandb

        if len(values):
            self.started().log({tag: wandb.Histogram(values), "task": step})

    def summary(self, settings: dict, metrics: dict[str, float]) -> None:
        self.started().summary.update({name: float(value) for name, value in metrics.items()})

    def close(self, complete: bool = True) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if complete else 1)
