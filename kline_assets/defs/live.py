"""Keeping today current: which days a live update must touch (the sensor's and `kline-assets live`'s),
and which of the days it commits Dagster is told about in that minute.

A live update covers every day from the last one that is not complete through today, so a machine
that slept for three days catches up in one run, and the first run after local midnight completes
yesterday. Runs are incremental: an incomplete chunk is extended from its last covered minute.

Recording: a live minute rewrites today's chunk of every dataset, but Dagster's stock storage takes 15-20
ms per event (one per day, a materialization, and an evaluation for a day that fails a check; measured on
SQLite and on Postgres, `bench/events.py`), so recording 900 datasets every minute would take a good part
of the minute. The data is current every minute whatever the number of datasets (the manifest is the
commit point and what readers use); Dagster hears of a live day at once when it matters (a new day, a day
that completes, a catch-up day, a check that fails) and otherwise in turns, at most `RECORDS_PER_MINUTE`
datasets a minute: every minute up to 240 datasets, every 4 minutes for 900.
"""

from __future__ import annotations

import datetime as dt
import time
import zlib

from kline_assets.defs.names import LIVE_OP, SOURCE_LIVE, TAG_SOURCE, dataset_tags, range_tags
from kline_assets.settings import DatasetSpec
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.manifest import Manifest
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


AFTER_BOUNDARY_S = 2.0  # the exchange closes a minute a moment after :00; asking at :02 finds it closed


def live_run_config(specs: list[DatasetSpec], first: dt.date, last: dt.date, not_before_ms: int = 0) -> dict:
    """The live job's run config for `specs` and days first..last (the sensor's runs and the CLI's); a run
    requested ahead of its minute boundary (`not_before_ms`) waits for it."""
    return {"ops": {LIVE_OP: {"config": {"datasets": [s.name for s in specs], "first_day": first.isoformat(),
                                         "last_day": last.isoformat(), "not_before_ms": not_before_ms}}}}


def wait_for_boundary(not_before_ms: int) -> None:
    """Sleep until `AFTER_BOUNDARY_S` past the boundary `not_before_ms` (machine clock; never over ~2 minutes)."""
    wait = (not_before_ms / 1000 + AFTER_BOUNDARY_S) - time.time()
    if 0 < wait < 120:
        time.sleep(wait)


def live_tags(specs: list[DatasetSpec], first: dt.date, last: dt.date) -> dict[str, str]:
    """What a live run writes, as tags (`busy_ranges` reads them): its days and its datasets."""
    return {**range_tags(first.isoformat(), last.isoformat()), TAG_SOURCE: SOURCE_LIVE,
            **dataset_tags([s.name for s in specs])}


# ~240 events, ~4 s of Dagster's stock storage a minute on SQLite or Postgres: what 60 datasets cost when a
# day was four events (a materialization and three check evaluations)
RECORDS_PER_MINUTE = 240


def record_period(datasets: int) -> int:
    """Minutes between the turns of a dataset whose live day only grew by a few closed minutes."""
    return max(1, -(-datasets // RECORDS_PER_MINUTE))


def recording_turn(name: str, minute: int, period: int) -> bool:
    """Whether `minute` is the dataset's turn: datasets spread evenly over the period, by a stable hash."""
    return zlib.crc32(name.encode()) % period == minute % period
