"""`rainbow_runner.run(overrides, run_dir)`: one run from Python (notebooks, scripts).

It goes through Hydra as the command line does, so the run directory is the same: run.log,
.hydra/ (config.yaml, hydra.yaml, overrides.yaml), results/, tb/, run_info.json. Bad input
raises the error the command line reports (ConfigError, DatasetError, ...; RunRejected for a
refused run directory), never exits.
"""

from __future__ import annotations

from pathlib import Path

from rainbow_runner.runner import cli  # noqa: F401  (OMP_WAIT_POLICY before torch starts)

JOB_NAME = "cli"  # Hydra's job name for `rainbow-runner` / `python -m runner`


class RunRejected(ValueError):
    """The settings or the run directory were refused before the run (the message says why)."""


def run_job(cfg) -> dict:
    """The job Hydra runs: the run, into Hydra's output directory, returning the summary row."""
    from hydra.core.hydra_config import HydraConfig

    from rainbow_runner.runner.app import run as run_experiment

    return run_experiment(cfg, Path(HydraConfig.get().runtime.output_dir))


def run(overrides: list[str] | None = None, run_dir: str | Path | None = None) -> dict:
    """Run one experiment as `rainbow-runner <overrides>` would and return its summary row.

    Args:
        overrides: command-line style settings, e.g. ["mode=er", "seed=2", "mode.reg_coef=5"].
        run_dir: the run directory (hydra.run.dir); None: the command line's default under
            outputs/ (relative to the current directory).
    """
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    from rainbow_runner.runner.config import CONFIG_DIR, compose_config
    from rainbow_runner.runner.config_check import check_config
    from rainbow_runner.runner.rundir import release_all

    overrides = list(overrides or [])
    check_config(compose_config(overrides))  # a wrong setting raises its ConfigError here
    if run_dir is not None:
        overrides.append(f"hydra.run.dir={Path(run_dir).resolve()}")
    GlobalHydra.instance().clear()
    try:
        hydra = Hydra.create_main_hydra2(
            task_name=JOB_NAME, config_search_path=create_config_search_path(str(CONFIG_DIR))
        )
        try:
            result = hydra.run(config_name="config", task_function=run_job, overrides=overrides)
        except SystemExit as refused:  # the guard callback stops a refused run with exit 2
            raise RunRejected(
                f"the run was refused (exit status {refused.code}); the reason is printed above."
            ) from None
        return result.return_value
    finally:
        GlobalHydra.instance().clear()
        release_all()
