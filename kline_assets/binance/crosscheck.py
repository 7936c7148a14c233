"""`verify --cross-check N`: archived days fetched again from REST and compared row by row.

Binance has replaced archive files before (a CHECKSUM only proves the file is the one published, not
that it agrees with the API), so a sample of a dataset's archive days is asked again from REST.
"""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa

from kline_assets.binance.client import BinanceClient
from kline_assets.binance.paging import fetch_events, fetch_window
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.reader import verified_table
from kline_assets.store.schema import funding_table, rows_to_table
from kline_assets.store.verify import Problem


def archived_days(store: DatasetStore, first: dt.date | None, last: dt.date | None) -> list[dt.date]:
    days = [dt.date.fromisoformat(e.partition) for e in store.manifest().chunks.values() if e.source == "archive"]
    return sorted(d for d in days if (first is None or d >= first) and (last is None or d <= last))


def cross_check(store: DatasetStore, client: BinanceClient, days: list[dt.date], page: int) -> list[Problem]:
    """One problem per day whose stored rows differ from REST's, naming the first differing row (funding:
    the events' times and rates, what both sources state)."""
    manifest, problems, kind = store.manifest(), [], store.spec.kind_info
    for day in days:
        entry = manifest.entry_for(day)
        stored = verified_table(store, entry)
        if kind.events:  # the archive states intervals and no mark price, REST the other way round
            fetched = fetch_events(client, store.spec.symbol, entry.start_ms, entry.end_ms, client.server_time_ms())
            stored, rest = (t.select(["funding_time", "funding_rate"]) for t in (stored, funding_table(fetched.rows)))
        else:
            fetched = fetch_window(client.source(kind), store.spec.symbol, entry.start_ms, entry.end_ms,
                                   client.server_time_ms(), page)
            rest = rows_to_table(fetched.rows)
        if stored.replace_schema_metadata(None).equals(rest):
            continue
        problems.append(Problem("differs_from_rest", day.isoformat(), first_difference(stored, rest)))
    return problems


def first_difference(stored: pa.Table, rest: pa.Table) -> str:
    a, b = stored.to_pylist(), rest.to_pylist()
    for n, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"row {n} differs: stored {x}, REST {y}"
    return f"stored {len(a)} rows, REST {len(b)}"


def sample(days: list[dt.date], n: int) -> list[dt.date]:
    return sorted(random.sample(days, min(n, len(days))))
