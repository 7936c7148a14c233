"""`klines_1h` (with `KLINE_HOURLY=1`): the example of a downstream asset built on `klines_1m`.

Each local day's 1-minute rows become hourly OHLCV bars: open of the first minute, highest high, lowest
low, close of the last minute, volumes and trades summed; an hour without any kline has no bar. The
input arrives through the chunk IO manager, verified: a `pandas.DataFrame` for one partition, a
`dict[partition_key, DataFrame]` for a range run. Each day's bars are written to
`<data root>/<exchange_id>/<PAIR_TOKEN>/1h/<YYYY-MM-DD>.parquet` (replaced atomically), so a range of
years is one run (Dagster's default IO manager stores one partition per run only).
Copy this module to build your own assets on the archive.

No `from __future__ import annotations` here: Dagster reads the annotations at run time.
"""

import io

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kline_assets.defs.names import STORE, group_name, hourly_key, klines_key, prefixed
from kline_assets.defs.resources import StoreResource, run_resource
from kline_assets.settings import DatasetSpec, Settings
from kline_assets.store.paths import hourly_file
from kline_assets.timezones import AlignZone

HOUR_MS = 3_600_000
SUMS = ["volume", "quote_volume", "trades", "taker_base_volume", "taker_quote_volume"]


def hourly_bars(minutes: pd.DataFrame, zone: AlignZone) -> pd.DataFrame:
    """Hourly bars of one local day's klines; `open_time` is each local hour's first instant (UTC ms),
    so half-hour zones (Asia/Kolkata) and DST days get their own local hours."""
    columns = ["open_time", "open", "high", "low", "close", *SUMS]
    if minutes.empty:
        return pd.DataFrame({c: pd.Series(dtype=minutes[c].dtype) for c in columns})
    utc = pd.to_datetime(minutes["open_time"], unit="ms", utc=True)
    local_ms = utc.dt.tz_convert(zone.tzinfo).dt.tz_localize(None).astype("datetime64[ms]").astype("int64")
    hour = minutes["open_time"] - local_ms % HOUR_MS
    bars = minutes.groupby(hour.rename("hour"), sort=True).agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
        **{c: (c, "sum") for c in SUMS})
    return bars.reset_index().rename(columns={"hour": "open_time"})[columns]


def build_hourly_asset(spec: DatasetSpec, partitions_def: dg.PartitionsDefinition,
                       settings: Settings) -> dg.AssetsDefinition:
    prefix, zone = settings.key_prefix, settings.align_tz

    @dg.asset(
        key=hourly_key(spec, prefix),
        ins={"klines": dg.AssetIn(klines_key(spec, prefix))},  # same daily partitions: day k reads day k
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=group_name(spec, prefix),
        required_resource_keys={prefixed(prefix, STORE)},
        kinds={"pandas", "binance"},
        description=f"Hourly OHLCV bars of {spec.pair} ({spec.market}), one partition per local day, "
                    "resampled from klines_1m (an example of a downstream asset).",
    )
    def _hourly(context: dg.AssetExecutionContext, klines) -> dg.MaterializeResult:
        root: StoreResource = run_resource(context, settings, STORE)
        # one partition: a DataFrame; a range run: {partition_key: DataFrame}, as the IO manager hands them
        days = klines if isinstance(klines, dict) else {context.partition_key: klines}
        for key, frame in sorted(days.items()):
            bars = hourly_bars(frame, zone)
            target = hourly_file(spec, key)
            buffer = io.BytesIO()
            pq.write_table(pa.Table.from_pandas(bars, preserve_index=False), buffer, compression="zstd")
            root.backend().put(target, buffer.getvalue())
            where = dg.MetadataValue.path(root.backend().uri(target))
            context.add_asset_metadata({"bars": len(bars), "path": where}, partition_key=key)
        return dg.MaterializeResult()

    return _hourly
