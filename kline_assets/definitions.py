"""The code location: the only place that wires assets, checks, sensors and resources together."""

from __future__ import annotations

import dagster as dg

from kline_assets.assets import build_klines_asset
from kline_assets.combined_asset import build_combined_asset
from kline_assets.io_manager import ChunkIOManager
from kline_assets.jobs import build_verify_job
from kline_assets.names import ARCHIVE, CHUNK_IO_MANAGER, EXCHANGE, klines_key
from kline_assets.partitions import daily_partitions
from kline_assets.resources import ArchiveResource, ExchangeResource
from kline_assets.sensors import build_live_sensor
from kline_assets.settings import Settings, load_settings


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


def build_definitions(settings: Settings) -> dg.Definitions:
    live_job = build_live_job(settings)
    return dg.Definitions(
        assets=build_assets(settings),
        jobs=[live_job, *(build_verify_job(spec) for spec in settings.pairs)],
        sensors=[build_live_sensor(settings, live_job)],
        resources=build_resources(settings),
    )


defs = build_definitions(load_settings())
