"""The Python API, for notebooks and scripts (re-exported by `kline_assets`): verified reads of a
dataset, its manifest and combined file, and the Dagster definitions and keys to build on.

Every function finds the dataset under `data_root` (default: `KLINE_DATA_ROOT`, else `data`) by market
and pair, and takes its alignment zone and start from its manifest. Unknown datasets, markets, pairs,
zones and impossible windows raise `BadInput` with one clear line (the command line's exit-2 errors);
a day that was never loaded, or a chunk that is missing or does not match the manifest, raises
`ChunkUnavailable`.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import TYPE_CHECKING

import pyarrow.dataset as pads

from kline_assets.errors import BadInput, ChunkUnavailable
from kline_assets.settings import DatasetSpec, env_setting, get_market, normalise_pair, parse_kinds
from kline_assets.store.backend import open_root
from kline_assets.store.combine import Combined, combine
from kline_assets.store.dataset import DatasetStore, manifest_at
from kline_assets.store.manifest import Manifest
from kline_assets.store.paths import DatasetPaths
from kline_assets.store.reader import backfill_hint, day_runs, uncovered_days, verified_tables, window_table
from kline_assets.store.schema import schema_of
from kline_assets.timezones import AlignZone, parse_instant, parse_zone

__all__ = ["build_combined", "build_definitions", "klines_asset_key", "load_manifest", "open_dataset",
           "read_funding", "read_klines"]

if TYPE_CHECKING:  # reads need neither Dagster nor its import time; the two Dagster helpers import it
    import dagster as dg
    import pandas as pd

Instant = str | dt.date | dt.datetime | None


def _spec(market: str, pair: str | None, kind: str = "klines") -> DatasetSpec:
    """`pair` None: the market's BTC pair (BTC/USDT, on COIN-M BTC/USD)."""
    info = get_market(market)
    kinds = parse_kinds(kind, info.name)
    if len(kinds) != 1:
        raise BadInput(f"kind={kind!r}: one kind at a time")
    return DatasetSpec(info.name, normalise_pair(pair or info.default_pair), kinds[0])


def _store(market: str, pair: str | None, data_root: str | os.PathLike | None, kind: str = "klines") -> DatasetStore:
    root = data_root or env_setting("data_root")
    spec = _spec(market, pair, kind)
    backend = open_root(root)
    key = DatasetPaths(spec).manifest
    try:
        manifest = manifest_at(backend, key)
    except FileNotFoundError:
        what = "" if spec.kind == "klines" else f" {spec.kind}"
        raise BadInput(f"no {spec.market} {spec.pair}{what} dataset under {root} (no {backend.uri(key)})") from None
    return DatasetStore(backend, spec, parse_zone(manifest.align_tz), manifest.start_date)


def _ms(value: Instant, zone: AlignZone) -> int | None:
    """ISO text, a date (its local midnight) or a datetime; naive values are in the dataset's zone."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        instant = value if value.tzinfo else value.replace(tzinfo=zone.tzinfo)
        return int(instant.timestamp() * 1000)
    if isinstance(value, dt.date):
        return zone.midnight_ms(value)
    if isinstance(value, str):
        return int(parse_instant(value, zone).timestamp() * 1000)
    raise BadInput(f"bad time {value!r}: use an ISO string, a date or a datetime")


def load_manifest(market: str = "futures", pair: str | None = None, *,
                  data_root: str | os.PathLike | None = None, kind: str = "klines") -> Manifest:
    """The dataset's manifest: `chunks` maps each index to its entry (day, file, rows, sha256, gaps...)."""
    return _store(market, pair, data_root, kind).manifest()


MISSING = ("raise", "ignore")


JOINABLE = ("mark", "index", "premium", "funding")


def read_klines(market: str = "futures", pair: str | None = None, start: Instant = None, end: Instant = None, *,
                data_root: str | os.PathLike | None = None, missing: str = "raise",
                datetime_index: bool = False, kind: str = "klines", join: tuple[str, ...] | list[str] = ()
                ) -> pd.DataFrame:
    """The stored rows with `start <= open_time < end` (either bound may be left out), in the chunk
    schema, verified chunk by chunk and read only from the chunks the window touches.

    Days of the window the dataset does not hold (never loaded, or stopped short) raise
    `ChunkUnavailable` naming them and the command that loads them; `missing="ignore"` returns what is
    stored. Minutes the exchange never had (recorded gaps) are not missing; an open bound stops at the
    dataset's own first or last day, and today's chunk holds what has closed. `datetime_index=True` indexes
    the rows by their open time as time-zone-aware date-times in the dataset's zone (`open_time` stays).
    `kind`: `klines` (trade klines), a futures price kind, `mark`, `index` or `premium` (the same columns), or
    `funding` (the events of `read_funding`).

    `join`: other kinds of the same pair as columns of each minute, for a backtest: `mark_close`,
    `index_close`, `premium_close` (NaN for a minute that kind lacks), and with "funding" the `funding_rate`
    and `funding_time` of the latest funding event at or before the minute's open (earlier days are read
    for it). Each joined kind's days follow the same `missing` rule over the window."""
    if missing not in MISSING:
        raise BadInput(f"missing={missing!r}: use 'raise' or 'ignore'")
    joined = _joined_kinds(join, kind)
    store = _store(market, pair, data_root, kind)
    start_ms, end_ms = _ms(start, store.zone), _ms(end, store.zone)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise BadInput(f"impossible window: end {end} is not after start {start}")
    frame = _frame(store, start_ms, end_ms, missing)
    if joined:
        lo = start_ms if start_ms is not None else (int(frame["open_time"].iloc[0]) if len(frame) else None)
        hi = end_ms if end_ms is not None else (int(frame["open_time"].iloc[-1]) + 60_000 if len(frame) else None)
        for other in joined:
            frame = _join(frame, _store(market, pair, data_root, other), lo, hi, missing)
    if datetime_index:
        import pandas as pd

        column = store.spec.kind_info.time_column  # funding: funding_time, indexed as funding_datetime
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame[column], unit="ms", utc=True),
                                       name=column.replace("_time", "_datetime"))
        frame.index = frame.index.tz_convert(store.zone.tzinfo)
    return frame


def read_funding(market: str = "futures", pair: str | None = None, start: Instant = None, end: Instant = None, *,
                 data_root: str | os.PathLike | None = None, missing: str = "raise",
                 datetime_index: bool = False) -> pd.DataFrame:
    """The stored funding events with `start <= funding_time < end`: `funding_time`, `funding_rate`,
    `mark_price` (NaN for days from the archive, which has none), `funding_interval_hours` (NaN for days
    from REST, which states none); the missing-day rules of `read_klines` (and its `datetime_index`, by
    `funding_time`)."""
    return read_klines(market, pair, start, end, data_root=data_root, missing=missing,
                       datetime_index=datetime_index, kind="funding")


def _joined_kinds(join: tuple[str, ...] | list[str] | str, kind: str) -> tuple[str, ...]:
    names = (join,) if isinstance(join, str) else tuple(join)
    unknown = [n for n in names if n not in JOINABLE]
    if unknown:
        raise BadInput(f"join={unknown[0]!r}: join any of {', '.join(JOINABLE)}")
    if names and kind != "klines":
        raise BadInput(f"join= with kind={kind!r}: join other kinds to the trade klines (kind='klines')")
    return tuple(dict.fromkeys(names))


def _frame(store: DatasetStore, start_ms: int | None, end_ms: int | None, missing: str) -> pd.DataFrame:
    """The dataset's rows of the window as a frame; with `missing="raise"`, days it lacks raise."""
    manifest = store.manifest()
    lacking = uncovered_days(manifest, store.zone, start_ms, end_ms, int(time.time() * 1000)) \
        if missing == "raise" else []
    if lacking:
        where = store.backend.uri("").rstrip("/")
        what = "" if store.spec.kind == "klines" else f" {store.spec.kind_info.what}"
        raise ChunkUnavailable(
            f"{store.spec.market} {store.spec.pair}{what} under {where} lacks {len(lacking)} day(s) of the window: "
            f"{day_runs(lacking)}; load them with `{backfill_hint(store, lacking[0], lacking[-1])}`, or pass "
            "missing='ignore'")
    return window_table(store, manifest, start_ms, end_ms).to_pandas()


def _join(frame: pd.DataFrame, other: DatasetStore, start_ms: int | None, end_ms: int | None,
          missing: str) -> pd.DataFrame:
    """`frame` with `other`'s columns per minute (`read_klines`'s `join`)."""
    import pandas as pd

    kind = other.spec.kind_info
    if not kind.events:
        closes = _frame(other, start_ms, end_ms, missing)[["open_time", "close"]]
        return frame.merge(closes.rename(columns={"close": f"{kind.name}_close"}), on="open_time", how="left")
    events = _frame(other, start_ms, end_ms, missing)
    if start_ms is not None:  # the event in force at the window's first minute came before it (< 8 h before)
        before = window_table(other, other.manifest(), start_ms - 86_400_000, start_ms).to_pandas()
        events = pd.concat([before.tail(1), events], ignore_index=True) if len(before) else events
    events = events[["funding_rate", "funding_time"]].astype({"funding_time": "int64"})
    merged = pd.merge_asof(frame.astype({"open_time": "int64"}), events, left_on="open_time",
                           right_on="funding_time", direction="backward")
    merged["funding_time"] = merged["funding_time"].astype("Int64")
    return merged


def open_dataset(market: str = "futures", pair: str | None = None, *,
                 data_root: str | os.PathLike | None = None, kind: str = "klines") -> pads.Dataset:
    """A `pyarrow.dataset.Dataset` over exactly the chunks the manifest lists (never unlisted objects, and
    with no LIST of a bucket), each checked against its sha256 first, for DuckDB, Polars or pyarrow scans
    of years of data; on S3 through pyarrow's S3 filesystem, configured as boto3 is (`AWS_*`)."""
    store = _store(market, pair, data_root, kind)
    chunks = store.manifest().chunks
    entries = [chunks[i] for i in sorted(chunks)]
    for _ in verified_tables(store, entries):  # each chunk checked (several read at once)
        pass
    filesystem, base = store.backend.arrow()
    return pads.dataset([f"{base}/{store.key(e)}" for e in entries], schema=schema_of(store.spec.kind_info),
                        format="parquet",
                        filesystem=filesystem)


def build_combined(market: str, pair: str, *, from_index: int | None = None, to_index: int | None = None,
                   tz: str | None = None, data_root: str | os.PathLike | None = None,
                   kind: str = "klines") -> Combined:
    """What `kline-assets combine` does, without a Dagster run: the chunks (all, or an inclusive index
    range) streamed into one file under `combined/`; `tz` only names the file."""
    store = _store(market, pair, data_root, kind)
    return combine(store, from_index, to_index, parse_zone(tz).file_suffix() if tz else None)


def klines_asset_key(market: str, pair: str, *, key_prefix: str | None = None, kind: str = "klines") -> dg.AssetKey:
    """The key of the dataset's `klines_1m` asset, for `AssetIn`/`deps` of your own assets (`key_prefix`: that
    of the `KlineArchive` component defining it, if it has one)."""
    from kline_assets.defs.names import klines_key

    return klines_key(_spec(market, pair, kind), key_prefix or "")


def build_definitions() -> dg.Definitions:
    """The whole code location from the environment's settings, built on call, for
    `dg.Definitions.merge(build_definitions(), my_defs)` in your own code location module."""
    from kline_assets.defs.component import build_definitions as build

    return build()
