"""Chunk files and their manifest, with the commit protocol that survives kill -9 at any point.

Protocol, per batch of days:
1. each chunk is written outside the lock to `.<name>.<sha16>.<pid>.pending` and fsynced;
2. under the manifest lock: re-read the manifest, roll forward or clean leftovers, merge the new
   entries, replace manifest.json atomically (this is the commit point), then rename each pending
   file onto its chunk name and fsync the folder.
A crash between the manifest write and the renames leaves pending files whose sha the manifest already
names; the next writer (or `verify`) renames them into place. Anything unnamed is a leftover.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kline_assets.archive.atomic import fsync_dir, locked, pid_alive, replace_atomic, write_durable
from kline_assets.archive.manifest import ChunkEntry, Manifest, utc_now_iso
from kline_assets.archive.paths import DatasetPaths
from kline_assets.errors import BadInput
from kline_assets.settings import DatasetSpec
from kline_assets.timezones import AlignZone


def before_start(name: str, first: dt.date, start: dt.date) -> str:
    """Why days of a run are not stored: the dataset's start, fixed by its first commit, is later."""
    return (f"{name}: {(start - first).days} day(s) from {first} were not stored: they are before the dataset's first "
            f"day {start}, fixed by its first commit (another writer's, if it was not yours); the other days are "
            "stored (an earlier start needs another data root)")


@dataclass
class Staged:
    entry: ChunkEntry
    pending: Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def table_to_parquet(table: pa.Table) -> bytes:
    """Dictionary encoding only for `ignore`: on prices and volumes (nearly all distinct) it costs CPU and
    bytes (a realistic day: 1.6 ms and 96 kB with it, 0.9 ms and 75 kB without)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=3, use_dictionary=["ignore"])
    return buf.getvalue()


class DatasetStore:
    """One dataset folder. Refuses to mix alignment zones (docs/contract.md: bad input)."""

    def __init__(self, data_root: str | Path, spec: DatasetSpec, zone: AlignZone, start: dt.date) -> None:
        self.paths = DatasetPaths(Path(data_root), spec)
        self.spec, self.zone = spec, zone
        existing = self.read_manifest()
        if existing is not None:
            self._guard(existing)
        # the start this writer plans its indexes with; the first commit fixes the dataset's own (`_replan`)
        self.start = existing.start_date if existing else start
        self.refused: list[dt.date] = []  # staged days before the dataset's start, never committed

    def _guard(self, manifest: Manifest) -> None:
        if manifest.align_tz != self.zone.name:
            raise BadInput(
                f"{self.paths.dir} is aligned to {manifest.align_tz}, not {self.zone.name}: use "
                f"--align-tz {manifest.align_tz}, or another --data-root for a {self.zone.name} dataset"
            )

    def read_manifest(self) -> Manifest | None:
        try:
            return Manifest.load(self.paths.manifest)
        except FileNotFoundError:
            return None

    def manifest(self) -> Manifest:
        return self.read_manifest() or Manifest.new(self.spec, self.zone.name, self.start)

    def index_of(self, day: dt.date) -> int:
        index = (day - self.start).days + 1
        if index < 1:
            raise BadInput(f"{day} is before the dataset's start {self.start} ({self.paths.dir})")
        return index

    # --- reading -----------------------------------------------------------------------------
    def entry_intact(self, entry: ChunkEntry) -> bool:
        path = self.paths.resolve(entry.file)
        try:
            return path.stat().st_size == entry.bytes and sha256_file(path) == entry.sha256
        except FileNotFoundError:
            return False

    def unlisted_files(self, manifest: Manifest) -> list[Path]:
        """Visible files in chunks/ that the manifest does not name (hidden ones belong to `_recover`)."""
        if not self.paths.chunks_dir.is_dir():
            return []
        listed = {Path(e.file).name for e in manifest.chunks.values()}
        return sorted(p for p in self.paths.chunks_dir.iterdir() if not p.name.startswith(".") and p.name not in listed)

    def read_table(self, entry: ChunkEntry) -> pa.Table:
        return pq.read_table(self.paths.resolve(entry.file))

    # --- writing -----------------------------------------------------------------------------
    def stage(self, day: dt.date, table: pa.Table, gaps: list[list[int]], covered_until_ms: int,
              source: str = "rest", source_sha256: str | None = None) -> Staged:
        index = self.index_of(day)
        start_ms, end_ms = self.zone.day_window_ms(day)
        data = table_to_parquet(table)
        sha = hashlib.sha256(data).hexdigest()
        relpath = self.paths.chunk_relpath(index, day)
        self.paths.chunks_dir.mkdir(parents=True, exist_ok=True)
        pending = self._pending_path(relpath, sha)
        try:
            write_durable(pending, data)
        except BaseException:  # a full disk or a permission error: no half-written file stays behind
            pending.unlink(missing_ok=True)
            raise
        open_times = table.column("open_time")
        entry = ChunkEntry(
            index=index, partition=day.isoformat(), file=relpath, start_ms=start_ms, end_ms=end_ms,
            rows=table.num_rows,
            first_open_time=open_times[0].as_py() if table.num_rows else None,
            last_open_time=open_times[-1].as_py() if table.num_rows else None,
            sha256=sha, bytes=len(data), complete=covered_until_ms >= end_ms,
            exchange_gaps=gaps, written_at=utc_now_iso(), covered_until_ms=covered_until_ms,
            source=source, source_sha256=source_sha256,
        )
        return Staged(entry, pending)

    def commit(self, staged: list[Staged]) -> list[ChunkEntry]:
        """Make a batch part of the dataset; an entry that covers less than the one on disk loses."""
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        with locked(self.paths.lock):
            manifest = self.manifest()
            self._guard(manifest)
            self._recover(manifest)
            accepted: list[Staged] = []
            for item in self._replan(staged, manifest):
                old = manifest.chunks.get(item.entry.index)
                if old and old.covered_until_ms > item.entry.covered_until_ms and self.entry_intact(old):
                    item.pending.unlink(missing_ok=True)
                    continue
                manifest.chunks[item.entry.index] = item.entry
                accepted.append(item)
            replace_atomic(self.paths.manifest, manifest.to_json())
            for item in accepted:
                if item.pending.exists():  # else a roll-forward already put these very bytes in place
                    os.replace(item.pending, self.paths.resolve(item.entry.file))
            if accepted:
                fsync_dir(self.paths.chunks_dir)
        return [item.entry for item in accepted]

    def _replan(self, staged: list[Staged], manifest: Manifest) -> list[Staged]:
        """Number each staged day against the start of the manifest as it is now, under the lock.

        A dataset has one start, fixed by its first commit: a writer that planned against another start
        (two first backfills with different `--start`) moves its pending files to the right names here,
        and days before the dataset's start are refused (`refused`), never stored under a wrong index."""
        kept = []
        for item in staged:
            day = dt.date.fromisoformat(item.entry.partition)
            index = manifest.index_of(day)
            if index == item.entry.index:
                kept.append(item)
                continue
            if index < 1:
                item.pending.unlink(missing_ok=True)
                self.refused.append(day)
                continue
            entry = item.entry
            entry.index, entry.file = index, self.paths.chunk_relpath(index, day)
            pending = self._pending_path(entry.file, entry.sha256)
            os.replace(item.pending, pending)  # named for its index before the manifest names it
            kept.append(Staged(entry, pending))
        return kept

    def _pending_path(self, relpath: str, sha: str) -> Path:
        return self.paths.chunks_dir / f".{Path(relpath).name}.{sha[:16]}.{os.getpid()}.pending"

    def recover(self) -> None:
        """Finish an interrupted commit and clean leftovers (used by verify and status)."""
        if not self.paths.manifest.exists():
            return
        with locked(self.paths.lock):
            self._recover(self.manifest())

    def _recover(self, manifest: Manifest) -> None:
        by_file = {Path(e.file).name: e for e in manifest.chunks.values()}
        changed = False
        for folder in (self.paths.chunks_dir, self.paths.dir):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                parts = path.name.split(".")
                if not path.name.startswith(".") or parts[-1] not in ("pending", "tmp"):
                    continue
                pid = int(parts[-2]) if parts[-2].isdigit() else 0
                final = ".".join(parts[1:3])
                entry = by_file.get(final) if parts[-1] == "pending" else None
                if entry is not None and entry.sha256.startswith(parts[3]):
                    os.replace(path, self.paths.resolve(entry.file))
                    changed = True
                elif pid != os.getpid() and not pid_alive(pid):
                    path.unlink(missing_ok=True)
        if changed:
            fsync_dir(self.paths.chunks_dir)
