"""The live sensor: once a minute, one run of the live job for all datasets that need the same days,
bringing today up to the last closed minute (and completing or catching up earlier days), requested ~15 s
ahead of its minute. A dataset is left out while a run writing the same days of it is still going, so live
runs never pile up or write a chunk beside a backfill of those days (other days of a dataset may be
written meanwhile: commits are per day, locked).

No `from __future__ import annotations`: Dagster reads the context annotation at run time.
"""

import time

import dagster as dg

from kline_assets.defs.live import live_groups, live_run_config, live_tags
from kline_assets.defs.names import (
    COMBINE_SENSOR,
    HOURLY_SENSOR,
    LIVE_SENSOR,
    PARTITION,
    RANGE_END,
    RANGE_START,
    RECHECK_SCHEDULE,
    SOURCE_LIVE,
    TAG_SOURCE,
    combined_key,
    hourly_key,
    klines_key,
    prefixed,
    range_tags,
    tagged_datasets,
)
from kline_assets.defs.resources import StoreResource
from kline_assets.settings import Settings

IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED]


def busy_ranges(instance: dg.DagsterInstance,
                settings: Settings) -> dict[dg.AssetKey, list[tuple[str, str, dg.DagsterRun]]]:
    """Per asset key, the day ranges that queued or running runs (live, backfill, UI, CLI) are writing, with
    the run. Live runs (an op job) and in-process runs (the CLI's) record no asset selection, so their dataset
    tag counts too; a run that names no range counts as writing every day."""
    by_name = {spec.name: klines_key(spec, settings.key_prefix) for spec in settings.pairs}
    busy: dict[dg.AssetKey, list[tuple[str, str, dg.DagsterRun]]] = {}
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS), limit=200):
        run = record.dagster_run
        tags = run.tags
        one = tags.get(PARTITION)
        span = (tags.get(RANGE_START) or one or "0000-00-00", tags.get(RANGE_END) or one or "9999-99-99")
        keys = set(run.asset_selection or ())
        keys.update(by_name[name] for name in tagged_datasets(tags) if name in by_name)
        for key in keys:
            busy.setdefault(key, []).append((*span, run))
    return busy


def waiting_for(runs: dict[str, dg.DagsterRun]) -> str:
    """The runs live waits for, as users find them in the UI: id, job and days."""
    named = [f"{run.run_id[:8]} ({run.job_name}, {run.tags.get(RANGE_START) or run.tags.get(PARTITION) or 'any day'}"
             f"..{run.tags.get(RANGE_END) or run.tags.get(PARTITION) or 'any day'})" for run in list(runs.values())[:3]]
    return ", ".join(named) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")


LEAD_S = 15  # a live run is requested this long before its minute closes (`run_minute`)


def run_minute(now_s: float) -> int:
    """The minute boundary (in minutes since the epoch) a live run requested at `now_s` is for: the next one
    in the last `LEAD_S` seconds of a minute, else the one just passed. The run waits for its boundary, so
    its start-up (a process and the code location: ~10 s with 900 datasets) is over before the minute
    closes instead of delaying every minute's data."""
    minute = int(now_s // 60)
    return minute + 1 if now_s - minute * 60 >= 60 - LEAD_S else minute


def build_live_sensor(settings: Settings, job) -> dg.SensorDefinition:
    # ticks every 2 s are cheap (the cursor skips all but the first of a minute) and request the minute's run
    # ~15 s ahead of its boundary (`run_minute`)
    @dg.sensor(name=prefixed(settings.key_prefix, LIVE_SENSOR), job=job, minimum_interval_seconds=2,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Every minute: today's partition of each trading dataset up to the last closed minute; "
                           "completes yesterday after midnight and catches up missed days. One run for all "
                           "datasets that need the same days.")
    def _live(context: dg.SensorEvaluationContext):
        minute = run_minute(time.time())
        if context.cursor and int(context.cursor) >= minute:  # once a minute: reading every manifest costs
            return dg.SkipReason(f"this minute's live runs were requested already ({len(settings.pairs)} datasets)")
        context.update_cursor(str(minute))
        now_ms = minute * 60_000  # the days as of the boundary the run is for
        busy = busy_ranges(context.instance, settings)
        groups: dict[tuple, list] = {}  # datasets with the same day range share one run (one start-up)
        skipped, blockers = [], {}
        local = StoreResource.from_settings(settings)
        stores = [local.store(spec) for spec in settings.live_pairs]
        for (first, today), members in live_groups(stores, settings.align_tz, now_ms).items():
            for store in members:
                spans = [(a, b, run) for a, b, run in busy.get(klines_key(store.spec, settings.key_prefix), ())
                         if a <= today.isoformat() and first.isoformat() <= b]
                if spans:
                    skipped.append(store.spec.name)
                    blockers.update((run.run_id, run) for _, _, run in spans)
                else:
                    groups.setdefault((first, today), []).append(store.spec)
        requests = [
            dg.RunRequest(run_key=f"live:{minute}:{first}:{today}",
                          run_config=live_run_config(specs, first, today, not_before_ms=now_ms),
                          tags=live_tags(specs, first, today))
            for (first, today), specs in groups.items()
        ]
        waiting = (f"{len(skipped)} dataset(s) wait for the run(s) writing the same days to end: "
                   f"{waiting_for(blockers)}") if skipped else ""
        if skipped:
            context.log.info(f"{waiting}; datasets: {', '.join(skipped[:10])}{' ...' if len(skipped) > 10 else ''}")
        if not requests:
            return dg.SkipReason(waiting or "no trading dataset configured")
        return requests

    return _live


def build_combine_after_backfill_sensor(settings: Settings, job) -> dg.SensorDefinition:
    """BUILD_COMBINED_ON_BACKFILL=1: after a successful non-live run of klines_1m, rebuild the combined file."""

    @dg.run_status_sensor(name=prefixed(settings.key_prefix, COMBINE_SENSOR), request_job=job,
                          run_status=dg.DagsterRunStatus.SUCCESS,
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Rebuilds klines_1m_combined after each successful backfill.")
    def _combine(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        if run.tags.get(TAG_SOURCE) == SOURCE_LIVE:
            return dg.SkipReason("live runs do not rebuild the combined file")
        records = context.instance.get_records_for_run(
            run_id=run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000).records
        keys = {r.event_log_entry.dagster_event.asset_key for r in records}
        selection = [combined_key(spec, settings.key_prefix) for spec in settings.pairs
                     if klines_key(spec, settings.key_prefix) in keys]
        if not selection:
            return dg.SkipReason("the run loaded no klines_1m")
        return dg.RunRequest(run_key=f"combine:{run.run_id}", asset_selection=selection)

    return _combine


def build_hourly_after_klines_sensor(settings: Settings, job) -> dg.SensorDefinition:
    """KLINE_HOURLY=1: after each successful run that loaded klines_1m (live, backfill, CLI), one run per
    range of days builds klines_1h of every dataset that loaded that range, unless that run built it too (a
    run of both, selected in the UI). Live runs are op runs, which cannot hold klines_1h."""

    @dg.run_status_sensor(name=prefixed(settings.key_prefix, HOURLY_SENSOR), request_job=job,
                          run_status=dg.DagsterRunStatus.SUCCESS,
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Builds klines_1h of the days each successful klines_1m run loaded.")
    def _hourly(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        records = context.instance.get_records_for_run(
            run_id=run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000).records
        days: dict[dg.AssetKey, list[str]] = {}
        for record in records:
            event = record.event_log_entry.dagster_event
            days.setdefault(event.asset_key, []).append(event.partition)
        groups: dict[tuple[str, str], list] = {}
        for spec in settings.hourly_pairs:
            if hourly_key(spec, settings.key_prefix) in days:
                continue  # built in the same run, from the days it wrote
            if days.get(key := klines_key(spec, settings.key_prefix)):
                span = (min(days[key]), max(days[key]))
                groups.setdefault(span, []).append(hourly_key(spec, settings.key_prefix))
        requests = [
            dg.RunRequest(run_key=f"hourly:{run.run_id}:{first}:{last}", asset_selection=keys,
                          # no dataset tag: klines_1h writes no chunk, so the live sensor need not wait for it
                          tags=range_tags(first, last))
            for (first, last), keys in groups.items()
        ]
        return requests or dg.SkipReason("the run loaded no klines_1m")

    return _hourly


def build_recheck_schedule(settings: Settings, job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """Sundays at 04:00 UTC, the archive's CHECKSUMs of the stored days are read again (`binance.recheck`):
    one small request a day, a zip only where Binance replaced the file. Running by default; stop it in the
    UI's Automation tab."""
    return dg.ScheduleDefinition(name=prefixed(settings.key_prefix, RECHECK_SCHEDULE), job=job,
                                 cron_schedule="0 4 * * 0", execution_timezone="UTC",
                                 default_status=dg.DefaultScheduleStatus.RUNNING,
                                 description="Re-reads the CHECKSUMs of stored archive days weekly and loads "
                                             "again the days whose file Binance replaced.")
