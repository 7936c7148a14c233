"""One combined Parquet file per dataset, streamed chunk by chunk (one row group per chunk).

Memory stays at about one chunk whatever the number of days (on S3: plus one part of the multipart upload
the file streams into). Parquet cannot be appended in place (the
footer closes the file), so "incremental" here means: the file records the sha256 of every chunk it was
built from, and a combine whose inputs are unchanged writes nothing; otherwise it is rebuilt, which
streams at disk speed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from kline_assets.errors import BadInput
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.manifest import ChunkEntry, Manifest
from kline_assets.store.reader import verified_tables
from kline_assets.store.schema import schema_of

SOURCES_KEY = b"kline_assets.sources"


@dataclass
class Combined:
    path: str  # the file, or the s3:// object
    chunks: int
    rows: int
    bytes: int
    first_open_time: int | None
    last_open_time: int | None
    rebuilt: bool


def _sources(store: DatasetStore, key: str) -> list | None:
    """What an existing combined file was built from, read from its footer alone."""
    fs, base = store.backend.arrow()
    try:
        meta = pq.read_schema(f"{base}/{key}", filesystem=fs).metadata or {}
        return json.loads(meta[SOURCES_KEY]) if SOURCES_KEY in meta else None
    except (OSError, pa.ArrowInvalid, ValueError):
        return None


def _size(store: DatasetStore, key: str) -> int:
    return next((o.size for o in store.backend.list(key) if o.key == key), 0)


def plan(store: DatasetStore, manifest: Manifest, from_index: int | None, to_index: int | None,
         tz_suffix: str | None) -> tuple[list[ChunkEntry], str]:
    """The chunks an (inclusive) index range selects and the file they go to; an empty range is bad input."""
    entries = [e for i, e in sorted(manifest.chunks.items())
               if (from_index is None or i >= from_index) and (to_index is None or i <= to_index)]
    ranged = from_index is not None or to_index is not None
    if ranged and not entries:
        held = f"{min(manifest.chunks)}..{max(manifest.chunks)}" if manifest.chunks else "none"
        raise BadInput(f"no chunk in the index range {from_index or '-'}..{to_index or '-'} "
                       f"(the dataset holds indexes {held})")
    return entries, store.paths.combined_file(tz_suffix, (entries[0].index, entries[-1].index) if ranged else None)


def combine(store: DatasetStore, from_index: int | None = None, to_index: int | None = None,
            tz_suffix: str | None = None) -> Combined:
    if from_index is not None and to_index is not None and from_index > to_index:
        raise BadInput(f"--from-index {from_index} is after --to-index {to_index}")
    manifest = store.manifest()
    entries, target = plan(store, manifest, from_index, to_index, tz_suffix)
    sources = [[e.index, e.sha256] for e in entries]
    firsts = [e.first_open_time for e in entries if e.first_open_time is not None]
    lasts = [e.last_open_time for e in entries if e.last_open_time is not None]
    summary = dict(chunks=len(entries), rows=sum(e.rows for e in entries),
                   first_open_time=min(firsts, default=None), last_open_time=max(lasts, default=None))
    where = store.backend.uri(target)
    if _sources(store, target) == sources:
        return Combined(where, bytes=_size(store, target), rebuilt=False, **summary)
    schema = schema_of(store.spec.kind_info).with_metadata({SOURCES_KEY: json.dumps(sources).encode()})
    with store.backend.writer(target) as sink, pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for table in verified_tables(store, entries):  # a chunk that does not match is never combined
            if table.num_rows:
                writer.write_table(table.replace_schema_metadata(schema.metadata))
    return Combined(where, bytes=_size(store, target), rebuilt=True, **summary)
