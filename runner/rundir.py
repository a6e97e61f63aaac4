"""One run per directory: a lock held for the run's lifetime, and nothing replaced unasked.

A run claims its directory with an exclusive lock on `<run dir>/run.lock` (flock: the kernel
drops it when the process ends, however it ends, so a lock is never stale). A second run in the
same directory stops at once, naming the holder. Whatever a fresh run would replace there (a
checkpoint, result CSVs) is refused unless overwrite=true, and only after every check passed.
A sweep claims its sweep directory the same way (`sweep.lock`), for the whole sweep.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from rainbow_runner.runner.files import leftover_temporaries, replace_atomically

log = logging.getLogger("runner")

LOCK_NAME = "run.lock"
SWEEP_LOCK_NAME = "sweep.lock"
CHECKPOINT_FILE = "checkpoint.pt"
# A run's own outputs: what a fresh run clears and overwrite=true replaces (Hydra owns .hydra/
# and run.log, which keeps every attempt's log).
OUTPUTS = (CHECKPOINT_FILE, "results", "tb", "run_info.json")


class RunDirectoryError(ValueError):
    """The run directory is busy, unusable, or holds an earlier run that would be replaced."""


def check_can_create(directory: Path, key: str) -> None:
    """The directory exists or can be made, and can be written: else say why, naming the key."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise RunDirectoryError(f"{key}={directory} is a file, not a directory.")
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirectoryError(
            f"{key}={directory} cannot be created: {existing} is a file, not a directory."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirectoryError(
            f"{key}={directory} cannot be written: {existing} is not writable by this user."
        )


class DirectoryLock:
    """An exclusive lock on one file of a directory, with the holder's pid, host and start."""

    def __init__(self, directory: Path, name: str = LOCK_NAME) -> None:
        self.path = Path(directory) / name
        self.handle = None

    def acquire(self, what: str, wait_seconds: float = 0.0) -> None:
        """Take the lock, waiting up to wait_seconds; RunDirectoryError names the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise RunDirectoryError(
                        f"{what} {self.path.parent} is in use by another run "
                        f"({self.holder()}); wait for it to end or choose another directory. "
                        f"Two runs in one directory would overwrite each other's results."
                    ) from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        started = datetime.now().isoformat(timespec="seconds")
        handle.write(
            f"pid {os.getpid()} on host {socket.gethostname()} since {started}: "
            f"{' '.join(sys.argv)}\n"
        )
        handle.flush()
        self.handle = handle
        _HELD_LOCKS.add(self)

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (it may still be writing: retry a bit)."""
        for _ in range(20):
            try:
                text = self.path.read_text().strip()
            except OSError:
                text = ""
            if text:
                return text.split(":", 1)[0]
            time.sleep(0.025)
        return "holder unknown"

    def release(self) -> None:
        _HELD_LOCKS.discard(self)
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


# Every lock this process holds: the process's end drops them anyway; release_all() is for a
# process that goes on after a run ended by sys.exit (tests, notebooks).
_HELD_LOCKS: set[DirectoryLock] = set()


def release_all() -> None:
    """Release every directory lock this process holds."""
    for lock in list(_HELD_LOCKS):
        lock.release()
    _CLAIMED.clear()


class RunDirectory:
    """A run's claim on its directory: the lock, and what an earlier run left there."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self.lock = DirectoryLock(self.path)
        self.hydra_files: dict[str, bytes] = {}

    def claim(self, wait_seconds: float = 0.0) -> None:
        check_can_create(self.path, "hydra.run.dir")
        self.lock.acquire("run directory", wait_seconds)

    def release(self) -> None:
        self.lock.release()

    def remember_hydra_files(self) -> None:
        """Keep .hydra/ as the earlier run left it, to put back if this run is rejected."""
        hydra = self.path / ".hydra"
        if hydra.is_dir():
            self.hydra_files = {p.name: p.read_bytes() for p in hydra.iterdir() if p.is_file()}

    def restore_hydra_files(self) -> None:
        """Put back the .hydra/ files Hydra rewrote for a run that was then rejected."""
        for name, content in self.hydra_files.items():
            path = self.path / ".hydra" / name
            if not path.exists() or path.read_bytes() != content:
                replace_atomically(path, lambda handle, c=content: handle.write(c))

    def earlier_results(self) -> list[str]:
        """What a fresh run here would destroy: the checkpoint and result CSVs."""
        found = [CHECKPOINT_FILE] if (self.path / CHECKPOINT_FILE).exists() else []
        results = self.path / "results"
        if results.is_dir():
            found += [f"results/{p.name}" for p in sorted(results.glob("*.csv"))]
        return found

    def check_fresh_start(self, resume: bool, overwrite: bool) -> None:
        """A fresh run may start here: nothing to replace, or overwrite=true says so."""
        earlier = self.earlier_results()
        if not earlier or overwrite:
            return
        if resume:  # resume=true found no checkpoint to continue, but results to overwrite
            advice = (
                "there is no checkpoint.pt to continue them from: replace them with overwrite=true "
                "(and resume=false), or choose another hydra.run.dir"
            )
        else:
            advice = (
                "continue that run with resume=true, replace it with overwrite=true, or choose "
                "another hydra.run.dir"
            )
        raise RunDirectoryError(
            f"run directory {self.path} holds an earlier run's results ({', '.join(earlier)}); "
            f"{advice}. Nothing was changed."
        )

    def start(self, fresh: bool) -> None:
        """The run passed every check and now writes: clear what a fresh run replaces."""
        for leftover in leftover_temporaries(self.path) + leftover_temporaries(
            self.path / "results"
        ):
            leftover.unlink(missing_ok=True)
        if not fresh:
            return
        earlier = self.earlier_results()
        present = [name for name in OUTPUTS if (self.path / name).exists()]
        if earlier:
            log.warning(
                "overwrite=true: replacing the earlier run in %s (%s)",
                self.path,
                ", ".join(present),
            )
        elif present:
            log.info("clearing what an unfinished earlier attempt left: %s", ", ".join(present))
        for name in present:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()


# Directories this process has claimed, so that the run inside a claiming Hydra callback does
# not lock its own directory twice (two flocks of one file conflict even within a process).
_CLAIMED: dict[Path, RunDirectory] = {}


def claim(path: Path, wait_seconds: float = 0.0) -> RunDirectory:
    """Claim path for this process's run, until release()."""
    directory = RunDirectory(path)
    directory.claim(wait_seconds)
    _CLAIMED[directory.path] = directory
    return directory


def release(directory: RunDirectory) -> None:
    _CLAIMED.pop(directory.path, None)
    directory.release()


@contextmanager
def run_directory(path: Path, wait_seconds: float = 0.0) -> Iterator[RunDirectory]:
    """The run's claim on path: the one this process already holds, else a new one for the run."""
    held = _CLAIMED.get(Path(path).resolve())
    if held is not None:
        yield held
        return
    directory = claim(path, wait_seconds)
    try:
        yield directory
    finally:
        release(directory)


# Overrides that may differ between a sweep and its continuation.
SWEEP_NEUTRAL_KEYS = ("resume", "overwrite", "progress", "checkpoint_every")


def sweep_overrides(overrides: list[str]) -> list[str]:
    """A sweep's command-line overrides without those a continuation may change."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in SWEEP_NEUTRAL_KEYS]


def claim_sweep(
    sweep_dir: Path, overrides: list[str], resume: bool, overwrite: bool
) -> DirectoryLock:
    """Lock the sweep directory for this sweep, refusing a second sweep in it.

    A directory whose multirun.yaml records another sweep is taken only by that sweep's
    continuation (resume=true, the same overrides) or by overwrite=true.
    """
    from omegaconf import OmegaConf

    sweep_dir = Path(sweep_dir).resolve()
    check_can_create(sweep_dir, "hydra.sweep.dir")
    lock = DirectoryLock(sweep_dir, SWEEP_LOCK_NAME)
    lock.acquire("sweep directory")
    try:
        record = sweep_dir / "multirun.yaml"
        if record.exists() and not overwrite:
            earlier = list(OmegaConf.load(record).hydra.overrides.task)
            shown = " ".join(earlier) or "no overrides"
            if not resume:
                raise RunDirectoryError(
                    f"sweep directory {sweep_dir} holds an earlier sweep ({shown}); continue it "
                    f"with resume=true, replace it with overwrite=true, or choose another "
                    f"hydra.sweep.dir (python -m runner.report takes several directories)."
                )
            if sweep_overrides(earlier) != sweep_overrides(list(overrides)):
                raise RunDirectoryError(
                    f"sweep directory {sweep_dir} holds another sweep ({shown}); resume=true "
                    f"continues a sweep with its own overrides, so run it with those, or choose "
                    f"another hydra.sweep.dir."
                )
    except BaseException:
        lock.release()
        raise
    return lock
