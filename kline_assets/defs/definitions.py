"""The code location, built on demand: the only place that wires assets, checks, jobs, sensors and
resources together. Nothing here runs at import; `build_definitions` reads the settings, asks the
exchange (2 s at most) whether configured pairs are listed, and opens the log file."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from kline_assets.archive.backend import open_root
from kline_assets.binance.listing import resolve_selectors
from kline_assets.binance.symbols import resolve_for_definitions
from kline_assets.defs.assets import build_klines_assets
from kline_assets.defs.combined import build_combined_asset
from kline_assets.defs.hourly import build_hourly_asset
from kline_assets.defs.io_manager import ChunkIOManager
from kline_assets.defs.jobs import build_combine_job, build_hourly_job, build_live_job, build_verify_job
from kline_assets.defs.names import ARCHIVE, CHUNK_IO_MANAGER, EXCHANGE
from kline_assets.defs.partitions import daily_partitions
from kline_assets.defs.resources import ArchiveResource, ExchangeResource
from kline_assets.defs.sensors import (
    build_combine_after_backfill_sensor,
    build_hourly_after_klines_sensor,
    build_live_sensor,
)
from kline_assets.logs import setup_logging
from kline_assets.settings import MARKETS, Settings, load_settings

PROBE = {"timeout_ms": 2000, "max_attempts": 1}  # loading the code location never waits long on the exchange


def build_resources(settings: Settings) -> dict:
    archive = ArchiveResource.from_settings(settings)
    return {
        ARCHIVE: archive,
        EXCHANGE: ExchangeResource.from_settings(settings),
        CHUNK_IO_MANAGER: ChunkIOManager(archive=archive),
    }


def build_assets(settings: Settings) -> list:
    partitions_def = daily_partitions(settings.align_tz, settings.start)
    klines = build_klines_assets(settings.pairs, partitions_def)
    hourly = [build_hourly_asset(spec, partitions_def, settings.align_tz) for spec in settings.pairs
              if settings.hourly]
    return klines + hourly + [build_combined_asset(spec) for spec in settings.pairs]


def resolve_datasets(settings: Settings) -> Settings:
    """The datasets `settings` define: explicit pairs the exchange does not list replaced by BTC/USDT, and
    the selectors' symbols added (`binance.listing`); asking the exchange ~2 s at most, else from the cache."""
    probe = ExchangeResource.from_settings(settings, **PROBE)
    clients = {m: probe.client(m) for m in MARKETS}
    root = open_root(settings.data_root)
    settings = replace(settings, pairs=resolve_for_definitions(root, settings.pairs, clients))
    return resolve_selectors(settings, clients, root)


def build_definitions(settings: Settings | None = None, resolve_pairs: bool = True) -> dg.Definitions:
    """The whole code location from `settings` (default: the environment's). `resolve_pairs`: replace
    pairs the exchange does not list by BTC/USDT, asking at most once per pair and data root."""
    settings = settings or load_settings()
    setup_logging(settings.log_dir)
    if resolve_pairs:
        settings = resolve_datasets(settings)
    live_job, combine_job = build_live_job(settings), build_combine_job(settings)
    sensors = [build_live_sensor(settings, live_job)]
    jobs = [live_job, combine_job, *(build_verify_job(spec) for spec in settings.pairs)]
    if settings.build_combined_on_backfill:
        sensors.append(build_combine_after_backfill_sensor(settings, combine_job))
    if settings.hourly:
        hourly_job = build_hourly_job(settings)
        jobs.append(hourly_job)
        sensors.append(build_hourly_after_klines_sensor(settings, hourly_job))
    return dg.Definitions(
        assets=build_assets(settings),
        jobs=jobs,
        sensors=sensors,
        resources=build_resources(settings),
    )
