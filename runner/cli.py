"""`rainbow-runner key=value ...` (also `python -m runner` in the repository): the Hydra entry.

Exit status: 0 when the run (or every job of a sweep) completed; 2 for bad input of any kind,
found before training (a command line Hydra cannot compose, a wrong value, a missing data set,
a bad split, an unusable checkpoint, a busy or occupied run directory) or during it (a
non-finite loss), always as one `error: ...` paragraph; 1 when the run itself failed (a bug, out
of memory), with a traceback.
"""

from __future__ import annotations

import os

# OpenMP threads that spin-wait slow every job down 5-15x when jobs share the CPU (sweeps);
# this must be set before torch starts its thread pool. Users may still override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NoReturn  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.errors import (  # noqa: E402
    HydraException,
    MissingConfigException,
    OverrideParseException,
)
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from omegaconf.errors import InterpolationResolutionError  # noqa: E402

from rainbow_runner.runner.config import CONFIG_DIR  # noqa: E402

FULL_ERROR = "HYDRA_FULL_ERROR"


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float:
    """Run one job; a user error becomes one clear paragraph and exit status 2."""
    from rainbow_runner.runner.app import USER_ERRORS, run

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, run_dir)
    except (*USER_ERRORS, HydraException) as error:  # HydraException: a bad _target_ argument
        logging.getLogger("runner").error("%s: %s", type(error).__name__, error)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # exiting here would kill the sweep's other jobs; the launcher records it
        reject(error)
    return float(summary["A_last"])


def reject(error: BaseException) -> NoReturn:
    """Stop with the error as one `error: ...` paragraph and exit status 2.

    SystemExit also passes through Hydra's callbacks, which turn exceptions into warnings.
    """
    print(f"error: {one_paragraph(error)}", file=sys.stderr, flush=True)
    sys.exit(2)


def bad_input(error: BaseException) -> bool:
    """Errors that mean the command line, the config, the data or the directory is wrong."""
    from rainbow_runner.runner.app import USER_ERRORS

    return isinstance(error, (*USER_ERRORS, HydraException, InterpolationResolutionError))


def one_paragraph(error: BaseException) -> str:
    """The error's message on one paragraph (Hydra's lists of options joined by commas)."""
    text = str(error)
    if isinstance(error, MissingConfigException) and error.options:
        group = str(error.missing_cfg_file or "").rsplit("/", 1)[0]
        first = text.strip().splitlines()[0]
        return f"{first}; the options of {group} are: {', '.join(error.options)}."
    unloadable = re.search(r"Could not load '(\w+)/([^']+)'", text)  # a list selection
    if unloadable and (CONFIG_DIR / unloadable.group(1)).is_dir():
        group = unloadable.group(1)
        options = sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))
        return (
            f"{group}={unloadable.group(2)}: no conf/{group}/{unloadable.group(2)}.yaml; "
            f"the options of {group} are: {', '.join(options)} (several: {group}=[a,b])."
        )
    lines = []
    for line in text.splitlines():
        if line.strip().startswith("Config search path"):
            break
        if line.strip():
            lines.append(line.strip())
    paragraph = " ".join(lines) or type(error).__name__
    if isinstance(error, OverrideParseException):
        return f"the override {error.override} cannot be parsed: {paragraph}"
    return paragraph


def print_failure(error: BaseException) -> None:
    """A failure of the run itself: its traceback from the job down, as Hydra prints it."""
    frames = traceback.extract_tb(error.__traceback__)
    names = [frame.name for frame in frames]
    if "run_job" in names:
        frames = frames[len(names) - names[::-1].index("run_job") :]
    exception = traceback.TracebackException.from_exception(error)
    exception.stack = traceback.StackSummary.from_list(frames)
    sys.stderr.write("".join(exception.format()))
    sys.stderr.write(f"\nSet the environment variable {FULL_ERROR}=1 for a complete stack trace.\n")


def main() -> None:
    """The console command: Hydra composes and runs; errors leave with the documented status."""
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        from rainbow_runner.runner.help import help_text

        print(help_text(), end="")  # the runner's own help; --hydra-help stays Hydra's
        return
    asked_full_error = bool(os.environ.get(FULL_ERROR))
    os.environ[FULL_ERROR] = "1"  # Hydra hands every error up instead of printing and exiting 1
    try:
        hydra_main()
    except Exception as error:
        if asked_full_error:
            traceback.print_exc()
        if bad_input(error):
            reject(error)
        if not asked_full_error:
            print_failure(error)
        sys.exit(1)
    finally:
        if not asked_full_error:
            os.environ.pop(FULL_ERROR, None)
        from rainbow_runner.runner.rundir import release_all

        release_all()  # a run stopped by sys.exit skipped the guard's on_run_end


if __name__ == "__main__":
    main()
