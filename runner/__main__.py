"""`python -m runner key=value ...`: the Hydra entry point."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import runner  # noqa: F401  (thread policy and resolvers before torch starts)
from runner.config import CONFIG_DIR


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Run one job; a user error becomes one clear paragraph and exit status 2."""
    from runner.app import USER_ERRORS, run

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
