"""The live sensor: about every minute, one run per dataset that brings today up to the last closed
minute (and completes or catches up earlier days). It skips while a run of that dataset is still
going, so live runs never pile up or write a chunk beside a backfill.

No `from __future__ import annotations`: Dagster reads the context annotation at run time.
"""

import time

import dagster as dg

from kline_assets.defs.live import live_days
from kline_assets.defs.names import (
    COMBINE_SENSOR,
    HOURLY_SENSOR,
    LIVE_SENSOR,
    SOURCE_LIVE,
    TAG_DATASET,
    TAG_SOURCE,
    combined_key,
    hourly_key,
    klines_key,
    range_tags,
)
from kline_assets.defs.resources import ArchiveResource
from kline_assets.settings import Settings

IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED]


def busy_keys(instance: dg.DagsterInstance, settings: Settings) -> set[dg.AssetKey]:
    """Asset keys that a queued or running run (live, backfill, UI, CLI) is writing. In-process runs
    (the CLI's) record no asset selection, so their dataset tag counts too."""
    by_name = {spec.name: klines_key(spec) for spec in settings.pairs}
    keys: set[dg.AssetKey] = set()
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS), limit=200):
        run = record.dagster_run
        keys.update(run.asset_selection or ())
        for name in run.tags.get(TAG_DATASET, "").split(","):
            if name in by_name:
                keys.add(by_name[name])
    return keys


def build_live_sensor(settings: Settings, job) -> dg.SensorDefinition:
    @dg.sensor(name=LIVE_SENSOR, job=job, minimum_interval_seconds=5,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Every minute: today's partition of each dataset up to the last closed minute; "
                           "completes yesterday after midnight and catches up missed days.")
    def _live(context: dg.SensorEvaluationContext):
        now_ms = int(time.time() * 1000)
        minute = now_ms // 60_000
        busy = busy_keys(context.instance, settings)
        groups: dict[tuple, list] = {}  # datasets with the same day range share one run (one start-up)
        skipped = []
        archive = ArchiveResource.from_settings(settings)
        for spec in settings.pairs:
            if klines_key(spec) in busy:
                skipped.append(f"{spec.name} has a run in progress")
                continue
            store = archive.store(spec)
            groups.setdefault(live_days(store.read_manifest(), settings.align_tz, now_ms, store.start), []).append(spec)
        requests = [
            dg.RunRequest(
                run_key=f"live:{','.join(s.name for s in specs)}:{minute}",
                asset_selection=[klines_key(s) for s in specs],
                tags={**range_tags(first.isoformat(), today.isoformat()),
                      TAG_SOURCE: SOURCE_LIVE, TAG_DATASET: ",".join(s.name for s in specs)},
            )
            for (first, today), specs in groups.items()
        ]
        if not requests:
            return dg.SkipReason("; ".join(skipped) or "no dataset configured")
        return requests

    return _live


def build_combine_after_backfill_sensor(settings: Settings, job) -> dg.SensorDefinition:
    """BUILD_COMBINED_ON_BACKFILL=1: after a successful non-live run of klines_1m, rebuild the combined file."""

    @dg.run_status_sensor(name=COMBINE_SENSOR, run_status=dg.DagsterRunStatus.SUCCESS, request_job=job,
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Rebuilds klines_1m_combined after each successful backfill.")
    def _combine(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        if run.tags.get(TAG_SOURCE) == SOURCE_LIVE:
            return dg.SkipReason("live runs do not rebuild the combined file")
        records = context.instance.get_records_for_run(
            run_id=run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000).records
        keys = {r.event_log_entry.dagster_event.asset_key for r in records}
        requests = [dg.RunRequest(run_key=f"combine:{run.run_id}:{spec.name}", asset_selection=[combined_key(spec)])
                    for spec in settings.pairs if klines_key(spec) in keys]
        return requests or dg.SkipReason("the run loaded no klines_1m")

    return _combine


def build_hourly_after_klines_sensor(settings: Settings, job) -> dg.SensorDefinition:
    """KLINE_HOURLY=1: after each successful run that loaded klines_1m (live, backfill, CLI), one run per
    dataset builds klines_1h for the days it loaded. A run of its own, because klines_1m records its days
    as events and emits no output, so a klines_1h step in the same run would be skipped."""

    @dg.run_status_sensor(name=HOURLY_SENSOR, run_status=dg.DagsterRunStatus.SUCCESS, request_job=job,
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
        requests = [
            dg.RunRequest(run_key=f"hourly:{run.run_id}:{spec.name}", asset_selection=[hourly_key(spec)],
                          # no dataset tag: klines_1h writes no chunk, so the live sensor need not wait for it
                          tags=range_tags(min(days[klines_key(spec)]), max(days[klines_key(spec)])))
            for spec in settings.pairs if days.get(klines_key(spec))
        ]
        return requests or dg.SkipReason("the run loaded no klines_1m")

    return _hourly
