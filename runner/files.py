"""Replacing a file so that neither a crash, a power cut nor a second writer leaves half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMPORARY_SUFFIX = ".tmp"


def sync_directory(directory: Path) -> None:
    """fsync a directory, so that the names created or renamed in it survive a power cut."""
    try:
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # a platform or file system without directory handles: nothing to sync
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def replace_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through `write` to a temporary file of its own, sync it, rename it over `path`.

    The temporary name is unique (`<name>.<random>.tmp`), so two writers never share one; after
    the rename the directory is synced too. Readers see the old file or the new one, never a
    mix, and after a power cut the file is the old or the new one.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f"{path.name}.", suffix=TEMPORARY_SUFFIX
    )
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from others
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def leftover_temporaries(directory: Path) -> list[Path]:
    """Temporary files that a killed writer left behind in directory (not its subfolders)."""
    if not Path(directory).is_dir():
        return []
    return sorted(p for p in Path(directory).glob(f"*.*{TEMPORARY_SUFFIX}") if p.is_file())
