"""The `klines_1m` asset of one dataset: a partition per local day, a whole range in one run.

No `from __future__ import annotations` here: Dagster reads the context annotation at run time.
"""


import datetime as dt

import dagster as dg

from kline_assets.checks import CONTINUITY, INTEGRITY, SANITY, evaluate
from kline_assets.collect import DayStream
from kline_assets.names import ARCHIVE, CHUNK_IO_MANAGER, EXCHANGE, KLINES, group_name, klines_key
from kline_assets.partitions import key_to_day
from kline_assets.resources import ArchiveResource, ExchangeResource
from kline_assets.schema import COLUMN_NAMES
from kline_assets.settings import DatasetSpec
from kline_assets.store import DatasetStore


def klines_description(spec: DatasetSpec) -> str:
    return (
        f"Closed 1-minute klines of {spec.pair} on Binance {spec.market} ({spec.exchange_id}), one zstd "
        f"Parquet chunk per local day under <data root>/{spec.exchange_id}/{spec.symbol}/1m/chunks, listed "
        f"with its sha256 in manifest.json. Columns: {', '.join(COLUMN_NAMES)}. Today's partition is live."
    )


CHECK_DESCRIPTIONS = {
    CONTINUITY: "open_time steps by one minute; every missing minute is a gap the exchange confirmed "
                "(listed in the manifest), including across midnight",
    INTEGRITY: "the file's sha256, row count and schema equal the manifest's and SPEC's",
    SANITY: "close_time = open_time + 59999, low <= open/close <= high, no negative volumes, every row "
            "closed when fetched and inside the day's window",
}


def check_evaluations(store: DatasetStore, days: list[dt.date]):
    """One evaluation per check and day, reading each chunk once; a day with no entry fails integrity."""
    manifest = store.manifest()
    key = klines_key(store.spec)
    for day in days:
        entry = manifest.entry_for(day)
        if entry is None:
            outcomes = {name: None for name in CHECK_DESCRIPTIONS}
        else:
            outcomes = evaluate(store.paths.resolve(entry.file), entry, manifest.entry_for(day - dt.timedelta(1)))
        for name, outcome in outcomes.items():
            passed = outcome.passed if outcome else False
            md = dict(outcome.metadata) if outcome else {}
            if outcome is None or outcome.problem:
                md["problem"] = outcome.problem if outcome else "no chunk in the manifest"
            severity = dg.AssetCheckSeverity.WARN if outcome and outcome.severity == "WARN" else \
                dg.AssetCheckSeverity.ERROR
            yield dg.AssetCheckEvaluation(asset_key=key, check_name=name, passed=passed, metadata=md,
                                          partition=day.isoformat(), blocking=True, severity=severity)


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
        check_specs=[dg.AssetCheckSpec(name, asset=klines_key(spec), description=text, blocking=True)
                     for name, text in CHECK_DESCRIPTIONS.items()],
    )
    def _klines(context: dg.AssetExecutionContext):
        archive: ArchiveResource = getattr(context.resources, ARCHIVE)
        exchange: ExchangeResource = getattr(context.resources, EXCHANGE)
        days = sorted(key_to_day(k) for k in context.partition_keys)
        stream = DayStream(archive.store(spec), exchange.client(spec.market), days,
                           page=exchange.page(spec.market), workers=exchange.workers)
        context.log.info(f"{spec.name}: {len(days)} day(s) {days[0]}..{days[-1]}")
        yield dg.Output(stream)  # the IO manager writes every day before this generator resumes
        yield from check_evaluations(archive.store(spec), days)
        for name in CHECK_DESCRIPTIONS:
            yield dg.Output(None, output_name=f"{klines_key(spec).to_python_identifier()}_{name}")

    _klines.__name__ = KLINES
    return _klines
