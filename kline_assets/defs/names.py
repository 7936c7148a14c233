"""Asset, job, sensor, resource and run-tag names: constants, so tests, the CLI and the UI agree.
(Check names belong to `store.checks`, which computes them.)"""

from __future__ import annotations

import dagster as dg

from kline_assets.settings import DatasetSpec

KLINES = "klines_1m"
COMBINED = "klines_1m_combined"
HOURLY = "klines_1h"

STORE = "store"
EXCHANGE = "exchange"
CHUNK_IO_MANAGER = "chunk_io_manager"

LIVE_JOB = "live_klines"
LIVE_OP = "live_update"  # the live job's one op
BACKFILL_JOB = "backfill_klines"  # the command line's runs of several markets (a step per market)
COMBINE_JOB = "combine_klines"
REFRESH_JOB = "refresh_listing"
RECHECK_JOB = "recheck_archive"  # re-reads the CHECKSUMs of stored archive days (`binance.recheck`)
RECHECK_SCHEDULE = "recheck_archive_weekly"
HOURLY_JOB = "hourly_klines"
LIVE_SENSOR = "live_klines_sensor"
COMBINE_SENSOR = "combine_after_backfill_sensor"
HOURLY_SENSOR = "hourly_after_klines_sensor"

# run tags: which datasets a run writes (in-process runs record no asset selection) and who started it
TAG_DATASET = "kline_assets/dataset"
TAG_SOURCE = "kline_assets/source"
SOURCE_CLI = "cli"
SOURCE_LIVE = "live"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"


# A key prefix (`KlineArchive.key_prefix`, "" for the code location of the environment's settings) is the
# first part of every asset key and the start of every job, sensor, op, group and resource name, so two
# components with different settings can live in one project without one name meaning two things.


def prefixed(prefix: str, name: str) -> str:
    """A job, sensor, op, group or resource name under `prefix`."""
    return f"{prefix}_{name}" if prefix else name


def resource_keys(prefix: str) -> dict[str, str]:
    """The keys the store, exchange and chunk IO manager resources have under `prefix`, by their plain name."""
    return {name: prefixed(prefix, name) for name in (STORE, EXCHANGE, CHUNK_IO_MANAGER)}


def dataset_key(spec: DatasetSpec, asset: str, prefix: str = "") -> dg.AssetKey:
    return dg.AssetKey([*([prefix] if prefix else []), spec.exchange_id, spec.symbol, asset])


def klines_key(spec: DatasetSpec, prefix: str = "") -> dg.AssetKey:
    """The dataset's daily-partitioned asset: `klines_1m`, or its kind's (`mark_klines_1m`, ...)."""
    return dataset_key(spec, spec.kind_info.asset, prefix)


def combined_key(spec: DatasetSpec, prefix: str = "") -> dg.AssetKey:
    """`klines_1m_combined`, or its kind's (`mark_klines_1m_combined`, ...)."""
    return dataset_key(spec, COMBINED if spec.kind == "klines" else f"{spec.kind_info.asset}_combined", prefix)


def hourly_key(spec: DatasetSpec, prefix: str = "") -> dg.AssetKey:
    return dataset_key(spec, HOURLY, prefix)


def node_name(market: str, prefix: str = "") -> str:
    """The node (and step) holding a market's `klines_1m` assets."""
    return prefixed(prefix, f"{KLINES}_{market}")


def group_name(spec: DatasetSpec, prefix: str = "") -> str:
    return prefixed(prefix, f"{spec.exchange_id}_{spec.symbol}")


def job_name(what: str, spec: DatasetSpec, prefix: str = "") -> str:
    """A job (or op) of one dataset: `verify_binanceusdm_BTCUSDT`, `verify_binanceusdm_BTCUSDT_mark`."""
    kind = "" if spec.kind == "klines" else f"_{spec.kind}"
    return prefixed(prefix, f"{what}_{spec.exchange_id}_{spec.symbol}{kind}")


TAG_VALUE_MAX = 2000  # Postgres indexes run tags: a key and value over ~2.7 KB cannot be stored at all


def dataset_tags(names: list[str]) -> dict[str, str]:
    """The datasets a run writes, as tags (in-process and live runs record no asset selection): `TAG_DATASET`
    with the names, comma-separated, continued in `TAG_DATASET/2`, `/3`, ... so no value is over
    `TAG_VALUE_MAX` (900 datasets are ~19 KB of names)."""
    tags: dict[str, str] = {}
    chunk: list[str] = []
    for name in [*names, None]:
        if chunk and (name is None or sum(map(len, chunk)) + len(chunk) + len(name) > TAG_VALUE_MAX):
            tags[TAG_DATASET if not tags else f"{TAG_DATASET}/{len(tags) + 1}"] = ",".join(chunk)
            chunk = []
        if name is not None:
            chunk.append(name)
    return tags


def tagged_datasets(tags: dict[str, str]) -> list[str]:
    """The dataset names of `dataset_tags` back from a run's tags."""
    parts = [tags[TAG_DATASET]] if TAG_DATASET in tags else []
    parts += [tags[f"{TAG_DATASET}/{n}"] for n in range(2, len(tags) + 2) if f"{TAG_DATASET}/{n}" in tags]
    return [name for part in parts for name in part.split(",") if name]


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags that make a run of one partition range (what the UI's single-run backfills set)."""
    return {RANGE_START: first, RANGE_END: last}
