"""The code location: the only place that wires assets, checks, sensors and resources together."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from kline_assets.assets import build_klines_asset
from kline_assets.combined_asset import build_combined_asset
from kline_assets.exchange import BinanceClient
from kline_assets.io_manager import ChunkIOManager
from kline_assets.jobs import build_verify_job
from kline_assets.limiter import WeightLimiter
from kline_assets.logs import setup_logging
from kline_assets.names import ARCHIVE, CHUNK_IO_MANAGER, EXCHANGE, combined_key, klines_key
from kline_assets.partitions import daily_partitions
from kline_assets.resources import ArchiveResource, ExchangeResource
from kline_assets.sensors import build_combine_after_backfill_sensor, build_live_sensor
from kline_assets.settings import MARKETS, Settings, load_settings
from kline_assets.symbols import resolve_for_definitions


def build_resources(settings: Settings) -> dict:
    archive = ArchiveResource(data_root=settings.data_root, align_tz=settings.align_tz.name,
                              start=settings.start.isoformat())
    return {
        ARCHIVE: archive,
        EXCHANGE: ExchangeResource(spot_url=settings.spot_url, futures_url=settings.futures_url),
        CHUNK_IO_MANAGER: ChunkIOManager(archive=archive),
    }


def build_assets(settings: Settings) -> list:
    partitions_def = daily_partitions(settings.align_tz, settings.start)
    klines = [build_klines_asset(spec, partitions_def) for spec in settings.pairs]
    return klines + [build_combined_asset(spec) for spec in settings.pairs]


def build_live_job(settings: Settings):
    return dg.define_asset_job("live_klines", selection=[klines_key(spec) for spec in settings.pairs],
                               description="Live updates of klines_1m, started by the live sensor.")


def probe_clients(settings: Settings) -> dict[str, BinanceClient]:
    """Clients that give up fast: definition loading must not wait on an unreachable exchange."""
    return {m: BinanceClient(MARKETS[m], settings.origin(m), timeout_ms=2000, max_attempts=1,
                             limiter=WeightLimiter(MARKETS[m].default_budget)) for m in MARKETS}


def build_definitions(settings: Settings, resolve_pairs: bool = True) -> dg.Definitions:
    """`resolve_pairs`: replace pairs the exchange does not list by BTC/USDT (SPEC), asking at most
    once per pair and data root."""
    if resolve_pairs:
        settings = replace(settings, pairs=resolve_for_definitions(settings.data_root, settings.pairs,
                                                                   probe_clients(settings)))
    setup_logging(settings.log_dir)
    live_job = build_live_job(settings)
    combine_job = dg.define_asset_job("combine_klines", selection=[combined_key(s) for s in settings.pairs],
                                      description="Rebuild combined files (after backfills, when enabled).")
    sensors = [build_live_sensor(settings, live_job)]
    if settings.build_combined_on_backfill:
        sensors.append(build_combine_after_backfill_sensor(settings, combine_job))
    return dg.Definitions(
        assets=build_assets(settings),
        jobs=[live_job, combine_job, *(build_verify_job(spec) for spec in settings.pairs)],
        sensors=sensors,
        resources=build_resources(settings),
    )


defs = build_definitions(load_settings())
