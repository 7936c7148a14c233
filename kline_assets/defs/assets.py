"""The `klines_1m` assets: per dataset a partition per local day, a whole range in one run, each day
recorded in Dagster (its materialization; a check evaluation only if it fails a check) as soon as its
batch is committed. `load_days` is their body, and the command line's backfill job's (`defs.jobs`).

Why `multi_asset` (also for one dataset): Dagster records the events an asset body yields as they come, but it
adds a bare materialization for every partition of the range when the body returns an output, and an
`@asset` with check specs must return its check outputs. A subsettable `multi_asset` makes every output
optional, so the body yields per-day `AssetMaterialization`s (and `AssetCheckEvaluation`s of failing
days): each day is recorded once, with its metadata, while the run goes on (public API, no output names).

At the end of the run the body yields each selected check's verdict over the run's days (an
`AssetCheckResult`: Dagster expects one, and blocking checks stop downstream steps through it), and the
`coverage` of each whole dataset (not blocking). When the
run also materializes other assets (your own downstream asset, `klines_1h`, `klines_1m_combined`), each
dataset whose days all committed and passed also yields its `MaterializeResult`, so those steps run in
the same run and read the days just written; that records each day a second time, so only such runs do it.

No `from __future__ import annotations` here: Dagster reads the context annotation at run time.
"""

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from kline_assets.defs.fleet import Work, recording, run_fleet, work_for
from kline_assets.defs.names import (
    CHUNK_IO_MANAGER,
    EXCHANGE,
    STORE,
    group_name,
    klines_key,
    node_name,
    prefixed,
    resource_keys,
)
from kline_assets.defs.partitions import key_to_day
from kline_assets.defs.resources import ExchangeResource, StoreResource, run_resource
from kline_assets.defs.writer import Committed, reporter
from kline_assets.settings import KINDS, DatasetSpec, Kind, Settings
from kline_assets.store.checks import (
    CHECK_NAMES,
    CONTINUITY,
    COVERAGE,
    INTEGRITY,
    SANITY,
    Outcome,
    coverage,
    evaluate,
    with_previous,
)
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.manifest import ChunkEntry
from kline_assets.store.schema import schema_of
from kline_assets.timezones import ms_to_iso


def klines_description(spec: DatasetSpec) -> str:
    """The UI shows descriptions as Markdown: paths go in code spans, or `<data root>` is taken for a tag."""
    what = spec.kind_info.what if spec.kind_info.events else f"1-minute {spec.kind_info.what}"
    return (
        f"Closed {what} of {spec.pair} on Binance {spec.market} ({spec.exchange_id}), one "
        f"zstd Parquet chunk per local day under `<data root>/{spec.exchange_id}/{spec.symbol}/"
        f"{spec.kind_info.folder}/chunks`, listed with its sha256 in `manifest.json`. Columns: "
        f"{', '.join(schema_of(spec.kind_info).names)}. Today's partition is live."
    )


def check_descriptions(kind: Kind) -> dict[str, str]:
    """What each check of a dataset of `kind` asserts, for the UI."""
    return {**CHECK_DESCRIPTIONS, **(FUNDING_CHECK_DESCRIPTIONS if kind.events else {})}


FUNDING_CHECK_DESCRIPTIONS = {
    CONTINUITY: "one funding event per interval in force (8 h, or as the symbol's interval changes), across "
                "midnight too; a missing event is named (stored as the exchange sent the rest)",
    SANITY: "finite rates, positive mark prices (or none), every event inside the day's window and already due "
            "when fetched; an event more than a minute off its hour warns",
}
CHECK_DESCRIPTIONS = {
    CONTINUITY: "open_time steps by one minute; every missing minute is a gap the exchange confirmed "
                "(listed in the manifest), including across midnight",
    INTEGRITY: "the file's sha256, row count and schema equal the manifest's and the chunk schema",
    SANITY: "close_time = open_time + 59999, low <= open/close <= high, no negative volumes, every row "
            "closed when fetched and inside the day's window",
    COVERAGE: "the whole dataset, after every run and in the verify job: no day missing between its first and "
              "last stored day (named as ranges), no closed day incomplete, today's chunk following the clock "
              "(a stalled live day warns); shows how far the last complete day lags yesterday",
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
            outcomes[day] = with_previous(batch.checked[day][1], entry, prev, store.spec.kind_info)
        else:
            outcomes[day] = evaluate(store.chunk_bytes(entry), entry, prev, store.spec.kind_info)
    return outcomes


def passed(outcome: Outcome | None) -> bool:
    return bool(outcome and outcome.passed)


def batch_events(store: DatasetStore, key: dg.AssetKey, days: list[tuple[dt.date, ChunkEntry]],
                 outcomes: dict[dt.date, dict[str, Outcome | None]], checks: list[str], now_ms: int):
    """Dagster's record of committed days: the materialization of each day of `days`, then an evaluation of
    each check in `checks` that a day of `outcomes` fails, naming its day and problem. A day that passes has
    no evaluation of its own (each check's verdict over the run's days says it, `Verdicts`): three events
    per day cost Dagster's storage four times what one does (bench/events.py). Materializations first:
    with each day's evaluations right after its materialization, a Ctrl-C during the run left committed
    days unrecorded (found by `test_ctrl_c_leaves_exactly_the_committed_days_...`)."""
    for day, entry in days:
        yield dg.AssetMaterialization(asset_key=key, partition=day.isoformat(),
                                      metadata=day_metadata(entry, store.backend.uri(store.key(entry)), now_ms))
    for day in sorted(outcomes):
        for name in checks:
            outcome = outcomes[day][name]
            if passed(outcome):
                continue
            problem = outcome.problem if outcome else "no chunk in the manifest"
            md = {**(outcome.metadata if outcome else {}), "problem": problem}
            severity = dg.AssetCheckSeverity.WARN if outcome and outcome.severity == "WARN" else \
                dg.AssetCheckSeverity.ERROR
            yield dg.AssetCheckEvaluation(asset_key=key, check_name=name, passed=False, metadata=md,
                                          partition=day.isoformat(), blocking=True, severity=severity,
                                          description=f"{day}: {problem}")


def unrecorded(instance: dg.DagsterInstance, key: dg.AssetKey, batch: Committed) -> list[tuple[dt.date, ChunkEntry]]:
    """The days of `batch` Dagster lacks: every day this run wrote, and a day it found stored already only
    when Dagster's latest materialization of it names another sha256 (or none: a kill -9 between the
    commit and the record). A rerun of a long range then records only what it added."""
    kept = [day.isoformat() for day, _ in batch.days if day not in batch.written]
    recorded = latest_sha256(instance, key, kept) if kept else {}
    return [(day, entry) for day, entry in batch.days
            if day in batch.written or recorded.get(day.isoformat()) != entry.sha256]


def latest_sha256(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]) -> dict[str, str | None]:
    """The sha256 of the latest materialization of each partition that has one (newest records first)."""
    found: dict[str, str | None] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1000, cursor=cursor,
            ascending=False)
        for record in page.records:
            materialization = record.asset_materialization
            sha = materialization.metadata.get("sha256") if materialization else None
            found.setdefault(record.partition_key, getattr(sha, "value", None))
        if not page.has_more or len(found) == len(partitions):
            return found
        cursor = page.cursor


def klines_spec(spec: DatasetSpec, partitions_def: dg.PartitionsDefinition, prefix: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        klines_key(spec, prefix), group_name=group_name(spec, prefix), kinds={"parquet", "binance"},
        tags={"market": spec.market, "kind": spec.kind}, description=klines_description(spec),
        partitions_def=partitions_def,
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
    keys = resource_keys(prefix)
    own_nodes = {node_name(m, prefix) for m in {s.market for s in settings.pairs}}

    @dg.multi_asset(
        name=node_name(market, prefix),
        specs=[klines_spec(spec, partitions_def, prefix) for spec in specs],
        check_specs=[dg.AssetCheckSpec(name, asset=key, description=text, blocking=name != COVERAGE)
                     for key, spec in by_key.items() for name, text in check_descriptions(spec.kind_info).items()],
        can_subset=True,  # makes the outputs optional: days are recorded as events (module docstring)
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),  # one run per range: ~3 s per run adds up
        required_resource_keys=set(keys.values()),
    )
    def _klines(context: dg.AssetExecutionContext):
        selected = context.selected_asset_check_keys
        chosen = sorted(context.selected_asset_keys, key=lambda k: k.to_user_string())
        checks = {key: [n for n in CHECK_NAMES if dg.AssetCheckKey(key, n) in selected] for key in chosen}
        loaded = yield from load_days(context, settings, [by_key[key] for key in chosen],
                                      sorted(key_to_day(k) for k in context.partition_keys), checks, market)
        downstream = feeds_other_assets(context.run, own_nodes)
        for key, days, results, good in loaded.verdicts_of(checks, with_coverage=lambda k: dg.AssetCheckKey(k, COVERAGE)
                                                      in selected):
            if downstream and good:
                yield dg.MaterializeResult(asset_key=key, check_results=[dg.AssetCheckResult(**r) for r in results],
                                           metadata={"days": dg.MetadataValue.int(days), "note":
                                                     "the days of this run, each recorded with its chunk's "
                                                     "metadata when it committed"})
            else:
                yield from (dg.AssetCheckResult(**r) for r in results)

    return _klines


OWN_ASSETS = {kind.asset for kind in KINDS.values()}  # the last parts of the keys the market nodes hold


def feeds_other_assets(run: dg.DagsterRun, own_nodes: set[str]) -> bool:
    """Whether the run has steps besides the `klines_1m` nodes: one of them may read ours, and runs only if
    our output is yielded. Runs started from the UI, by `dg launch`, `dagster asset materialize`, sensors
    and automation record their asset selection; a run of a job, `dg.materialize` and `execute_in_process`
    record the steps they execute instead. A run that records neither (a whole job launched as such) is
    taken to feed others: its days are then recorded twice, but no downstream step is left out."""
    if run.asset_selection:
        return any(key.path[-1] not in OWN_ASSETS for key in run.asset_selection)
    if run.step_keys_to_execute is not None:
        return any(step not in own_nodes for step in run.step_keys_to_execute)
    return True


def coverage_fields(key: dg.AssetKey, store: DatasetStore, now_ms: int) -> dict:
    """The `coverage` check of the whole dataset (`store.checks.coverage`), as the fields of the
    `AssetCheckResult` a run ends with and of the `AssetCheckEvaluation` the verify job records."""
    outcome = coverage(store.manifest(), dt.datetime.now(store.zone.tzinfo).date(), now_ms)
    md = outcome.metadata
    span = f"{md['first_day']}..{md['last_day']}" if md.get("stored_days") else "no day stored"
    return dict(asset_key=key, check_name=COVERAGE, passed=outcome.passed, metadata=md,
                severity=dg.AssetCheckSeverity.WARN if outcome.severity == "WARN" else dg.AssetCheckSeverity.ERROR,
                description=f"{span}: {outcome.problem or 'whole'}")


class Stopwatch:
    """Wall time spent inside `with` blocks, added up."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> None:
        self.began = time.monotonic()

    def __exit__(self, *exc) -> None:
        self.seconds += time.monotonic() - self.began


@dataclass
class Failed:
    days: int
    first: dt.date
    error: bool  # any failing day of ERROR severity


class Verdicts:
    """Each check's outcome over a run's days, counted as they are recorded (memory: a few numbers per
    dataset and check, whatever the range): one evaluation per check and run says what each passing day's
    own evaluation would have said."""

    def __init__(self) -> None:
        self.committed: dict[dg.AssetKey, int] = {}
        self.recorded = 0  # days whose materialization this run wrote (the others Dagster had already)
        self.span: dict[dg.AssetKey, tuple[dt.date, dt.date]] = {}
        self.days: dict[tuple[dg.AssetKey, str], int] = {}
        self.failed: dict[tuple[dg.AssetKey, str], Failed] = {}

    def add(self, key: dg.AssetKey, days: list[tuple[dt.date, ChunkEntry]],
            outcomes: dict[dt.date, dict[str, Outcome | None]], checks: list[str]) -> None:
        self.committed[key] = self.committed.get(key, 0) + len(days)
        for day, _ in days:
            first, last = self.span.get(key, (day, day))
            self.span[key] = (min(first, day), max(last, day))
            for name in checks:
                self.days[key, name] = self.days.get((key, name), 0) + 1
                outcome = outcomes[day][name]
                if passed(outcome):
                    continue
                error = outcome is None or outcome.severity != "WARN"
                failed = self.failed.get((key, name))
                if failed is None:
                    self.failed[key, name] = Failed(1, day, error)
                else:
                    failed.days, failed.first, failed.error = failed.days + 1, min(failed.first, day), \
                        failed.error or error

    def fields(self, key: dg.AssetKey, name: str) -> dict:
        """The check's verdict over the run's days: the fields of an `AssetCheckResult` (the assets') or of
        an `AssetCheckEvaluation` (the backfill job's)."""
        days = self.days.get((key, name), 0)
        failed = self.failed.get((key, name))
        md = {"days": dg.MetadataValue.int(days), "failed_days": dg.MetadataValue.int(failed.days if failed else 0)}
        span = "no day committed"
        if key in self.span:
            first, last = self.span[key]
            span = f"{first}..{last}"
            md["first_day"], md["last_day"] = first.isoformat(), last.isoformat()
        if failed:
            md["first_failed_day"] = dg.MetadataValue.text(failed.first.isoformat())
        return dict(
            asset_key=key, check_name=name, passed=failed is None, metadata=md,
            severity=dg.AssetCheckSeverity.ERROR if failed and failed.error else dg.AssetCheckSeverity.WARN,
            description=f"{span}, this run's {days} day(s)"
                        + (f": {failed.days} failed, the first {failed.first}" if failed else ": all passed"))


@dataclass
class Loaded:
    """What `load_days` did: the datasets' work and the checks' verdicts over the run's days."""

    work: list[Work]
    verdicts: Verdicts
    prefix: str

    def verdicts_of(self, checks: dict[dg.AssetKey, list[str]], with_coverage: Callable[[dg.AssetKey], bool]):
        """Per dataset loaded: its key, its number of days, the fields of each check's verdict (and of its
        coverage when `with_coverage(key)`), and whether all its days committed and passed (downstream steps
        may read them)."""
        now_ms = int(time.time() * 1000)
        for item in self.work:
            key = klines_key(item.store.spec, self.prefix)
            results = [self.verdicts.fields(key, name) for name in checks[key]]
            good = self.verdicts.committed.get(key, 0) == len(item.days) and all(r["passed"] for r in results)
            if with_coverage(key):  # not blocking: said, never stops downstream steps
                results.append(coverage_fields(key, item.store, now_ms))
            yield key, len(item.days), results, good


def load_days(context: dg.OpExecutionContext | dg.AssetExecutionContext, settings: Settings,
              specs: list[DatasetSpec], days: list[dt.date], checks: dict[dg.AssetKey, list[str]], label: str):
    """Fetch, commit and record `days` of each dataset of `specs` (one market's, side by side: `defs.fleet`),
    yielding Dagster's record of each batch as it commits (`batch_events`); returns what it did (`Loaded`).
    The body of the `klines_1m` assets and of the command line's backfill job."""
    root: StoreResource = run_resource(context, settings, STORE)
    exchange: ExchangeResource = run_resource(context, settings, EXCHANGE)
    report = reporter(context)
    work = [w for spec in specs if (w := work_for(root.store(spec), days, report))]
    names = work[0].store.spec.name if len(work) == 1 else f"{label}: {len(work)} datasets"
    report(f"{names}: {len(days)} day(s) {days[0]}..{days[-1]}")
    verdicts, recording_took = Verdicts(), Stopwatch()

    def record(store: DatasetStore, batch: Committed):
        with recording_took:
            now_ms = int(time.time() * 1000)
            key, outcomes = klines_key(store.spec, settings.key_prefix), batch_outcomes(store, batch)
            verdicts.add(key, batch.days, outcomes, checks[key])
            lacking = unrecorded(context.instance, key, batch)
            verdicts.recorded += len(lacking)
            yield from batch_events(store, key, lacking, outcomes, checks[key], now_ms)

    yield from recording(run_fleet(exchange, work, report), record)
    committed = sum(verdicts.committed.values())
    report(f"{names}: checking and recording {committed} day(s) in Dagster took {recording_took.seconds:.1f}s "
           f"({verdicts.recorded} recorded, {committed - verdicts.recorded} there already), while the next "
           "days were being fetched")
    return Loaded(work, verdicts, settings.key_prefix)
