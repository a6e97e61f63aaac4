"""Run many `python -m runner` command lines in one interpreter: the fuzz list's driver.

`python tests/runner/cli_batch.py RESULTS.json` reads a JSON list of argument lists on stdin
and writes, for each, the exit status and what it printed. Every command goes through the
console command's own main() (Hydra's composition, the callbacks, the run), as typed by a user;
only the interpreter start and the imports (~4 s a command) are shared.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rainbow_runner.runner.cli import main  # noqa: E402


def log_size(args: list[str]) -> int | None:
    """The size of the run.log in the command's hydra.run.dir (None: none there)."""
    for arg in args:
        if arg.startswith("hydra.run.dir="):
            path = os.path.join(arg.split("=", 1)[1], "run.log")
            return os.path.getsize(path) if os.path.exists(path) else None
    return None


def run_one(args: list[str]) -> dict:
    log_before = log_size(args)
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["runner", *args]
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return {
        "args": args,
        "code": code,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "log_grew": log_size(args) != log_before,
    }


if __name__ == "__main__":
    cases = json.loads(sys.stdin.read())
    with open(sys.argv[1], "w") as handle:
        json.dump([run_one(args) for args in cases], handle)
