"""Helpers of the tests under tests/runner: many CLI commands at once, directory snapshots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

IGNORED = {"run.log", "run.lock", "sweep.lock"}  # run.log: every attempt; locks: the last holder


def run_cli_batch(commands: list[list[str]], work: Path, timeout: float = 600) -> list[dict]:
    """Each command's exit status, stdout and stderr, run by tests/runner/cli_batch.py."""
    results = work / "cli_batch.json"
    process = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("cli_batch.py")), str(results)],
        input=json.dumps(commands),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(results.read_text())


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under directory (but run.log and run.lock) with its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(Path(directory).rglob("*"))
        if p.is_file() and p.name not in IGNORED
    }


def assert_unchanged(directory: Path, before: dict[str, bytes], log_before: str = "") -> None:
    """The directory holds the same files with the same bytes; run.log only grew."""
    after = snapshot(directory)
    assert sorted(after) == sorted(before), f"files changed: {set(after) ^ set(before)}"
    changed = [name for name in before if after[name] != before[name]]
    assert not changed, f"changed: {changed}"
    if log_before:
        assert (Path(directory) / "run.log").read_text().startswith(log_before)
