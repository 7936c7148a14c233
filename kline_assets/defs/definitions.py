"""The code location, built on demand: the only place that wires assets, checks, jobs, sensors and
resources together (`definitions_for`), for the `KlineArchive` component (`defs.component`).
Nothing here runs at import, and building opens no socket and no file for writing: which datasets a
selector means comes from the listing stored before (`resolve_datasets(..., ask=False)`)."""

from __future__ import annotations

import dagster as dg

from kline_assets.defs.assets import build_klines_assets
from kline_assets.defs.combined import build_combined_asset
from kline_assets.defs.hourly import build_hourly_asset
from kline_assets.defs.io_manager import ChunkIOManager
from kline_assets.defs.jobs import (
    build_combine_job,
    build_hourly_job,
    build_live_job,
    build_recheck_job,
    build_refresh_job,
    build_verify_job,
)
from kline_assets.defs.names import CHUNK_IO_MANAGER, EXCHANGE, STORE, resource_keys
from kline_assets.defs.partitions import daily_partitions
from kline_assets.defs.resources import ExchangeResource, StoreResource
from kline_assets.defs.sensors import (
    build_combine_after_backfill_sensor,
    build_hourly_after_klines_sensor,
    build_live_sensor,
    build_recheck_schedule,
)
from kline_assets.settings import Settings


def build_resources(settings: Settings) -> dict:
    """The resources runs use, holding the settings as Dagster config: from the environment's settings, each
    names the variable its value comes from (`settings_fields`), in the UI's resource view too."""
    root, keys = StoreResource.from_settings(settings, env_vars=True), resource_keys(settings.key_prefix)
    return {
        keys[STORE]: root,
        keys[EXCHANGE]: ExchangeResource.from_settings(settings, env_vars=True),
        keys[CHUNK_IO_MANAGER]: ChunkIOManager(root=root),
    }


def build_assets(settings: Settings) -> list:
    partitions_def = daily_partitions(settings.align_tz, settings.start)
    klines = build_klines_assets(settings, partitions_def)
    hourly = [build_hourly_asset(spec, partitions_def, settings) for spec in settings.hourly_pairs]
    return klines + hourly + [build_combined_asset(spec, settings) for spec in settings.pairs]


def definitions_for(settings: Settings) -> dg.Definitions:
    """The definitions of `settings` whose datasets are already resolved (`resolve_datasets`)."""
    live_job, combine_job, recheck_job = build_live_job(settings), build_combine_job(settings), \
        build_recheck_job(settings)
    sensors = [build_live_sensor(settings, live_job)] if settings.live_sensor else []
    jobs = [live_job, combine_job, recheck_job, *(build_verify_job(spec, settings) for spec in settings.pairs)]
    if settings.selectors:
        jobs.append(build_refresh_job(settings))
    if settings.combine_after_backfill:
        sensors.append(build_combine_after_backfill_sensor(settings, combine_job))
    if settings.hourly:
        hourly_job = build_hourly_job(settings)
        jobs.append(hourly_job)
        sensors.append(build_hourly_after_klines_sensor(settings, hourly_job))
    return dg.Definitions(assets=build_assets(settings), jobs=jobs, sensors=sensors,
                          schedules=[build_recheck_schedule(settings, recheck_job)],
                          resources=build_resources(settings))

