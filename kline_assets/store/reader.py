"""Reading a dataset back, verified: a chunk's bytes are checked against its manifest entry (size and
sha256) before a row of it is used, by `combine`, the Python API and the IO manager's `load_input`."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kline_assets.errors import ChunkUnavailable
from kline_assets.store.dataset import DatasetStore, sha256_bytes
from kline_assets.store.manifest import ChunkEntry, Manifest
from kline_assets.store.schema import schema_of
from kline_assets.timezones import AlignZone

REPAIR = "run `kline-assets verify --repair`"
LIVE_GRACE_MS = 180_000  # today without a chunk is not "missing" before its first minutes could be fetched
AHEAD = 8  # chunks read at once (a day is ~75 kB on disk, ~1 MB as a table)


def verified_table(store: DatasetStore, entry: ChunkEntry) -> pa.Table:
    """The chunk's rows after its bytes matched the entry; a chunk that is missing or differs is looked up
    once more in a fresh manifest (a writer may have replaced the day while this reader held the old one)."""
    data = store.chunk_bytes(entry)
    if _matches(data, entry):
        return pq.read_table(pa.BufferReader(data))
    fresh = store.manifest().chunks.get(entry.index)
    if fresh is not None and fresh.file != entry.file:
        entry, data = fresh, store.chunk_bytes(fresh)
    if data is None:
        raise ChunkUnavailable(f"{store.spec.name} {entry.partition}: {entry.file} is listed but missing; "
                               f"{REPAIR}")
    if not _matches(data, entry):
        raise ChunkUnavailable(f"{store.spec.name} {entry.partition}: {entry.file} does not match its manifest "
                               f"sha256; {REPAIR}")
    return pq.read_table(pa.BufferReader(data))


def _matches(data: bytes | None, entry: ChunkEntry) -> bool:
    return data is not None and len(data) == entry.bytes and sha256_bytes(data) == entry.sha256


def backfill_hint(store: DatasetStore, first: dt.date, last: dt.date) -> str:
    """The command that loads first..last of this dataset, where it is, in its zone."""
    zone = "" if store.zone.name == "UTC" else f" --align-tz {store.zone.name}"
    return (f"kline-assets {store.spec.flags}{zone} --data-root "
            f"{store.backend.uri('').rstrip('/')} backfill --start {first} --end {last + dt.timedelta(1)}")


def day_table(store: DatasetStore, manifest: Manifest, day: dt.date) -> pa.Table:
    """One stored day; a day without a chunk is an error, never an empty table."""
    entry = manifest.entry_for(day)
    if entry is None:
        raise ChunkUnavailable(f"{store.spec.name} has no chunk for {day}; run `{backfill_hint(store, day, day)}`")
    return verified_table(store, entry)


def verified_tables(store: DatasetStore, entries: list[ChunkEntry], ahead: int = AHEAD) -> Iterator[pa.Table]:
    """`verified_table` of each entry, in order, with up to `ahead` chunks read at once: on S3 each read is
    a round trip, so they overlap; memory stays at `ahead` chunks whatever the number of entries."""
    with ThreadPoolExecutor(ahead) as pool:
        queue: deque = deque()
        todo = iter(entries)
        for entry in todo:
            queue.append(pool.submit(verified_table, store, entry))
            if len(queue) >= ahead:
                break
        while queue:
            table = queue.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                queue.append(pool.submit(verified_table, store, nxt))
            yield table


def uncovered_days(manifest: Manifest, zone: AlignZone, start_ms: int | None, end_ms: int | None,
                   now_ms: int) -> list[dt.date]:
    """The local days of the window that the dataset does not hold: no chunk, or a chunk that stops short
    of the day's end (or the window's). Recorded exchange gaps are held minutes. An open bound stops at
    the dataset's own extent (its start, its last chunk), and the day of `now` is live: any chunk holds it
    (and in its first `LIVE_GRACE_MS` none is expected yet: its first minute may not have been fetched)."""
    if not manifest.chunks and (start_ms is None or end_ms is None):
        return []
    first = zone.local_date(start_ms) if start_ms is not None else manifest.start_date
    if end_ms is not None:
        last = zone.local_date(min(end_ms, now_ms) - 1)
    else:
        last = dt.date.fromisoformat(manifest.chunks[max(manifest.chunks)].partition)
    today = zone.local_date(now_ms)
    lacking, day = [], first
    while day <= last:
        entry = manifest.entry_for(day) if day >= manifest.start_date else None
        if entry is None:
            if day != today or now_ms - zone.midnight_ms(day) >= LIVE_GRACE_MS:
                lacking.append(day)
        elif day < today and entry.covered_until_ms < min(entry.end_ms, end_ms or entry.end_ms):
            lacking.append(day)
        day += dt.timedelta(days=1)
    return lacking


def day_runs(days: list[dt.date], most: int = 4) -> str:
    """`2024-01-02, 2024-01-05..2024-01-06`: consecutive days as ranges, the first `most` runs named."""
    runs: list[list[dt.date]] = []
    for day in days:
        if runs and day - runs[-1][1] == dt.timedelta(days=1):
            runs[-1][1] = day
        else:
            runs.append([day, day])
    named = [str(a) if a == b else f"{a}..{b}" for a, b in runs[:most]]
    return ", ".join(named) + (f" and {len(runs) - most} more run(s)" if len(runs) > most else "")


def window_table(store: DatasetStore, manifest: Manifest, start_ms: int | None, end_ms: int | None) -> pa.Table:
    """The stored rows with start_ms <= open_time (funding_time) < end_ms, read only from the chunks the window
    touches."""
    column = store.spec.kind_info.time_column
    entries = [manifest.chunks[i] for i in sorted(manifest.chunks)
               if not ((start_ms is not None and manifest.chunks[i].end_ms <= start_ms)
                       or (end_ms is not None and manifest.chunks[i].start_ms >= end_ms))]
    parts = []
    for entry, table in zip(entries, verified_tables(store, entries), strict=True):
        if start_ms is not None and entry.start_ms < start_ms:
            table = table.filter(pc.greater_equal(table[column], start_ms))
        if end_ms is not None and entry.end_ms > end_ms:
            table = table.filter(pc.less(table[column], end_ms))
        parts.append(table.replace_schema_metadata(None))
    return pa.concat_tables(parts) if parts else schema_of(store.spec.kind_info).empty_table()
