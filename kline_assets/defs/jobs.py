"""The code location's jobs: live updates (started by the live sensor), combined-file rebuilds, and
whole-dataset verification per dataset (the same as `kline-assets verify`).

No `from __future__ import annotations`: Dagster reads the context annotation at run time.
"""

import datetime as dt

import dagster as dg

from kline_assets.archive.daycalendar import day_states, markdown
from kline_assets.archive.verify import verify
from kline_assets.defs.names import (
    ARCHIVE,
    COMBINE_JOB,
    HOURLY_JOB,
    LIVE_JOB,
    combined_key,
    hourly_key,
    job_name,
    klines_key,
)
from kline_assets.defs.resources import ArchiveResource
from kline_assets.settings import DatasetSpec, Settings


def build_live_job(settings: Settings):
    """In-process: a live run is one step per market (each fetching its datasets side by side, `defs.fleet`),
    run one after the other, since a step process would add its start-up (seconds) to every minute's run."""
    return dg.define_asset_job(LIVE_JOB, selection=[klines_key(spec) for spec in settings.pairs],
                               executor_def=dg.in_process_executor,
                               description="Live updates of klines_1m, started by the live sensor.")


def build_combine_job(settings: Settings):
    return dg.define_asset_job(COMBINE_JOB, selection=[combined_key(s) for s in settings.pairs],
                               executor_def=dg.in_process_executor,  # one process for any number of datasets
                               description="Rebuild combined files (after backfills, when enabled).")


def build_hourly_job(settings: Settings):
    return dg.define_asset_job(HOURLY_JOB, selection=[hourly_key(spec) for spec in settings.pairs],
                               executor_def=dg.in_process_executor,  # one process for any number of datasets
                               description="klines_1h of the days a klines_1m run loaded (KLINE_HOURLY=1).")


def build_verify_job(spec: DatasetSpec) -> dg.JobDefinition:
    @dg.op(name=job_name("verify_op", spec), required_resource_keys={ARCHIVE},
           description=f"Checks every stored day of {spec.name} against its manifest, continuity and sanity.")
    def _verify(context: dg.OpExecutionContext) -> None:
        archive: ArchiveResource = getattr(context.resources, ARCHIVE)
        store = archive.store(spec)
        today = dt.datetime.now(store.zone.tzinfo).date()
        report = verify(store, None, None, today)
        context.log.info(report.render(spec.name))
        md = {"days_checked": report.days_checked, "problems": len(report.problems),
              "by_kind": dg.MetadataValue.json(report.summary()["problems"]),
              "coverage": dg.MetadataValue.md(markdown(day_states(store.manifest(), today)))}
        context.log_event(dg.AssetObservation(asset_key=klines_key(spec), metadata=md))
        if not report.ok:  # one readable line; the whole report is in the log line above and the metadata
            raise dg.Failure(description=report.render(spec.name).splitlines()[0] + " (kline-assets verify "
                             "--repair mends it)", metadata={**md, "report": dg.MetadataValue.md(
                                 "```\n" + report.render(spec.name) + "\n```")})

    @dg.job(name=job_name("verify", spec), description=f"Verify the whole {spec.name} archive (read-only).")
    def _job() -> None:
        _verify()

    return _job
