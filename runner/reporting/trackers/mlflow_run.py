"""logger=mlflow: an MLflow run, by default in a file store under <run dir>/mlruns (no server;
`mlflow ui --backend-store-uri <run dir>/mlruns`), or in logger.mlflow.tracking_uri."""

from __future__ import annotations

import os

from rainbow_runner.runner.reporting.settings import flatten, setting_text
from rainbow_runner.runner.reporting.trackers import RunContext, Tracker

PARAMS_PER_CALL = 100  # MLflow's log_batch limit


class MlflowTracker(Tracker):
    """The resolved config as params (dotted keys), scalars with their step, the config as
    config.yaml, the headline metrics at the end; the run is ended FINISHED or FAILED."""

    def __init__(
        self,
        context: RunContext,
        tracking_uri: str | None = None,
        experiment: str = "rainbow-runner",
        run_name: str | None = None,
    ) -> None:
        self.context = context
        self.tracking_uri = tracking_uri or (context.run_dir / "mlruns").resolve().as_uri()
        self.experiment = experiment
        self.run_name = run_name or context.run_dir.name
        self.client = None
        self.run_id = ""

    def started(self):
        if self.client is None:
            if self.tracking_uri.startswith("file:"):  # MLflow 3 asks for this to use files
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            found = self.client.get_experiment_by_name(self.experiment)
            experiment_id = (
                found.experiment_id if found else self.client.create_experiment(self.experiment)
            )
            self.run_id = self.client.create_run(experiment_id, run_name=self.run_name).info.run_id
            params = [Param(k, setting_text(v)) for k, v in flatten(self.context.config).items()]
            for start in range(0, len(params), PARAMS_PER_CALL):
                self.client.log_batch(self.run_id, params=params[start : start + PARAMS_PER_CALL])
        return self.client

    def scalar(self, tag: str, value: float, step: int, axis: str = "step") -> None:
        self.started().log_metric(self.run_id, tag, float(value), step=step)

    def text(self, tag: str, text: str) -> None:
        self.started().log_text(self.run_id, text, f"{tag}.yaml" if tag == "config" else tag)

    def summary(self, settings: dict, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.started().log_metric(self.run_id, name, float(value), step=0)

    def close(self, complete: bool = True) -> None:
        if self.client is not None:
            self.client.set_terminated(self.run_id, "FINISHED" if complete else "FAILED")
