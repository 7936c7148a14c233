"""The code location's jobs: live updates (started by the live sensor), combined-file rebuilds, and
whole-dataset verification per dataset (the same as `kline-assets verify`).

No `from __future__ import annotations`: Dagster reads the context annotation at run time.
"""

import datetime as dt
import time
from collections.abc import Callable

import dagster as dg
from pydantic import Field

from kline_assets.binance.listing import listings
from kline_assets.binance.recheck import changed_days
from kline_assets.defs.assets import batch_events, batch_outcomes, coverage_fields, load_days, passed
from kline_assets.defs.fleet import Work, recording, run_fleet, work_for
from kline_assets.defs.live import live_days, record_period, recording_turn, wait_for_boundary
from kline_assets.defs.names import (
    BACKFILL_JOB,
    COMBINE_JOB,
    EXCHANGE,
    HOURLY_JOB,
    LIVE_JOB,
    LIVE_OP,
    RECHECK_JOB,
    REFRESH_JOB,
    STORE,
    combined_key,
    hourly_key,
    job_name,
    klines_key,
    node_name,
    prefixed,
    resource_keys,
)
from kline_assets.defs.resources import ExchangeResource, StoreResource, run_resource
from kline_assets.defs.writer import reporter
from kline_assets.settings import DatasetSpec, Settings
from kline_assets.store.checks import CHECK_NAMES, COVERAGE
from kline_assets.store.daycalendar import day_states, markdown
from kline_assets.store.reader import day_runs
from kline_assets.store.verify import Problem, Report, quarantine, remember, verify


class LiveConfig(dg.Config):
    """What one live run brings current; the live sensor fills it in, the launchpad may leave it empty."""

    datasets: list[str] = Field(default=[], description="Dataset names (e.g. binanceusdm/BTCUSDT); empty: "
                                "every configured dataset that trades")
    first_day: str = Field(default="", description="First local day (YYYY-MM-DD); empty: each dataset's "
                           "last incomplete day")
    last_day: str = Field(default="", description="Last local day; empty: today")
    not_before_ms: int = Field(default=0, description="Start fetching just after this minute boundary (ms since "
                               "the epoch): the sensor requests each run ~15 s ahead; 0: at once")


def live_work(root: StoreResource, specs: list[DatasetSpec], config: LiveConfig, now_ms: int,
              report: Callable[[str], None]) -> tuple[list[Work], dict[str, dt.date], dict[str, bool]]:
    """The days each dataset of a live run brings up to date (from its last stored day to today, or the
    run's `first_day`..`last_day`), and per dataset its last day and whether that day was stored already
    (a new day is always recorded in Dagster at once)."""
    work, live_day, existed = [], {}, {}
    for spec in specs:
        store = root.store(spec)
        manifest = store.read_manifest()
        first, today = live_days(manifest, store.zone, now_ms, store.start)
        first = dt.date.fromisoformat(config.first_day) if config.first_day else first
        today = dt.date.fromisoformat(config.last_day) if config.last_day else today
        days = [first + dt.timedelta(n) for n in range((today - first).days + 1)]
        if item := work_for(store, days, report):
            work.append(item)
            live_day[spec.name] = item.days[-1]
            existed[spec.name] = manifest is not None and manifest.entry_for(live_day[spec.name]) is not None
    return work, live_day, existed


def build_live_job(settings: Settings) -> dg.JobDefinition:
    """One op for all datasets of a live minute (each market's datasets side by side, `defs.fleet`),
    in-process: a step process would add its start-up (seconds) to every minute's run.

    An op job rather than an asset job: Dagster writes a planned-materialization event per selected
    asset and a planned-evaluation event per selected check when it creates an asset run, before any
    work (measured on Postgres: 15 s for 200 datasets, so a minute for 900). The op records the days it
    commits as the assets' materializations and check evaluations, as the assets do, and in turns when
    there are many datasets (`defs.live`)."""
    by_name = {spec.name: spec for spec in settings.live_pairs}
    prefix = settings.key_prefix
    keys = resource_keys(prefix)

    @dg.op(name=prefixed(prefix, LIVE_OP), out={}, required_resource_keys={keys[STORE], keys[EXCHANGE]},
           description="Brings today's klines_1m partition of each dataset up to the last closed minute "
                       "(completing or catching up earlier days), and records the days in Dagster.")
    def _live(context: dg.OpExecutionContext, config: LiveConfig):
        root: StoreResource = run_resource(context, settings, STORE)
        exchange: ExchangeResource = run_resource(context, settings, EXCHANGE)
        report = reporter(context)
        # a symbol may stop trading between the sensor's request and this run: the others go on
        unknown = [name for name in config.datasets if name not in by_name]
        if unknown and len(unknown) == len(config.datasets):
            raise dg.Failure(f"not a live dataset of this code location: {', '.join(unknown[:10])}")
        if unknown:
            report(f"live: left out, not a live dataset here (any more): {', '.join(unknown[:10])}")

        wait_for_boundary(config.not_before_ms)
        now_ms = int(time.time() * 1000)
        specs = [by_name[n] for n in config.datasets if n in by_name] or list(by_name.values())
        work, live_day, existed = live_work(root, specs, config, now_ms, report)
        if not work:
            report("live: nothing to do")
            return
        period, minute = record_period(len(work)), now_ms // 60_000
        report(f"live: {len(work)} dataset(s)" + (f", each recorded in Dagster every {period} minutes unless "
                                                  "its day is new, complete or fails a check" if period > 1 else ""))
        recorded, failed = [], []

        def record(store, batch):
            name, outcomes, due = store.spec.name, batch_outcomes(store, batch), []
            for day, entry in batch.days:
                problems = [check for check, outcome in outcomes[day].items() if not passed(outcome)]
                if (day < live_day[name] or entry.complete or not existed[name] or problems
                        or recording_turn(name, minute, period)):
                    due.append((day, entry))
                failed.extend(f"{name} {day} {check}" for check in problems
                              if outcomes[day][check] is None or outcomes[day][check].severity != "WARN")
            recorded.extend(due)
            yield from batch_events(store, klines_key(store.spec, prefix), due, outcomes, list(CHECK_NAMES), now_ms)

        yield from recording(run_fleet(exchange, work, report), record)
        report(f"live: {len(recorded)} day(s) recorded in Dagster")
        if failed:
            raise dg.Failure(f"{len(failed)} check(s) failed: {', '.join(failed[:10])}"
                             + (" ..." if len(failed) > 10 else ""))

    @dg.job(name=prefixed(prefix, LIVE_JOB), executor_def=dg.in_process_executor,
            description="Live updates of klines_1m, started by the live sensor (and `kline-assets live`).")
    def _job() -> None:
        _live()

    return _job


class BackfillConfig(dg.Config):
    """The days and datasets of a command-line backfill (`kline-assets backfill`, `verify --repair`)."""

    first_day: str = Field(description="First local day (YYYY-MM-DD)")
    last_day: str = Field(description="Last local day (YYYY-MM-DD)")
    datasets: list[str] = Field(default=[], description="Dataset names (e.g. binanceusdm/BTCUSDT); empty: every "
                                "configured dataset of the op's market")


def build_backfill_job(settings: Settings, executor_def: dg.ExecutorDefinition = dg.in_process_executor):
    """The command line's backfills: an op per market loading the days of its datasets side by side
    (`assets.load_days`, the body of the `klines_1m` assets), recorded as the assets record them: each
    committed day's materialization, an evaluation per failing day, each check's verdict over the run's days
    and the coverage of each dataset. With the multiprocess executor each market's op has a process of its
    own (the markets have separate budgets, and one interpreter cannot keep both busy).

    An op job rather than an asset job: before the first step of an asset run over a range, Dagster writes
    a "planned" event per partition and asset (~6 ms a day on SQLite, ~20 on Postgres: 9-29 s before the
    first request of a four-year backfill). The UI and `dagster asset materialize` keep the asset runs."""
    prefix = settings.key_prefix
    keys = resource_keys(prefix)

    def market_op(market: str):
        specs = {spec.name: spec for spec in settings.pairs if spec.market == market}

        # the step's name is the assets' node name, so a run's steps read alike however it was started
        @dg.op(name=node_name(market, prefix), out={}, required_resource_keys={keys[STORE], keys[EXCHANGE]},
               description=f"Loads the days of the {market} datasets named in its config, side by side.")
        def _backfill(context: dg.OpExecutionContext, config: BackfillConfig):
            chosen = [specs[name] for name in config.datasets if name in specs] if config.datasets else \
                list(specs.values())
            if not chosen:
                return
            first, last = dt.date.fromisoformat(config.first_day), dt.date.fromisoformat(config.last_day)
            days = [first + dt.timedelta(n) for n in range((last - first).days + 1)]
            checks = {klines_key(spec, prefix): list(CHECK_NAMES) for spec in chosen}
            loaded = yield from load_days(context, settings, chosen, days, checks, market)
            failed = []
            for key, _, results, _ in loaded.verdicts_of(checks, with_coverage=lambda _key: True):
                for fields in results:
                    yield dg.AssetCheckEvaluation(**fields)
                    if not fields["passed"] and fields["check_name"] != COVERAGE and \
                            fields["severity"] == dg.AssetCheckSeverity.ERROR:
                        failed.append(f"{key.to_user_string()}: {fields['check_name']}: {fields['description']}")
            if failed:  # as a blocking check of the assets fails their step
                raise dg.Failure(f"{len(failed)} blocking asset check(s) failed with ERROR severity: "
                                 + "; ".join(failed[:10]))

        return _backfill

    ops = [market_op(m) for m in sorted({s.market for s in settings.pairs}, key=lambda m: m != "futures")]

    @dg.job(name=prefixed(prefix, BACKFILL_JOB), executor_def=executor_def,
            description="Command-line backfills of klines_1m: an op per market.")
    def _job() -> None:
        for op in ops:
            op()

    return _job


def backfill_run_config(settings: Settings, specs: list[DatasetSpec], first_day: str, last_day: str) -> dict:
    """The backfill job's config: each market's op gets its datasets of `specs` and the days."""
    return {"ops": {node_name(market, settings.key_prefix): {"config": {
        "first_day": first_day, "last_day": last_day, "datasets": [s.name for s in specs if s.market == market]}}
        for market in {s.market for s in specs}}}


def build_combine_job(settings: Settings):
    return dg.define_asset_job(prefixed(settings.key_prefix, COMBINE_JOB),
                               selection=[combined_key(s, settings.key_prefix) for s in settings.pairs],
                               executor_def=dg.in_process_executor,  # one process for any number of datasets
                               description="Rebuild combined files (after backfills, when enabled).")


def build_hourly_job(settings: Settings):
    return dg.define_asset_job(prefixed(settings.key_prefix, HOURLY_JOB),
                               selection=[hourly_key(spec, settings.key_prefix) for spec in settings.hourly_pairs],
                               executor_def=dg.in_process_executor,  # one process for any number of datasets
                               description="klines_1h of the days a klines_1m run loaded (KLINE_HOURLY=1).")


def build_refresh_job(settings: Settings) -> dg.JobDefinition:
    """With `KLINE_PAIRS` selectors: asks Binance which symbols trade now and stores the listing under the
    data root, where loading the code location reads it (loading never asks the exchange)."""
    prefix = settings.key_prefix
    selectors = ", ".join(str(s) for s in settings.selectors)
    keys = resource_keys(prefix)

    @dg.op(name=prefixed(prefix, f"{REFRESH_JOB}_op"), required_resource_keys={keys[STORE], keys[EXCHANGE]},
           description=f"Asks exchangeInfo which symbols {selectors} selects and stores the listing.")
    def _refresh(context: dg.OpExecutionContext) -> None:
        root: StoreResource = run_resource(context, settings, STORE)
        exchange: ExchangeResource = run_resource(context, settings, EXCHANGE)
        markets = {s.market for s in settings.selectors}
        found = listings(root.backend(), {m: exchange.client(m) for m in markets}, markets, max_age_s=0)
        if any(found[m] is None for m in markets):
            raise dg.Failure(f"exchangeInfo of {', '.join(m for m in markets if found[m] is None)} unavailable; "
                             "nothing stored (see the log)")
        chosen = {spec for s in settings.selectors for spec in found[s.market].select(s.quote)}
        new = sorted(spec.name for spec in chosen - set(settings.pairs))
        gone = sorted(spec.name for spec in settings.pairs if spec.market in markets and spec not in settings.retired
                      and not found[spec.market].trading(spec.symbol))
        context.log.info(f"{selectors}: {len(chosen)} trading symbol(s); new: {', '.join(new[:20]) or 'none'}; "
                         f"stopped trading: {', '.join(gone[:20]) or 'none'}"
                         + ("; reload the code location to see it" if new or gone else ""))

    @dg.job(name=prefixed(prefix, REFRESH_JOB),
            description=f"Refreshes which datasets {selectors} means (the listing under the data root); reload "
                        "the code location afterwards. Loading never asks the exchange itself.")
    def _job() -> None:
        _refresh()

    return _job


def build_recheck_job(settings: Settings) -> dg.JobDefinition:
    """Binance replaces archive files after corrections: the stored archive days' CHECKSUMs are read again
    (`binance.recheck`), and a day whose published file changed is taken out of its manifest and loaded
    again (`load_days`: from the new file, recorded in Dagster as any backfill is). Each dataset's manifest
    keeps what the last recheck found (`status` shows it)."""
    prefix = settings.key_prefix
    keys = resource_keys(prefix)

    @dg.op(name=prefixed(prefix, f"{RECHECK_JOB}_op"), out={}, required_resource_keys={keys[STORE], keys[EXCHANGE]},
           description="Reads the CHECKSUM of every stored archive day's file again and loads anew the days whose "
                       "published file changed.")
    def _recheck(context: dg.OpExecutionContext):
        root: StoreResource = run_resource(context, settings, STORE)
        exchange: ExchangeResource = run_resource(context, settings, EXCHANGE)
        report = reporter(context)
        changed = []
        for market in sorted({spec.market for spec in settings.pairs}):
            archive = exchange.archive(market)
            if archive is None:
                report("recheck: the source is REST only; nothing is read from the archive")
                return
            for spec in (s for s in settings.pairs if s.market == market):
                store = root.store(spec)
                if store.read_manifest() is None:
                    continue
                found = changed_days(store, archive)
                repaired = 0
                if found.changed:
                    report(f"{spec.name}: Binance replaced the archive file of {len(found.changed)} day(s) "
                           f"({day_runs(found.changed)}): loading them again")
                    quarantine(store, Report(problems=[Problem("archive_replaced", day.isoformat(), "")
                                                       for day in found.changed]))
                    checks = {klines_key(spec, prefix): list(CHECK_NAMES)}
                    loaded = yield from load_days(context, settings, [spec], found.changed, checks, market)
                    repaired = loaded.verdicts.committed.get(klines_key(spec, prefix), 0)
                    changed.append(f"{spec.name}: {day_runs(found.changed)}")
                remember(store, "last_recheck", found.summary(repaired))
                report(f"{spec.name}: {found.checked} archive day(s) rechecked, {len(found.changed)} replaced by "
                       f"Binance and {repaired} loaded again" + (f", {len(found.unread)} whose CHECKSUM could not "
                                                                   "be read (kept)" if found.unread else ""))
        report(f"recheck: {len(changed)} dataset(s) had replaced files" + (f": {'; '.join(changed[:10])}"
                                                                            if changed else ""))

    @dg.job(name=prefixed(prefix, RECHECK_JOB), executor_def=dg.in_process_executor,
            description="Re-reads the CHECKSUM of every stored archive day and loads again the days whose file "
                        "Binance replaced (weekly, by its schedule).")
    def _job() -> None:
        _recheck()

    return _job


def build_verify_job(spec: DatasetSpec, settings: Settings) -> dg.JobDefinition:
    prefix = settings.key_prefix

    @dg.op(name=job_name("verify_op", spec, prefix), required_resource_keys={prefixed(prefix, STORE)},
           description=f"Checks every stored day of {spec.name} against its manifest, continuity and sanity.")
    def _verify(context: dg.OpExecutionContext) -> None:
        root: StoreResource = run_resource(context, settings, STORE)
        store = root.store(spec)
        today = dt.datetime.now(store.zone.tzinfo).date()
        report = verify(store, None, None, today)
        context.log.info(report.render(spec.name))
        md = {"days_checked": report.days_checked, "problems": len(report.problems),
              "by_kind": dg.MetadataValue.json(report.summary()["problems"]),
              "coverage": dg.MetadataValue.md(markdown(day_states(store.manifest(), today)))}
        context.log_event(dg.AssetObservation(asset_key=klines_key(spec, prefix), metadata=md))
        context.log_event(dg.AssetCheckEvaluation(**coverage_fields(klines_key(spec, prefix), store,
                                                                    int(time.time() * 1000))))
        if not report.ok:  # one readable line; the whole report is in the log line above and the metadata
            raise dg.Failure(description=report.render(spec.name).splitlines()[0] + " (kline-assets verify "
                             "--repair mends it)", metadata={**md, "report": dg.MetadataValue.md(
                                 "```\n" + report.render(spec.name) + "\n```")})

    @dg.job(name=job_name("verify", spec, prefix), description=f"Verify the whole {spec.name} archive (read-only).")
    def _job() -> None:
        _verify()

    return _job
