"""Where a data root's objects live: a local folder or an S3-compatible prefix, behind one interface.

Everything above this module speaks in keys (`binance/BTCUSDT/1m/manifest.json`, '/'-separated, relative
to the data root) and never learns which backend it has. The store's commit protocol needs only what both
can do exactly: a whole-object atomic `put`, and `put_if`, a compare-and-swap on the object's version (a
sha256 of its bytes locally, the ETag on S3) that fails instead of overwriting what another writer put
since it was read. Nothing here decides on a PID or on the clock of another machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import pyarrow.fs as pafs

from kline_assets.errors import BadInput
from kline_assets.store.atomic import locked, replace_atomic, replacing

S3_SCHEME = "s3://"


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    modified: float  # epoch seconds, as the store (local clock or S3's LastModified) says


class Backend(Protocol):
    root: str  # the data root as the user wrote it

    def uri(self, key: str) -> str:
        """How a key is shown to users (a path, or s3://bucket/prefix/key)."""

    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none."""

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """The bytes and the version token `put_if` compares against."""

    def exists(self, key: str) -> bool: ...

    def put(self, key: str, data: bytes) -> None:
        """Atomic and durable: a reader sees the old object or the new one, and a crash keeps one of them."""

    def put_if(self, key: str, data: bytes, token: str | None) -> bool:
        """Replace only if the object is still at version `token` (`None`: only if there is none yet).
        False, with nothing written, when another writer got there first."""

    def delete(self, key: str) -> None:
        """Removes the object; absent is fine."""

    def list(self, prefix: str) -> list[Listed]:
        """Every object whose key starts with `prefix` (recursive)."""

    def dirs(self, prefix: str) -> list[str]:
        """The names one level below the folder `prefix` (ending in '/', or '' for the root)."""

    def writer(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A file to stream a large object into; it appears whole when the block ends, never on an error."""

    def arrow(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the root's path in it (for `pyarrow.dataset` over listed chunks)."""

    def check_writable(self, key: str) -> None:
        """BadInput, in one line, when nothing can be written under `key`."""


# A data root's scheme -> the backend class that opens it, as "module:Class": imported on first use, so
# boto3 is imported only by those who use S3, and no backend module imports another. A root without a
# scheme is a folder (`LocalBackend`).
BACKENDS = {S3_SCHEME: "kline_assets.store.s3:S3Backend"}


def open_root(data_root: str | os.PathLike) -> Backend:
    """The one way to open a data root: `s3://bucket/prefix` or a folder."""
    text = os.fspath(data_root)
    for scheme, target in BACKENDS.items():
        if text.startswith(scheme):
            module, _, name = target.partition(":")
            return getattr(importlib.import_module(module), name)(text)
    return LocalBackend(text)


class LocalBackend:
    """A folder. `put` is temp file, fsync, rename, fsync of the folder, so a crash keeps the old object
    or the new one; `put_if` holds an advisory lock beside the object around read, compare and replace
    (a folder lives on one machine, so a local lock is exactly what its writers share)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.base = Path(root)
        if self.base.exists() and not self.base.is_dir():
            raise BadInput(f"data root {root} is not a folder")

    def path(self, key: str) -> Path:
        return self.base / key

    def uri(self, key: str) -> str:
        return str(self.path(key))

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.get(key)
        return data, hashlib.sha256(data).hexdigest()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()  # a folder where a file belongs is found, and refused when read

    def put(self, key: str, data: bytes) -> None:
        replace_atomic(self.path(key), data)

    def writer(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return replacing(self.path(key))

    def put_if(self, key: str, data: bytes, token: str | None) -> bool:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path.with_name(f".{path.stem}.lock")):
            try:
                current = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:
                current = None
            if current != token:
                return False
            self.put(key, data)
            return True

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[Listed]:
        folder = prefix.rpartition("/")[0]
        base = self.path(folder) if folder else self.base
        found = []
        for dirpath, _, names in os.walk(base):
            rel = Path(dirpath).relative_to(self.base).as_posix()
            for name in names:
                key = name if rel == "." else f"{rel}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    stat = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                found.append(Listed(key, stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda item: item.key)

    def dirs(self, prefix: str) -> list[str]:
        folder = self.path(prefix) if prefix else self.base
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir())

    def arrow(self) -> tuple[pafs.FileSystem, str]:
        return pafs.LocalFileSystem(), str(self.base.resolve())

    def check_writable(self, key: str) -> None:
        folder = self.path(key)
        probe = folder / f".kline_assets_write_probe.{uuid.uuid4().hex[:8]}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise BadInput(f"cannot write to {folder} ({exc.strerror or exc})") from None
