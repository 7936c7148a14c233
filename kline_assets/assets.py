"""The `klines_1m` asset of one dataset: a partition per local day, a whole range in one run.

No `from __future__ import annotations` here: Dagster reads the context annotation at run time.
"""


import dagster as dg

from kline_assets.collect import DayStream
from kline_assets.names import ARCHIVE, CHUNK_IO_MANAGER, EXCHANGE, KLINES, group_name, klines_key
from kline_assets.partitions import key_to_day
from kline_assets.resources import ArchiveResource, ExchangeResource
from kline_assets.schema import COLUMN_NAMES
from kline_assets.settings import DatasetSpec


def klines_description(spec: DatasetSpec) -> str:
    return (
        f"Closed 1-minute klines of {spec.pair} on Binance {spec.market} ({spec.exchange_id}), one zstd "
        f"Parquet chunk per local day under <data root>/{spec.exchange_id}/{spec.symbol}/1m/chunks, listed "
        f"with its sha256 in manifest.json. Columns: {', '.join(COLUMN_NAMES)}. Today's partition is live."
    )


def build_klines_asset(spec: DatasetSpec, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=klines_key(spec),
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),  # one run per range: ~3 s per run adds up
        io_manager_key=CHUNK_IO_MANAGER,
        group_name=group_name(spec),
        kinds={"parquet", "binance"},
        tags={"market": spec.market},
        description=klines_description(spec),
        required_resource_keys={ARCHIVE, EXCHANGE},
    )
    def _klines(context: dg.AssetExecutionContext) -> dg.Output:
        archive: ArchiveResource = getattr(context.resources, ARCHIVE)
        exchange: ExchangeResource = getattr(context.resources, EXCHANGE)
        days = sorted(key_to_day(k) for k in context.partition_keys)
        stream = DayStream(archive.store(spec), exchange.client(spec.market), days,
                           page=exchange.page(spec.market), workers=exchange.workers)
        context.log.info(f"{spec.name}: {len(days)} day(s) {days[0]}..{days[-1]}")
        return dg.Output(stream)

    _klines.__name__ = KLINES
    return _klines
