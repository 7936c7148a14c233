"""Durable local file replacement (a folder data root, dagster.yaml): temp file in the same folder, fsync,
rename, fsync of the folder; and the one lock between processes of a machine (`locked`).

A reader therefore sees the old bytes or the new ones, never a torn file, and after a power cut the
rename itself is on disk (where the system can sync a folder: not on Windows, whose rename is
journaled by NTFS).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import filelock

LOCK_POLL_S = 0.002  # how often a waiting `locked` tries again (filelock's default, 50 ms, is a page's time)


def fsync_dir(path: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows opens no folder as a file
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A file to write `path`'s new bytes into: they replace the old ones when the block ends (never on an
    error). The temp file is hidden and unique (threads and processes may write the same path at once),
    and one a crash leaves behind is removed by `DatasetStore.collect` after its grace period."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def replace_atomic(path: Path, data: bytes) -> None:
    with replacing(path) as fh:
        fh.write(data)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock across the processes (and threads) of this machine, on a file beside what it
    guards: `filelock` (flock on POSIX, msvcrt on Windows; released by the system when a process dies)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(lock_path, thread_local=False).acquire(poll_interval=LOCK_POLL_S):
        yield
