"""`rainbow-runner key=value ...` (also `python -m runner` in the repository): the Hydra entry."""

from __future__ import annotations

import os

# OpenMP threads that spin-wait slow every job down 5-15x when jobs share the CPU (sweeps);
# this must be set before torch starts its thread pool. Users may still override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from rainbow_runner.runner.config import CONFIG_DIR  # noqa: E402


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Run one job; a user error becomes one clear paragraph and exit status 2."""
    from rainbow_runner.runner.app import USER_ERRORS, run

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, run_dir)
    except USER_ERRORS as error:
        logging.getLogger("runner").error("%s: %s", type(error).__name__, error)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # exiting here would kill the sweep's other jobs; the launcher records it
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return float(summary["A_last"])


if __name__ == "__main__":
    main()
