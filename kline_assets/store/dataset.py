"""Chunk objects and their manifest, with a commit protocol that needs no rename, no PID and no shared lock.

Per batch of days, the same on a folder and on S3 (`store.backend`):
1. each chunk is put, whole and durable, under a name versioned by its content
   (`chunk_<index>_<day>_<sha8>.parquet`) before any manifest names it, so an object that a manifest
   names is never overwritten: a rewritten day (today's live chunk, a repaired day) gets a new name;
2. the manifest is read with its version, the batch merged in, and written back only if it is still at
   that version (`put_if`: If-Match on S3, a compare under a lock beside it in a folder). A writer that
   loses re-reads, merges again and retries. That write is the commit point.
A crash at any moment leaves the last committed manifest, all of whose objects exist, plus objects no
manifest names. Those are removed by `collect` only once older than `GRACE_S` (an object younger than that
may belong to a writer on another machine that is about to commit it): by `verify --repair`, and, for the
older versions of a day, by the commit that replaced it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.parquet as pq

from kline_assets.errors import BadInput, StorageUnavailable
from kline_assets.settings import DatasetSpec
from kline_assets.store.backend import Backend, Listed, open_root
from kline_assets.store.manifest import ChunkEntry, Manifest, utc_now_iso
from kline_assets.store.paths import KIND_OF_FOLDER, MANIFEST, DatasetPaths, dataset_dir
from kline_assets.timezones import AlignZone

GRACE_S = 3600.0  # an unlisted object younger than this may still be committed by its writer
TRIES = 200  # commits lost in a row to other writers before giving up (each loser backs off a little)


def before_start(name: str, first: dt.date, start: dt.date) -> str:
    """Why days of a run are not stored: the dataset's start, fixed by its first commit, is later."""
    return (f"{name}: {(start - first).days} day(s) from {first} were not stored: they are before the dataset's first "
            f"day {start}, fixed by its first commit (another writer's, if it was not yours); the other days are "
            "stored (an earlier start needs another data root)")


@dataclass
class Staged:
    entry: ChunkEntry
    data: bytes | None = None  # the chunk's bytes, for `put` and the day's checks; the stream drops them after


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_to_parquet(table: pa.Table) -> bytes:
    """Dictionary encoding only for `ignore`: on prices and volumes (nearly all distinct) it costs CPU and
    bytes (a realistic day: 1.6 ms and 96 kB with it, 0.9 ms and 75 kB without)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=3, use_dictionary=["ignore"])
    return buf.getvalue()


@dataclass(frozen=True)
class ChunkPlan:
    """What a day's chunk entry holds besides its rows: all that making the chunk needs (`make_chunk`),
    without the store, so a process of its own can make it."""

    paths: DatasetPaths
    index: int
    day: dt.date
    start_ms: int
    end_ms: int


def make_chunk(plan: ChunkPlan, table: pa.Table, gaps: list[list[int]], covered_until_ms: int,
               source: str = "rest", source_sha256: str | None = None) -> Staged:
    """The day's chunk (zstd Parquet) and its entry, named by its content; nothing is put yet."""
    data = table_to_parquet(table)
    sha = sha256_bytes(data)
    open_times = table.column(plan.paths.spec.kind_info.time_column)  # funding: the events' times
    entry = ChunkEntry(
        index=plan.index, partition=plan.day.isoformat(), file=plan.paths.chunk_relpath(plan.index, plan.day, sha),
        start_ms=plan.start_ms, end_ms=plan.end_ms, rows=table.num_rows,
        first_open_time=open_times[0].as_py() if table.num_rows else None,
        last_open_time=open_times[-1].as_py() if table.num_rows else None,
        sha256=sha, bytes=len(data), complete=covered_until_ms >= plan.end_ms,
        exchange_gaps=gaps, written_at=utc_now_iso(), covered_until_ms=covered_until_ms,
        source=source, source_sha256=source_sha256,
    )
    return Staged(entry, data)


def manifest_at(backend: Backend, key: str) -> Manifest:
    """Raises FileNotFoundError when there is none, BadInput when it cannot be read or is not ours."""
    return _manifest_read(backend, key, versioned=False)[0]


def _manifest_read(backend: Backend, key: str, versioned: bool) -> tuple[Manifest, str | None]:
    """The manifest, and with `versioned` the version `put_if` compares against (a local read then hashes
    the bytes, so only a writer asks for it)."""
    try:
        data, token = backend.get_versioned(key) if versioned else (backend.get(key), None)
    except (FileNotFoundError, StorageUnavailable):
        raise
    except OSError as exc:  # a folder, no permission: one line, not a traceback
        raise BadInput(f"{backend.uri(key)} cannot be read ({exc.strerror or exc})") from None
    return Manifest.from_json(data, backend.uri(key)), token


def dataset_dirs(backend: Backend, exchange_id: str | None = None) -> list[str]:
    """Dataset folders (keys) under a data root, found by their manifest; without listing any chunk."""
    found = []
    for exchange in [exchange_id] if exchange_id else backend.dirs(""):
        if exchange.startswith("."):
            continue
        for symbol in backend.dirs(f"{exchange}/"):
            for kind_folder in backend.dirs(f"{exchange}/{symbol}/"):
                folder = dataset_dir(exchange, symbol, kind_folder)
                if kind_folder in KIND_OF_FOLDER and backend.exists(f"{folder}/{MANIFEST}"):
                    found.append(folder)
    return found


class DatasetStore:
    """One dataset (a folder or a prefix). Refuses to mix alignment zones (docs/contract.md: bad input)."""

    def __init__(self, root: Backend | str | os.PathLike, spec: DatasetSpec, zone: AlignZone,
                 start: dt.date) -> None:
        """Reads nothing (`open` reads the manifest): `start` is the one this writer plans with."""
        self.backend = open_root(root) if isinstance(root, str | os.PathLike) else root
        self.paths = DatasetPaths(spec)
        self.spec, self.zone = spec, zone
        # the start this writer plans its indexes with; the first commit fixes the dataset's own (`_replan`)
        self.start = start
        self.refused: list[dt.date] = []  # staged days before the dataset's start, never committed

    @classmethod
    def open(cls, root: Backend | str | os.PathLike, spec: DatasetSpec, zone: AlignZone,
             start: dt.date) -> DatasetStore:
        """The dataset as stored, the one way to open it: its manifest read (another zone is refused, as
        bad input) and its own start planned with; `start` only for a dataset nothing was written to yet."""
        store = cls(root, spec, zone, start)
        existing = store.read_manifest()
        if existing is not None:
            store._guard(existing)
            store.start = existing.start_date
        return store

    @property
    def where(self) -> str:
        """The dataset's folder or prefix, as users see it."""
        return self.backend.uri(self.paths.dir)

    def key(self, entry: ChunkEntry) -> str:
        return self.paths.resolve(entry.file)

    def _guard(self, manifest: Manifest) -> None:
        if manifest.align_tz != self.zone.name:
            raise BadInput(
                f"{self.where} is aligned to {manifest.align_tz}, not {self.zone.name}: use "
                f"--align-tz {manifest.align_tz}, or another --data-root for a {self.zone.name} dataset"
            )

    def read_manifest(self) -> Manifest | None:
        try:
            return manifest_at(self.backend, self.paths.manifest)
        except FileNotFoundError:
            return None

    def manifest(self) -> Manifest:
        return self.read_manifest() or Manifest.new(self.spec, self.zone.name, self.start)

    def index_of(self, day: dt.date) -> int:
        index = (day - self.start).days + 1
        if index < 1:
            raise BadInput(f"{day} is before the dataset's start {self.start} ({self.where})")
        return index

    # --- reading -----------------------------------------------------------------------------
    def chunk_bytes(self, entry: ChunkEntry) -> bytes | None:
        try:
            return self.backend.get(self.key(entry))
        except FileNotFoundError:
            return None

    def entry_intact(self, entry: ChunkEntry) -> bool:
        data = self.chunk_bytes(entry)
        return data is not None and len(data) == entry.bytes and sha256_bytes(data) == entry.sha256

    def read_table(self, entry: ChunkEntry) -> pa.Table:
        return pq.read_table(pa.BufferReader(self.backend.get(self.key(entry))))

    def unlisted(self, manifest: Manifest, prefix: str | None = None) -> list[Listed]:
        """Objects in chunks/ (or under `prefix`) that the manifest does not name."""
        listed = {self.key(e) for e in manifest.chunks.values()}
        return [o for o in self.backend.list(prefix or f"{self.paths.chunks_dir}/") if o.key not in listed]

    def collect(self, grace_s: float = GRACE_S, prefix: str | None = None,
                manifest: Manifest | None = None) -> list[str]:
        """Remove unlisted objects older than `grace_s`: a crashed writer's, a lost race's, a replaced
        version's. A younger one is left alone: its writer may be about to commit it. `manifest`: one just
        committed (any later one lists no older object: names are versioned and old ones never come back
        but by a new put, which makes them young)."""
        now = time.time()
        listed = manifest or self.manifest()
        old = [o.key for o in self.unlisted(listed, prefix) if now - o.modified > grace_s]
        for key in old:
            self.backend.delete(key)
        return old

    # --- writing -----------------------------------------------------------------------------
    def plan(self, day: dt.date) -> ChunkPlan:
        start_ms, end_ms = self.zone.day_window_ms(day)
        return ChunkPlan(self.paths, self.index_of(day), day, start_ms, end_ms)

    def put(self, staged: Staged) -> Staged:
        """Put a made chunk under its versioned name; it is part of the dataset once `commit` names it."""
        self.backend.put(self.key(staged.entry), staged.data)
        return staged

    def stage(self, day: dt.date, table: pa.Table, gaps: list[list[int]], covered_until_ms: int,
              source: str = "rest", source_sha256: str | None = None) -> Staged:
        """Make the day's chunk and put it (`make_chunk`, then `put`)."""
        return self.put(make_chunk(self.plan(day), table, gaps, covered_until_ms, source, source_sha256))

    def update(self, change: Callable[[Manifest], bool]) -> Manifest:
        """Apply `change` to the manifest as it is now and write it back only if no other writer committed
        meanwhile; otherwise read again and apply again (so `change` must start afresh from what it is
        given). `change` returns False when there is nothing to write."""
        for attempt in range(TRIES):
            try:
                manifest, token = _manifest_read(self.backend, self.paths.manifest, versioned=True)
            except FileNotFoundError:
                manifest, token = Manifest.new(self.spec, self.zone.name, self.start), None
            self._guard(manifest)
            if not change(manifest):
                return manifest
            if self.backend.put_if(self.paths.manifest, manifest.to_json(), token):
                return manifest
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** min(attempt, 6))))
        raise StorageUnavailable(f"{self.where}: {TRIES} commits in a row lost to other writers; nothing of "
                                 "this batch was committed, a rerun completes it")

    def commit(self, staged: list[Staged]) -> list[ChunkEntry]:
        """Make a batch part of the dataset; an entry that covers less than the one stored loses."""
        accepted: list[ChunkEntry] = []
        replaced: set[int] = set()
        refused: list[dt.date] = []

        def merge(manifest: Manifest) -> bool:
            accepted.clear(), replaced.clear(), refused.clear()
            for item in self._replan(staged, manifest, refused):
                entry = item.entry
                old = manifest.chunks.get(entry.index)
                if old is not None and old.file != entry.file:
                    replaced.add(entry.index)
                    if old.covered_until_ms > entry.covered_until_ms and self.entry_intact(old):
                        continue
                manifest.chunks[entry.index] = entry
                accepted.append(entry)
            return bool(accepted)

        manifest = self.update(merge)
        self.start = manifest.start_date
        self.refused += refused
        for index in sorted(replaced):  # older versions of a rewritten day, once past the grace period
            self.collect(prefix=self.paths.chunk_prefix(index), manifest=manifest)
        return accepted

    def _replan(self, staged: list[Staged], manifest: Manifest, refused: list[dt.date]) -> list[Staged]:
        """Number each staged day against the start of the manifest as it is now.

        A dataset has one start, fixed by its first commit: a writer that planned against another start
        (two first backfills with different `--start`) puts its chunks again under the right names here,
        and days before the dataset's start are refused, never stored under a wrong index."""
        kept = []
        for item in staged:
            day = dt.date.fromisoformat(item.entry.partition)
            index = manifest.index_of(day)
            if index == item.entry.index:
                kept.append(item)
                continue
            if index < 1:
                refused.append(day)
                continue
            entry = replace(item.entry, index=index, file=self.paths.chunk_relpath(index, day, item.entry.sha256))
            data = item.data if item.data is not None else self.backend.get(self.key(item.entry))
            self.backend.put(self.key(entry), data)  # named for its index before the manifest names it
            kept.append(Staged(entry, data))
        return kept
