"""The chunk IO manager: writes each day of a `DayStream` as a zstd Parquet chunk and commits the
manifest in batches, so a range of any length holds one day in memory and the manifest is not
rewritten per chunk (which would grow quadratically over years of days).
"""

import logging
import time

import dagster as dg

from kline_assets.collect import DayData, DayStream
from kline_assets.manifest import ChunkEntry
from kline_assets.resources import ArchiveResource
from kline_assets.store import Staged
from kline_assets.timezones import ms_to_iso

log = logging.getLogger("kline_assets")

COMMIT_EVERY_DAYS = 64
COMMIT_EVERY_S = 2.0
PROGRESS_EVERY_S = 5.0


def day_metadata(entry: ChunkEntry, path: str, now_ms: int | None = None) -> dict:
    md = {
        "rows": dg.MetadataValue.int(entry.rows),
        "first_open_time": dg.MetadataValue.timestamp(entry.first_open_time / 1000)
        if entry.first_open_time is not None else dg.MetadataValue.text("-"),
        "last_open_time": dg.MetadataValue.timestamp(entry.last_open_time / 1000)
        if entry.last_open_time is not None else dg.MetadataValue.text("-"),
        "sha256": entry.sha256,
        "bytes": dg.MetadataValue.int(entry.bytes),
        "complete": dg.MetadataValue.bool(entry.complete),
        "exchange_gap_minutes": dg.MetadataValue.int(entry.gap_minutes),
        "exchange_gaps": dg.MetadataValue.json([[ms_to_iso(a), ms_to_iso(b)] for a, b in entry.exchange_gaps]),
        "path": dg.MetadataValue.path(path),
    }
    if now_ms is not None and not entry.complete and entry.last_open_time is not None:
        md["lag_seconds"] = dg.MetadataValue.float(round((now_ms - (entry.last_open_time + 59_999)) / 1000, 1))
    return md


class ChunkIOManager(dg.ConfigurableIOManager):
    archive: ArchiveResource

    def handle_output(self, context: dg.OutputContext, obj: DayStream | None) -> None:
        if obj is None:
            return
        store = self.archive.store(obj.store.spec)
        batch: list[tuple[DayData, Staged]] = []
        totals = {"days": 0, "written": 0, "rows": 0, "requests": 0}
        last_commit = last_progress = time.monotonic()

        def flush() -> None:
            nonlocal last_commit
            entries = {e.index: e for e in store.commit([s for _, s in batch])}
            now_ms = int(time.time() * 1000)
            for data, staged in batch:
                entry = entries.get(staged.entry.index, staged.entry)
                self._metadata(context, data.day.isoformat(), entry, store, now_ms)
            batch.clear()
            last_commit = time.monotonic()

        for data in obj:
            totals["days"] += 1
            totals["requests"] += data.requests
            if data.table is None:
                if data.entry is not None:
                    totals["rows"] += data.entry.rows
                    self._metadata(context, data.day.isoformat(), data.entry, store, None)
            else:
                staged = store.stage(data.day, data.table, data.gaps, data.covered_until_ms)
                batch.append((data, staged))
                totals["written"] += 1
                totals["rows"] += data.table.num_rows
            now = time.monotonic()
            if batch and (len(batch) >= COMMIT_EVERY_DAYS or now - last_commit >= COMMIT_EVERY_S):
                flush()
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                self._progress(context, obj, totals)
        if batch:
            flush()
        self._progress(context, obj, totals)
        # run-level figures; named apart from the per-day `rows` etc. that each partition carries
        context.add_output_metadata({
            "run_days": totals["days"], "run_days_written": totals["written"], "run_rows": totals["rows"],
            "run_requests": totals["requests"], "dataset": dg.MetadataValue.path(str(store.paths.dir)),
        })

    @staticmethod
    def _progress(context: dg.OutputContext, stream: DayStream, totals: dict) -> None:
        elapsed = max(1e-6, time.monotonic() - stream.started)
        msg = (f"{stream.store.spec.name}: {totals['days']}/{len(stream)} days, {totals['rows']} rows, "
               f"{totals['requests']} requests, {totals['days'] / elapsed * 60:.0f} days/min")
        context.log.info(msg)
        log.info(msg)

    @staticmethod
    def _metadata(context: dg.OutputContext, key: str, entry: ChunkEntry, store, now_ms: int | None) -> None:
        md = day_metadata(entry, str(store.paths.resolve(entry.file)), now_ms)
        context.step_context.add_asset_metadata(md, partition_key=key)

    def load_input(self, context: dg.InputContext) -> None:
        raise NotImplementedError("klines_1m is read from the chunk store, not passed as an input")
