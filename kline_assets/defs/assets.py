"""The `klines_1m` assets: per dataset a partition per local day, a whole range in one run, each day
recorded in Dagster (materialization and three check evaluations) as soon as its batch is committed.

Why `multi_asset` (also for one dataset): Dagster records the events an asset body yields as they come, but it
adds a bare materialization for every partition of the range when the body returns an output, and an
`@asset` with check specs must return its check outputs. A subsettable `multi_asset` makes every output
optional, so the body yields per-day `AssetMaterialization`s and `AssetCheckEvaluation`s: each day is
recorded once, with its metadata, while the run goes on (public API, no output names).

At the end of the run the body yields each selected check's verdict over the run's days (an
`AssetCheckResult`: Dagster expects one, and blocking checks stop downstream steps through it). When the
run also materializes other assets (your own downstream asset, `klines_1h`, `klines_1m_combined`), each
dataset whose days all committed and passed also yields its `MaterializeResult`, so those steps run in
the same run and read the days just written; that records each day a second time, so only such runs do it.

No `from __future__ import annotations` here: Dagster reads the context annotation at run time.
"""

import datetime as dt
import logging
import time

import dagster as dg

from kline_assets.defs.fleet import recording, run_fleet, work_for
from kline_assets.defs.io_manager import ChunkIOManager, Committed
from kline_assets.defs.names import (
    CHUNK_IO_MANAGER,
    EXCHANGE,
    KLINES,
    STORE,
    group_name,
    klines_key,
    node_name,
    prefixed,
    resource_keys,
)
from kline_assets.defs.partitions import key_to_day
from kline_assets.defs.resources import ExchangeResource, StoreResource, run_resource
from kline_assets.logs import PROGRESS
from kline_assets.settings import DatasetSpec, Settings
from kline_assets.store.checks import CHECK_NAMES, CONTINUITY, INTEGRITY, SANITY, Outcome, evaluate, with_previous
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.manifest import ChunkEntry
from kline_assets.store.schema import COLUMN_NAMES
from kline_assets.timezones import ms_to_iso


def klines_description(spec: DatasetSpec) -> str:
    return (
        f"Closed 1-minute klines of {spec.pair} on Binance {spec.market} ({spec.exchange_id}), one zstd "
        f"Parquet chunk per local day under <data root>/{spec.exchange_id}/{spec.symbol}/1m/chunks, listed "
        f"with its sha256 in manifest.json. Columns: {', '.join(COLUMN_NAMES)}. Today's partition is live."
    )


CHECK_DESCRIPTIONS = {
    CONTINUITY: "open_time steps by one minute; every missing minute is a gap the exchange confirmed "
                "(listed in the manifest), including across midnight",
    INTEGRITY: "the file's sha256, row count and schema equal the manifest's and the chunk schema",
    SANITY: "close_time = open_time + 59999, low <= open/close <= high, no negative volumes, every row "
            "closed when fetched and inside the day's window",
}


def day_metadata(entry: ChunkEntry, path: str, now_ms: int | None = None) -> dict:
    md = {
        "rows": dg.MetadataValue.int(entry.rows),
        "first_open_time": dg.MetadataValue.timestamp(entry.first_open_time / 1000)
        if entry.first_open_time is not None else dg.MetadataValue.text("-"),
        "last_open_time": dg.MetadataValue.timestamp(entry.last_open_time / 1000)
        if entry.last_open_time is not None else dg.MetadataValue.text("-"),
        "sha256": entry.sha256,
        "bytes": dg.MetadataValue.int(entry.bytes),
        "complete": dg.MetadataValue.bool(entry.complete),
        "exchange_gap_minutes": dg.MetadataValue.int(entry.gap_minutes),
        "exchange_gaps": dg.MetadataValue.json([[ms_to_iso(a), ms_to_iso(b)] for a, b in entry.exchange_gaps]),
        "path": dg.MetadataValue.path(path),
    }
    if now_ms is not None and not entry.complete and entry.last_open_time is not None:
        md["lag_seconds"] = dg.MetadataValue.float(round((now_ms - (entry.last_open_time + 59_999)) / 1000, 1))
    return md


def batch_outcomes(store: DatasetStore, batch: Committed) -> dict[dt.date, dict[str, Outcome | None]]:
    """The three checks of each day of a committed batch. The stream's threads already checked each file;
    a day whose committed entry is not the file they checked (another writer's won) is checked here, and
    so is continuity across midnight (from the manifest). A day with no entry has no outcomes (None)."""
    manifest, outcomes = batch.manifest, {}
    for day, _ in batch.days:
        entry = manifest.entry_for(day)
        prev = manifest.entry_for(day - dt.timedelta(1))
        if entry is None:
            outcomes[day] = dict.fromkeys(CHECK_NAMES)
        elif day in batch.checked and batch.checked[day][0] == entry.sha256:
            outcomes[day] = with_previous(batch.checked[day][1], entry, prev)
        else:
            outcomes[day] = evaluate(store.chunk_bytes(entry), entry, prev)
    return outcomes


def passed(outcome: Outcome | None) -> bool:
    return bool(outcome and outcome.passed)


def batch_events(store: DatasetStore, key: dg.AssetKey, days: list[tuple[dt.date, ChunkEntry]],
                 outcomes: dict[dt.date, dict[str, Outcome | None]], checks: list[str], now_ms: int):
    """Dagster's record of committed days: their materializations, then an evaluation per check in `checks`
    and day. In that order: with each day's evaluations right after its materialization, a Ctrl-C during
    the run left committed days unrecorded (found by `test_ctrl_c_leaves_exactly_the_committed_days_...`)."""
    for day, entry in days:
        yield dg.AssetMaterialization(asset_key=key, partition=day.isoformat(),
                                      metadata=day_metadata(entry, store.backend.uri(store.key(entry)), now_ms))
    for day, _ in days:
        for name in checks:
            outcome = outcomes[day][name]
            md = dict(outcome.metadata) if outcome else {}
            if not passed(outcome):
                md["problem"] = outcome.problem if outcome else "no chunk in the manifest"
            severity = dg.AssetCheckSeverity.WARN if outcome and outcome.severity == "WARN" else \
                dg.AssetCheckSeverity.ERROR
            yield dg.AssetCheckEvaluation(asset_key=key, check_name=name, passed=passed(outcome), metadata=md,
                                          partition=day.isoformat(), blocking=True, severity=severity)


def klines_spec(spec: DatasetSpec, partitions_def: dg.PartitionsDefinition, prefix: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        klines_key(spec, prefix), group_name=group_name(spec, prefix), kinds={"parquet", "binance"},
        tags={"market": spec.market}, description=klines_description(spec), partitions_def=partitions_def,
    ).with_io_manager_key(prefixed(prefix, CHUNK_IO_MANAGER))


def build_klines_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list:
    """The `klines_1m` asset of every dataset, in one subsettable node per market (`klines_1m_futures`,
    `klines_1m_spot`): a run of any selection is one step per market that fetches its datasets side by side
    (`defs.fleet`), whether live, a backfill or the command line. The markets have budgets of their own and
    one interpreter cannot keep both busy, so Dagster's multiprocess executor runs them in step processes
    of their own, under whatever run launcher the instance has."""
    return [market_node(market, [s for s in settings.pairs if s.market == market], partitions_def, settings)
            for market in sorted({s.market for s in settings.pairs}, key=lambda m: m != "futures")]


def market_node(market: str, specs: list[DatasetSpec], partitions_def: dg.PartitionsDefinition, settings: Settings):
    prefix = settings.key_prefix
    by_key = {klines_key(spec, prefix): spec for spec in specs}
    key_of = {spec: key for key, spec in by_key.items()}
    keys = resource_keys(prefix)

    @dg.multi_asset(
        name=node_name(market, prefix),
        specs=[klines_spec(spec, partitions_def, prefix) for spec in specs],
        check_specs=[dg.AssetCheckSpec(name, asset=key, description=text, blocking=True)
                     for key in by_key for name, text in CHECK_DESCRIPTIONS.items()],
        can_subset=True,  # makes the outputs optional: days are recorded as events (module docstring)
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),  # one run per range: ~3 s per run adds up
        required_resource_keys=set(keys.values()),
    )
    def _klines(context: dg.AssetExecutionContext):
        stores: StoreResource = run_resource(context, settings, STORE)
        exchange: ExchangeResource = run_resource(context, settings, EXCHANGE)
        chunks: ChunkIOManager = getattr(context.resources, keys[CHUNK_IO_MANAGER])
        days = sorted(key_to_day(k) for k in context.partition_keys)
        progress = logging.getLogger(PROGRESS)

        def report(line: str) -> None:  # the run's log in Dagster, and loader.log (and the CLI's stderr)
            context.log.info(line)
            progress.info(line)

        work = [w for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string())
                if (w := work_for(stores.store(by_key[key]), days, report))]
        checks = {key: [n for n in CHECK_NAMES if dg.AssetCheckKey(key, n) in context.selected_asset_check_keys]
                  for key in by_key}
        names = work[0].store.spec.name if len(work) == 1 else f"{market}: {len(work)} datasets"
        report(f"{names}: {len(days)} day(s) {days[0]}..{days[-1]}")
        took = [0.0]  # wall time of this thread spent while Dagster stores the days' events

        verdicts = Verdicts()

        def record(store: DatasetStore, batch: Committed):
            began, now_ms = time.monotonic(), int(time.time() * 1000)
            key, outcomes = key_of[store.spec], batch_outcomes(store, batch)
            verdicts.add(key, batch.days, outcomes, checks[key])
            yield from batch_events(store, key, batch.days, outcomes, checks[key], now_ms)
            took[0] += time.monotonic() - began

        yield from recording(run_fleet(exchange, chunks, work, report), record)
        report(f"{names}: checking and recording {sum(len(w.days) for w in work)} day(s) in Dagster took "
               f"{took[0]:.1f}s, while the next days were being fetched")
        downstream = feeds_other_assets(context.run)
        for item in work:
            key = key_of[item.store.spec]
            results = [verdicts.result(key, name) for name in checks[key]]
            if downstream and verdicts.committed.get(key, 0) == len(days) and all(r.passed for r in results):
                yield dg.MaterializeResult(asset_key=key, check_results=results, metadata={
                    "days": dg.MetadataValue.int(len(item.days)),
                    "note": "the days of this run, each recorded with its chunk's metadata when it committed"})
            else:
                yield from results

    return _klines


def feeds_other_assets(run: dg.DagsterRun) -> bool:
    """Whether the run materializes assets besides `klines_1m` ones: one of them may read ours. Runs started
    from the UI, by `dg launch`, `dagster asset materialize`, sensors and automation record their selection;
    an in-process `dg.materialize` does not (`execute_in_process(asset_selection=...)` does)."""
    return any(key.path[-1] != KLINES for key in run.asset_selection or ())


class Verdicts:
    """Each check's outcome over a run's days, counted as they are recorded (memory: a few numbers per
    dataset and check, whatever the range)."""

    def __init__(self) -> None:
        self.committed: dict[dg.AssetKey, int] = {}
        self.days: dict[tuple[dg.AssetKey, str], int] = {}
        self.failed: dict[tuple[dg.AssetKey, str], list] = {}  # [count, first day, any of ERROR severity]

    def add(self, key: dg.AssetKey, days: list[tuple[dt.date, ChunkEntry]],
            outcomes: dict[dt.date, dict[str, Outcome | None]], checks: list[str]) -> None:
        self.committed[key] = self.committed.get(key, 0) + len(days)
        for day, _ in days:
            for name in checks:
                self.days[key, name] = self.days.get((key, name), 0) + 1
                outcome = outcomes[day][name]
                if not passed(outcome):
                    failed = self.failed.setdefault((key, name), [0, day, False])
                    failed[0], failed[1] = failed[0] + 1, min(failed[1], day)
                    failed[2] = failed[2] or outcome is None or outcome.severity != "WARN"

    def result(self, key: dg.AssetKey, name: str) -> dg.AssetCheckResult:
        days = self.days.get((key, name), 0)
        count, first, error = self.failed.get((key, name), [0, None, False])
        md = {"days": dg.MetadataValue.int(days), "failed_days": dg.MetadataValue.int(count)}
        if count:
            md["first_failed_day"] = dg.MetadataValue.text(first.isoformat())
        return dg.AssetCheckResult(
            asset_key=key, check_name=name, passed=not count, metadata=md,
            severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
            description=f"this run's {days} day(s)" + (f": {count} failed, the first {first}" if count else ""))
