"""Keeping today current: which days a live update must touch (the sensor's and `kline-assets live`'s).

A live update covers every day from the last one that is not complete through today, so a machine
that slept for three days catches up in one run, and the first run after local midnight completes
yesterday. Runs are incremental: an incomplete chunk is extended from its last covered minute.
"""

from __future__ import annotations

import datetime as dt
import time

from kline_assets.archive.manifest import Manifest
from kline_assets.archive.store import DatasetStore
from kline_assets.timezones import AlignZone


def live_days(manifest: Manifest | None, zone: AlignZone, now_ms: int,
              first_allowed: dt.date) -> tuple[dt.date, dt.date]:
    """[first, today]: from the last incomplete (or the day after the last complete) day through today.

    Today is the earlier of the exchange's and this machine's date, so a clock a few seconds ahead at
    midnight never asks Dagster for a partition it does not have yet."""
    today = min(zone.local_date(now_ms), zone.local_date(int(time.time() * 1000)))
    entries = sorted(manifest.chunks.values(), key=lambda e: e.index) if manifest else []
    first = today
    if entries:
        last = entries[-1]
        last_day = dt.date.fromisoformat(last.partition)
        first = last_day if not last.complete else last_day + dt.timedelta(days=1)
    first = max(min(first, today), first_allowed)
    return first, today


def live_groups(stores: list[DatasetStore], zone: AlignZone,
                now_ms: int) -> dict[tuple[dt.date, dt.date], list[DatasetStore]]:
    """Datasets grouped by the days their live update must touch: each group is one run."""
    groups: dict[tuple[dt.date, dt.date], list[DatasetStore]] = {}
    for store in stores:
        groups.setdefault(live_days(store.read_manifest(), zone, now_ms, store.start), []).append(store)
    return groups
