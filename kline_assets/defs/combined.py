"""The `klines_1m_combined` asset: all verified chunks of a dataset in one file, downstream of the
blocking checks of `klines_1m`.

No `from __future__ import annotations`: Dagster reads the context annotation at run time.
"""

import datetime as dt

import dagster as dg

from kline_assets.defs.names import STORE, combined_key, group_name, klines_key, prefixed
from kline_assets.defs.resources import StoreResource, run_resource
from kline_assets.settings import DatasetSpec, Settings
from kline_assets.store.combine import combine
from kline_assets.store.daycalendar import day_states, markdown
from kline_assets.timezones import ms_to_iso, parse_zone


class CombineConfig(dg.Config):
    from_index: int | None = None
    to_index: int | None = None
    tz: str | None = None  # only names the file: BTCUSDT_1m_all_Europe-Zurich.parquet; data stays UTC ms


def build_combined_asset(spec: DatasetSpec, settings: Settings) -> dg.AssetsDefinition:
    prefix = settings.key_prefix

    @dg.asset(
        key=combined_key(spec, prefix),
        deps=[klines_key(spec, prefix)],
        group_name=group_name(spec, prefix),
        kinds={"parquet", "binance"},
        required_resource_keys={prefixed(prefix, STORE)},
        description=f"All chunks of {spec.name} streamed into `combined/{spec.symbol}_1m_all[_<tz>].parquet` "
                    "(zstd, one row group per day, the chunk schema). Only chunks whose sha256 matches "
                    "the manifest are combined.",
    )
    def _combined(context: dg.AssetExecutionContext, config: CombineConfig) -> dg.MaterializeResult:
        root: StoreResource = run_resource(context, settings, STORE)
        suffix = parse_zone(config.tz).file_suffix() if config.tz else None
        store = root.store(spec)
        result = combine(store, config.from_index, config.to_index, suffix)
        context.log.info(f"{result.path}: {result.chunks} chunks, {result.rows} rows"
                         f"{'' if result.rebuilt else ' (unchanged, not rewritten)'}")
        return dg.MaterializeResult(metadata={
            "rows": result.rows, "chunks": result.chunks, "bytes": result.bytes,
            "first_open_time": ms_to_iso(result.first_open_time) or "-",
            "last_open_time": ms_to_iso(result.last_open_time) or "-",
            "path": dg.MetadataValue.path(str(result.path)), "rebuilt": result.rebuilt,
            "coverage": dg.MetadataValue.md(markdown(day_states(store.manifest(), dt.date.today()))),
        })

    return _combined
