"""Asset, check, job and sensor names: constants, so tests, the CLI and the UI agree."""

from __future__ import annotations

import dagster as dg

from kline_assets.settings import DatasetSpec

KLINES = "klines_1m"
COMBINED = "klines_1m_combined"

CHECK_CONTINUITY = "continuity"
CHECK_INTEGRITY = "integrity"
CHECK_SANITY = "sanity"

ARCHIVE = "archive"
EXCHANGE = "exchange"
CHUNK_IO_MANAGER = "chunk_io_manager"

LIVE_SENSOR = "live_klines_sensor"
COMBINE_SENSOR = "combine_after_backfill_sensor"


def klines_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.exchange_id, spec.symbol, KLINES])


def combined_key(spec: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.exchange_id, spec.symbol, COMBINED])


def group_name(spec: DatasetSpec) -> str:
    return f"{spec.exchange_id}_{spec.symbol}"


def job_name(prefix: str, spec: DatasetSpec) -> str:
    return f"{prefix}_{spec.exchange_id}_{spec.symbol}"
