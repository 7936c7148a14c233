"""Jobs for the UI and schedules: whole-dataset verification (the same as `kline-assets verify`).

No `from __future__ import annotations`: Dagster reads the context annotation at run time.
"""

import datetime as dt

import dagster as dg

from kline_assets.coverage import day_states, markdown
from kline_assets.names import ARCHIVE, job_name, klines_key
from kline_assets.resources import ArchiveResource
from kline_assets.settings import DatasetSpec
from kline_assets.verify import record, verify


def build_verify_job(spec: DatasetSpec) -> dg.JobDefinition:
    @dg.op(name=job_name("verify_op", spec), required_resource_keys={ARCHIVE},
           description=f"Checks every stored day of {spec.name} against its manifest, continuity and sanity.")
    def _verify(context: dg.OpExecutionContext) -> None:
        archive: ArchiveResource = getattr(context.resources, ARCHIVE)
        store = archive.store(spec)
        today = dt.datetime.now(store.zone.tzinfo).date()
        report = verify(store, None, None, today)
        record(store, report)
        context.log.info(report.render(spec.name))
        md = {"days_checked": report.days_checked, "problems": len(report.problems),
              "by_kind": dg.MetadataValue.json(report.summary()["problems"]),
              "coverage": dg.MetadataValue.md(markdown(day_states(store.manifest(), today)))}
        context.log_event(dg.AssetObservation(asset_key=klines_key(spec), metadata=md))
        if not report.ok:
            raise dg.Failure(description=report.render(spec.name), metadata=md)

    @dg.job(name=job_name("verify", spec), description=f"Verify the whole {spec.name} archive (read-only).")
    def _job() -> None:
        _verify()

    return _job
