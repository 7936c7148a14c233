"""The verbs of the command line; each returns its exit code."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg

from kline_assets.binance import shared
from kline_assets.binance.crosscheck import archived_days, cross_check, sample
from kline_assets.binance.listing import Listing, fetch_listing
from kline_assets.binance.paging import DEFAULT_PAGE
from kline_assets.binance.symbols import fallback_message, resolve_pair
from kline_assets.cli.live import StopFlag, run_loop
from kline_assets.defs.datasets import resolve_datasets
from kline_assets.defs.instance import dagster_instance
from kline_assets.defs.live import live_groups
from kline_assets.defs.names import COMBINE_JOB, combined_key
from kline_assets.defs.runs import (
    RunOutcome,
    asset_run,
    live_job_def,
    materialize_per_market,
    materialize_range,
    run_live,
)
from kline_assets.errors import BadInput, ExchangeFinal, ExchangeTransient
from kline_assets.logs import end_progress, setup_logging
from kline_assets.settings import MARKETS, DatasetSpec, Settings, get_market
from kline_assets.store.backend import Backend, open_root
from kline_assets.store.checks import holds_latest
from kline_assets.store.combine import plan
from kline_assets.store.dataset import DatasetStore, before_start, manifest_at
from kline_assets.store.daycalendar import counts, day_states, write_png
from kline_assets.store.paths import DatasetPaths
from kline_assets.store.status import all_status, dataset_status, render
from kline_assets.store.verify import quarantine, remember_repair, verify
from kline_assets.timezones import ceil_to_local_day, floor_to_local_day, ms_to_iso, parse_instant, parse_zone


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def now_utc() -> dt.datetime:
    return dt.datetime.fromtimestamp(time.time(), tz=dt.timezone.utc)


def open_store(settings: Settings, spec: DatasetSpec) -> DatasetStore:
    """The dataset as the runs' store resource opens it (`StoreResource.store`), without building one."""
    return DatasetStore.open(settings.data_root, spec, settings.align_tz, settings.start)


def plan_window(args: argparse.Namespace, settings: Settings,
                existing_start: dt.date | None) -> tuple[dt.date, dt.date]:
    """[first day, end day) in local days; `--end` is exclusive and rounded up to a local midnight."""
    zone = settings.align_tz
    now = now_utc()
    start = floor_to_local_day(parse_instant(args.start, zone), zone) if args.start else (
        existing_start or settings.start)
    end_instant = parse_instant(args.end, zone) if args.end else now
    if args.start and args.end and end_instant <= parse_instant(args.start, zone):
        raise BadInput(f"impossible window: --end {args.end} is not after --start {args.start}")
    end = ceil_to_local_day(min(end_instant, now), zone)
    if end <= start:
        raise BadInput(f"impossible window: nothing between {start} and {end} (local days in {zone.name})")
    if existing_start and start < existing_start:
        raise BadInput(f"--start {start} is before the dataset's first day {existing_start}; "
                       "use another --data-root for an earlier start")
    return start, end


def checked_dataset(args: argparse.Namespace, settings: Settings,
                    spec: DatasetSpec) -> tuple[Settings, DatasetSpec, DatasetStore]:
    """Validate everything local first (nothing written), then ask the exchange about the pair."""
    store = open_store(settings, spec)
    existing = store.read_manifest()
    resolved = resolve_pair(store.backend, spec, shared.client_of(settings, spec.market),
                            strict=getattr(args, "strict", False), warn=lambda m: print(m, file=sys.stderr))
    if resolved != spec:
        store = open_store(settings, resolved)
        existing = store.read_manifest()
    settings = replace(settings, pairs=(resolved,), start=existing.start_date if existing else settings.start)
    return settings, resolved, store


def configured(args: argparse.Namespace, settings: Settings) -> Settings:
    """`--all`: the datasets KLINE_PAIRS defines, selectors resolved, narrowed by an explicit `--market` and
    `--kind`."""
    market = get_market(args.market).name if args.market is not None else None
    kind = args.kind.strip().lower() if args.kind is not None else None
    setup_logging(settings.log_dir)  # resolving the selectors may have things to say
    selectors = [s for s in settings.selectors if market is None or s.market == market]
    explicit = [s for s in settings.pairs if market is None or s.market == market]
    settings = resolve_datasets(settings)
    for spec in (s for s in explicit if s not in settings.pairs):  # the exchange does not list it
        if getattr(args, "strict", False):
            raise BadInput(f"KLINE_PAIRS: the {spec.market} market does not list {spec.pair} (--strict)")
        print(f"kline-assets: KLINE_PAIRS: {fallback_message(spec)}", file=sys.stderr)
    pairs = tuple(s for s in settings.pairs if (market is None or s.market == market) and kind in (None, s.kind))
    if not pairs and selectors:
        unlisted(settings, selectors)
    if not pairs:
        raise BadInput("--all: KLINE_PAIRS defines no dataset" + (f" of the {market} market" if market else "")
                       + f" (it is {os.environ.get('KLINE_PAIRS') or 'unset'})")
    return replace(settings, pairs=pairs)


def unlisted(settings: Settings, selectors: list) -> None:
    """Selectors that select nothing because no listing could be had: say why (exit 1, logged)."""
    for selector in selectors:
        if Listing.load(open_root(settings.data_root), selector.market) is not None:
            continue
        client = shared.client_of(settings, selector.market, max_attempts=2)
        try:
            listing = fetch_listing(client)
        except (ExchangeFinal, ExchangeTransient) as exc:
            raise ExchangeTransient(f"--all: KLINE_PAIRS {selector} selects nothing: the {selector.market} "
                                    f"listing (exchangeInfo) could not be fetched ({exc})") from None
        if not listing.symbols:
            raise ExchangeTransient(f"--all: KLINE_PAIRS {selector} selects nothing: the {selector.market} "
                                    "exchangeInfo lists no symbol")


def describe(specs: tuple[DatasetSpec, ...] | list[DatasetSpec]) -> str:
    per = {m: sum(1 for s in specs if s.market == m) for m in ("futures", "spot", "coinm")}
    return f"{len(specs)} dataset(s) ({', '.join(f'{n} {m}' for m, n in per.items() if n or m != 'coinm')})"


def cmd_backfill(args: argparse.Namespace, settings: Settings, spec: DatasetSpec) -> int:
    if args.chunk_size.strip() != "1440":
        raise BadInput(f"--chunk-size {args.chunk_size}: chunks are local days, so only 1440 (minutes) is accepted")
    if args.all:
        return backfill_all(args, settings)
    manifest = open_store(settings, spec).read_manifest()
    first, end = plan_window(args, settings, manifest.start_date if manifest else None)  # input checks first
    settings, resolved, store = checked_dataset(args, settings, spec)
    existing = store.read_manifest()
    if resolved != spec:  # the fallback dataset may already exist with its own first day
        first, end = plan_window(args, settings, existing.start_date if existing else None)
    spec = resolved
    if existing is None and first < settings.start:
        settings = replace(settings, start=first)
    outcome, elapsed = backfill_runs(settings, [spec], first, end,
                                        f"{spec.name} ({spec.market} {spec.pair})", f"in {store.where}")
    if not outcome.success:
        return 130 if outcome.interrupted else 1
    stored = store.read_manifest()
    if stored is not None and stored.start_date > first:  # another first backfill fixed a later start meanwhile
        print(f"kline-assets: backfill: {before_start(spec.name, first, stored.start_date)}", file=sys.stderr)
        return 1
    status = dataset_status(store.backend, store.paths.dir) if store.read_manifest() else None
    rows = status["rows"] if status else 0
    if settings.combine_after_backfill:
        run_combine(settings, spec)
    print(f"done in {elapsed:.1f}s: {(end - first).days} day(s), dataset now {status['chunks'] if status else 0} "
          f"chunks / {rows:,} rows (run {outcome.run_id})")
    return 0


def backfill_runs(settings: Settings, specs: list[DatasetSpec], first: dt.date, end: dt.date, what: str,
                  where: str) -> tuple[RunOutcome, float]:
    """The window [first, end) of `specs` through Dagster (one run, a step per market side by side), said
    before on stderr, a failure said after; returns the run's outcome and the seconds it took."""
    setup_logging(settings.log_dir)
    last = end - dt.timedelta(days=1)
    print(f"backfill {what}: {first} .. {last}, {(end - first).days} day(s) in {settings.align_tz.name}, "
          f"data {where}", file=sys.stderr)
    began = time.monotonic()
    outcome = materialize_per_market(settings, specs, first.isoformat(), last.isoformat(), dagster_instance())
    elapsed = time.monotonic() - began
    end_progress()
    if not outcome.success:
        print(f"kline-assets: backfill failed after {elapsed:.1f}s: {outcome.error} ({outcome.next_step}; "
              f"run {outcome.run_id}, details in loader.log)", file=sys.stderr)
    return outcome, elapsed


def backfill_all(args: argparse.Namespace, settings: Settings) -> int:
    """Every configured dataset over one window, in one run: they share each market's weight budget, and
    a dataset that fails does not stop the others (the summary names each failed one)."""
    first, end = plan_window(args, settings, None)  # input checks before anything else
    settings = configured(args, settings)
    if first < settings.start:  # the partitions must reach the window; stored datasets keep their own start
        settings = replace(settings, start=first)
    outcome, elapsed = backfill_runs(settings, list(settings.pairs), first, end, describe(settings.pairs),
                                     f"under {settings.data_root}")
    if not outcome.success:
        return 130 if outcome.interrupted else 1
    rows = sum(e.rows for s in settings.pairs if (m := open_store(settings, s).read_manifest())
               for e in m.chunks.values())
    print(f"done in {elapsed:.1f}s: {describe(settings.pairs)}, {(end - first).days} day(s) each, {rows:,} rows "
          f"stored in all (run {outcome.run_id})")
    return 0


def plot_coverage(backend: Backend, statuses: list[dict], target: Path) -> None:
    """One dataset: exactly `target`; several: `<stem>_<exchange_id>_<PAIR>.png` beside it, each named."""
    if target.suffix.lower() != ".png":
        raise BadInput(f"--plot {target}: the coverage picture is a .png file")
    today = now_utc().date()
    for status in statuses:
        spec = DatasetSpec(status["market"], status["pair"], status["kind"])
        manifest = manifest_at(backend, DatasetPaths(spec).manifest)
        kind = "" if spec.kind == "klines" else f"_{spec.kind}"
        path = target if len(statuses) == 1 else target.with_name(
            f"{target.stem}_{manifest.exchange_id}_{manifest.symbol}{kind}{target.suffix}")
        states = day_states(manifest, today)
        write_png(states, path, spec.name)
        legend = ", ".join(f"{n} {k}" for k, n in counts(states).items())
        print(f"coverage of {spec.name} -> {path} ({legend}; green complete, "
              "amber exchange gaps, blue incomplete, grey missing)", file=sys.stderr)


def cmd_status(args: argparse.Namespace, settings: Settings, spec: DatasetSpec) -> int:
    """Every dataset under the data root, or those of an explicit --market and/or --pair."""
    backend = open_root(settings.data_root)
    statuses = [s for s in all_status(backend) if (args.market is None or s["market"] == spec.market)
                and (args.pair is None or s["pair"] == spec.pair)]
    listings = {m: Listing.load(backend, m) for m in MARKETS}  # as last learnt: status asks the exchange nothing
    for s in statuses:
        listing = listings[s["market"]]
        s["trading"] = None if listing is None else listing.trading(DatasetSpec(s["market"], s["pair"]).symbol)
    if args.plot:
        plot_coverage(backend, statuses, Path(args.plot))
    if args.json:
        print_json({"data_root": settings.data_root, "datasets": statuses})
    else:
        print(render(statuses, settings.data_root))
    return 0


def local_window(args: argparse.Namespace, settings: Settings) -> tuple[dt.date | None, dt.date | None]:
    """Optional [first, last] local days from --start/--end (end exclusive)."""
    zone = settings.align_tz
    first = floor_to_local_day(parse_instant(args.start, zone), zone) if args.start else None
    last = ceil_to_local_day(parse_instant(args.end, zone), zone) - dt.timedelta(days=1) if args.end else None
    if first and last and last < first:
        raise BadInput(f"impossible window: --end {args.end} is not after --start {args.start}")
    return first, last


def cmd_verify(args: argparse.Namespace, settings: Settings, spec: DatasetSpec) -> int:
    if args.cross_check < 0:
        raise BadInput(f"--cross-check {args.cross_check}: give a number of days, 1 or more")
    first, last = local_window(args, settings)
    if not args.all:
        store = open_store(settings, spec)
        if store.read_manifest() is None:
            print(f"kline-assets: no dataset at {store.where} (nothing to verify)", file=sys.stderr)
            return 1
        setup_logging(settings.log_dir)
        return verify_one(args, settings, spec, first, last)
    settings = configured(args, settings)
    setup_logging(settings.log_dir)
    stored = [s for s in settings.pairs if open_store(settings, s).read_manifest() is not None]
    if len(stored) < len(settings.pairs):
        print(f"{len(settings.pairs) - len(stored)} configured dataset(s) have no data yet (not verified)",
              file=sys.stderr)
    failed = [s.name for s in stored if verify_one(args, replace(settings, pairs=(s,)), s, first, last) != 0]
    print(f"verified {len(stored)} dataset(s): " + (f"{len(failed)} with problems: {', '.join(failed)}" if failed
                                                     else "all ok"))
    return 1 if failed else 0


def verify_one(args: argparse.Namespace, settings: Settings, spec: DatasetSpec, first: dt.date | None,
               last: dt.date | None) -> int:
    store = open_store(settings, spec)
    today = now_utc().astimezone(settings.align_tz.tzinfo).date()
    if args.repair:  # a plain verify only reads
        writable(store)
    report = verify(store, first, last, today)
    if args.cross_check:
        report.problems += check_against_rest(settings, store, first, last, args.cross_check)
    print(report.render(spec.name))
    if report.ok or not args.repair:
        if not report.ok and report.bad_days():
            window = "".join(f" --{name} {getattr(args, name)}" for name in ("start", "end") if getattr(args, name))
            print(f"  to fetch the bad days again: kline-assets {spec.flags} verify "
                  f"--repair{window}")
        return 0 if report.ok else 1
    if any(p.kind == "differs_from_rest" for p in report.problems):
        settings = replace(settings, source="rest")  # the archive would serve the same rows again
    settings, spec, store = checked_dataset(args, settings, spec)
    days = [d for d in report.bad_days() if store.start <= d <= today]
    quarantine(store, report)
    if days:
        span = (days[-1] - days[0]).days + 1
        kept = f"; the {span - len(days)} intact day(s) among them are kept, not fetched" if span > len(days) else ""
        print(f"repairing {len(days)} day(s) between {days[0]} and {days[-1]} in one Dagster run over those "
              f"{span} day(s){kept}", file=sys.stderr)
        outcome = materialize_range(settings, [spec], days[0].isoformat(), days[-1].isoformat(), dagster_instance())
        if not outcome.success:
            print(f"kline-assets: repair run failed: {outcome.error} (run {outcome.run_id})", file=sys.stderr)
    report = verify(store, first, last, today)
    remember_repair(store, report)
    print("after repair: " + report.render(spec.name))
    return 0 if report.ok else 1


def writable(store: DatasetStore) -> None:
    """A repair must be able to write: said in one line before anything is changed."""
    try:
        store.backend.check_writable(store.paths.dir)
    except BadInput as exc:
        raise BadInput(f"verify --repair: {exc}; a plain verify only reads") from None


def check_against_rest(settings: Settings, store: DatasetStore, first: dt.date | None, last: dt.date | None,
                       n: int) -> list:
    days = sample(archived_days(store, first, last), n)
    print(f"cross-checking {len(days)} archive day(s) against REST" + (f": {days[0]} .. {days[-1]}" if days else ""),
          file=sys.stderr)
    market = store.spec.market
    return cross_check(store, shared.client_of(settings, market), days, DEFAULT_PAGE[market])


def run_combine(settings: Settings, spec: DatasetSpec, from_index: int | None = None, to_index: int | None = None,
                tz: str | None = None) -> int:
    config = {"from_index": from_index, "to_index": to_index, "tz": tz}
    key = combined_key(spec)
    instance = dagster_instance()
    outcome = asset_run(settings, COMBINE_JOB, dg.AssetSelection.assets(key), instance, {},
                        run_config={"ops": {key.to_python_identifier(): {"config": config}}})
    if not outcome.success:
        print(f"kline-assets: combine failed: {outcome.error} (run {outcome.run_id}; details in loader.log)",
              file=sys.stderr)
        return 1
    store = open_store(settings, spec)
    _, path = plan(store, store.manifest(), from_index, to_index, parse_zone(tz).file_suffix() if tz else None)
    event = instance.get_latest_materialization_event(key)
    rebuilt = event is None or event.asset_materialization is None or \
        getattr(event.asset_materialization.metadata.get("rebuilt"), "value", True)
    if rebuilt:
        print(f"combined {spec.name} into {path} (run {outcome.run_id})")
    else:
        print(f"{path} already holds exactly the chosen chunks of {spec.name}: not rewritten (run {outcome.run_id})")
    return 0


def cmd_combine(args: argparse.Namespace, settings: Settings, spec: DatasetSpec) -> int:
    for name in ("from_index", "to_index"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise BadInput(f"--{name.replace('_', '-')} {value}: chunk indexes start at 1")
    if args.from_index is not None and args.to_index is not None and args.from_index > args.to_index:
        raise BadInput(f"--from-index {args.from_index} is after --to-index {args.to_index}")
    if args.tz:
        parse_zone(args.tz)
    store = open_store(settings, spec)
    existing = store.read_manifest()
    if existing is None:
        print(f"kline-assets: no dataset at {store.where} (nothing to combine)", file=sys.stderr)
        return 1
    plan(store, existing, args.from_index, args.to_index, None)  # an empty range is bad input: nothing runs
    if args.tz and parse_zone(args.tz).name != existing.align_tz:
        print(f"note: {spec.name} is aligned to {existing.align_tz}; --tz {args.tz} only names the file",
              file=sys.stderr)
    setup_logging(settings.log_dir)
    return run_combine(replace(settings, start=existing.start_date), spec, args.from_index, args.to_index, args.tz)


def cmd_live(args: argparse.Namespace, settings: Settings, spec: DatasetSpec) -> int:
    """Shortly after each minute boundary, one run per group of datasets needing the same days (usually
    one run for all): the same shape as the live sensor, without the daemon."""
    if args.cycles < 0:
        raise BadInput(f"--cycles {args.cycles}: use 0 (until stopped) or a positive number")
    if args.all:
        settings = configured(args, settings)
        for gone in sorted(settings.retired, key=lambda s: s.name):
            print(f"{gone.name} no longer trades: its data stays, live leaves it alone", file=sys.stderr)
    else:
        settings, spec, _ = checked_dataset(args, settings, spec)
    specs = list(settings.live_pairs)
    if not specs:
        raise BadInput("live --all: none of the configured datasets trades")
    setup_logging(settings.log_dir)
    instance, job = dagster_instance(), live_job_def(settings)
    stores = [open_store(settings, s) for s in specs]
    client = shared.client_of(settings, specs[0].market)
    stop = StopFlag()
    stop.install()
    name = specs[0].name if len(specs) == 1 else describe(specs)
    print(f"live {name}: updating every minute with closed klines; Ctrl-C stops", file=sys.stderr)

    def cycle() -> bool:
        now_ms = client.sync_time()
        began = time.monotonic()
        outcomes = []
        for (first, today), members in live_groups(stores, settings.align_tz, now_ms).items():
            outcomes.append(run_live(job, settings, [s.spec for s in members], first, today, instance))
            if outcomes[-1].interrupted:
                stop.event.set()
                break
        for outcome in outcomes:
            if not outcome.success:
                print(f"{ms_to_iso(now_ms)} cycle failed: {outcome.error}", file=sys.stderr)
        report_live(stores, settings, now_ms, client.server_time_ms(), time.monotonic() - began)
        return all(o.success for o in outcomes)

    failed = run_loop(cycle, client.server_time_ms, stop, args.cycles)
    print(f"live {name}: stopped", file=sys.stderr)
    if stop.event.is_set():  # by a signal: 130, or 143 for SIGTERM (`main`)
        return 130
    return 0 if failed == 0 else 1


def report_live(stores: list[DatasetStore], settings: Settings, now_ms: int, after_ms: int, took_s: float) -> None:
    """One dataset: its day, rows and lag (at `after_ms`, the cycle's end); several: how many hold the minute
    that had closed last when the cycle began (`now_ms`)."""
    today = settings.align_tz.local_date(now_ms)
    entries = [store.manifest().entry_for(today) for store in stores]
    if len(stores) == 1:
        entry = entries[0]
        if entry is not None and stores[0].spec.kind_info.events:
            print(f"{ms_to_iso(now_ms)} {stores[0].spec.name} {today}: {entry.rows} event(s), the last "
                  f"{ms_to_iso(entry.last_open_time) or '-'}, covered until {ms_to_iso(entry.covered_until_ms)}",
                  file=sys.stderr)
        elif entry is not None:
            lag = (after_ms - (entry.last_open_time + 59_999)) / 1000 if entry.last_open_time else None
            print(f"{ms_to_iso(now_ms)} {stores[0].spec.name} {today}: {entry.rows} rows, last closed minute "
                  f"{ms_to_iso(entry.last_open_time)}" + (f", lag {lag:.0f}s" if lag is not None else ""),
                  file=sys.stderr)
        return
    closed = now_ms // 60_000 * 60_000 - 60_000  # open time of the minute that closed last
    # funding: every event due (`holds_latest`)
    current = sum(1 for store, e in zip(stores, entries, strict=True)
                  if e is not None and holds_latest(store.spec.kind_info, e.covered_until_ms, now_ms))
    print(f"{ms_to_iso(now_ms)} {current}/{len(stores)} datasets hold the minute {ms_to_iso(closed)} "
          f"(took {took_s:.1f}s)", file=sys.stderr)
