"""Runs that the command line starts, executed through Dagster (in-process, or with a step process per
market) and recorded in the instance at DAGSTER_HOME, so they show in the UI beside the runs the UI starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import sys
from dataclasses import dataclass, replace

import dagster as dg

from kline_assets.defs.definitions import build_assets, build_resources
from kline_assets.defs.jobs import backfill_run_config, build_backfill_job, build_live_job
from kline_assets.defs.live import live_run_config, live_tags
from kline_assets.defs.names import (
    BACKFILL_JOB,
    HOURLY_JOB,
    LIVE_JOB,
    SOURCE_CLI,
    TAG_SOURCE,
    dataset_tags,
    hourly_key,
    range_tags,
)
from kline_assets.settings import DatasetSpec, Settings, load_settings, settings_env

# Dagster's console logger prints every event and each failure's stack; the command line prints its own
# lines (progress through kline_assets.logs), the instance keeps every event, loader.log every trace
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
log = logging.getLogger("kline_assets")


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    error: str | None = None
    kind: str | None = None  # the class of the error behind Dagster's wrappers (ExchangeTransient, BadInput, ...)

    @property
    def interrupted(self) -> bool:
        """Dagster turns SIGINT/SIGTERM during a run into this error; the caller should stop too."""
        return bool(self.error and self.error.startswith("interrupted"))

    @property
    def next_step(self) -> str:
        """What to do about the failure, in words: a rerun helps only where the cause can pass."""
        if self.interrupted or self.kind in RERUN_HELPS:
            return "the days committed stay; a rerun completes the rest"
        if self.kind in ("BadInput", "UnknownSymbol"):
            return "the days committed stay; a rerun fails the same way until the cause above is mended"
        return "the days committed stay; the cause above must be mended before a rerun helps"


# failures that can pass by themselves: the exchange was down or slow, the run was stopped
RERUN_HELPS = ("ExchangeTransient", "HttpFailure", "Stopped", "Banned", "FleetFailure", "ChunkUnavailable",
               "StepProcessDied")


def first_error(result: dg.ExecuteInProcessResult | dg.JobExecutionResult) -> tuple[str | None, str | None]:
    """The failure for the user, in one line, and its error class; the whole trace goes to loader.log."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            log.error("run %s, step %s failed:\n%s", result.run_id, event.step_key, err.to_string())
            while err.cause is not None and err.cls_name.startswith("DagsterExecution"):
                err = err.cause  # Dagster's wrappers: the user-facing reason is the cause
            if "Interrupt" in err.cls_name:
                return "interrupted (Ctrl-C or SIGTERM)", err.cls_name
            if err.cls_name == "ChildProcessCrashException":  # Dagster's word for a step process that died
                return f"the {event.step_key} step process ended early (killed or crashed)", "StepProcessDied"
            if err.cls_name == "FleetFailure":  # one line per failed dataset
                return err.message.strip().partition(": ")[2], err.cls_name
            return one_line(err.message, err.cls_name), err.cls_name
    return (None, None) if result.success else ("the run failed (see the Dagster UI for its events)", None)


def one_line(message: str | None, cls_name: str) -> str:
    """An error message as one line: without Python's `Class: ` prefix, and not cut at a colon that
    introduces the cause on the next lines (Dagster's "1 blocking asset check failed ...:")."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    if not lines:
        return cls_name
    line = lines[0]
    if line.endswith(":") and len(lines) > 1:
        line = line + " " + "; ".join(lines[1:4])
    head, sep, rest = line.partition(": ")
    return rest if sep and head.endswith(cls_name) else line


def materialize_range(settings: Settings, specs: list[DatasetSpec], first_key: str, last_key: str,
                      instance: dg.DagsterInstance, tags: dict | None = None) -> RunOutcome:
    """One run of the backfill job (`jobs.build_backfill_job`) loading the days first_key..last_key of every
    dataset in `specs` (one market's: one step, side by side); with `KLINE_HOURLY=1` a second run then builds
    klines_1h of the same days."""
    resolved = replace(settings, pairs=tuple(specs), selectors=())  # an op for each market of `specs` only
    job = dg.Definitions(jobs=[build_backfill_job(resolved)], resources=build_resources(settings)).resolve_job_def(
        BACKFILL_JOB)
    result = job.execute_in_process(
        run_config={**_QUIET, **backfill_run_config(settings, specs, first_key, last_key)}, instance=instance,
        tags={TAG_SOURCE: SOURCE_CLI, **backfill_tags(specs, first_key, last_key), **(tags or {})},
        raise_on_error=False)
    outcome = RunOutcome(result.success, result.run_id, *first_error(result))
    return _then_hourly(outcome, settings, specs, first_key, last_key, instance, tags)


def backfill_tags(specs: list[DatasetSpec], first_key: str, last_key: str) -> dict[str, str]:
    """What a backfill run writes, as tags: its days and datasets (the live sensor waits for them)."""
    return {**range_tags(first_key, last_key), **dataset_tags([s.name for s in specs])}


def _then_hourly(outcome: RunOutcome, settings: Settings, specs: list[DatasetSpec], first_key: str, last_key: str,
                 instance: dg.DagsterInstance, tags: dict | None) -> RunOutcome:
    """With `KLINE_HOURLY=1`, after a successful klines_1m run: the klines_1h run of the same days."""
    hourly = [s for s in specs if s in settings.hourly_pairs]
    if outcome.success and hourly:
        return _range_run(settings, hourly, HOURLY_JOB, [hourly_key(s) for s in hourly], first_key, last_key,
                          instance, tags)
    return outcome


def _range_run(settings: Settings, specs: list[DatasetSpec], job: str, keys: list[dg.AssetKey], first_key: str,
               last_key: str, instance: dg.DagsterInstance, tags: dict | None) -> RunOutcome:
    return asset_run(settings, job, dg.AssetSelection.assets(*keys), instance,
                     {**range_tags(first_key, last_key), **dataset_tags([s.name for s in specs]), **(tags or {})})


def asset_run(settings: Settings, job: str, selection: dg.AssetSelection, instance: dg.DagsterInstance,
              tags: dict, run_config: dict | None = None) -> RunOutcome:
    """One run of the selected assets (and their checks) in this process, under a job name of ours: the
    UI lists command-line runs as `backfill_klines`, `hourly_klines`, `combine_klines`, not as Dagster's
    `__ephemeral_asset_job__`."""
    defs = dg.Definitions(assets=build_assets(settings), resources=build_resources(settings),
                          jobs=[dg.define_asset_job(job, selection=selection)])
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags={TAG_SOURCE: SOURCE_CLI, **tags}, run_config={**_QUIET, **(run_config or {})},
        raise_on_error=False)
    return RunOutcome(result.success, result.run_id, *first_error(result))


def live_job_def(settings: Settings) -> dg.JobDefinition:
    """The live job with its resources, as the sensor's runs have it (built once per `kline-assets live`)."""
    return dg.Definitions(jobs=[build_live_job(settings)], resources=build_resources(settings)).resolve_job_def(
        LIVE_JOB)


def run_live(job: dg.JobDefinition, settings: Settings, specs: list[DatasetSpec], first: dt.date, last: dt.date,
             instance: dg.DagsterInstance) -> RunOutcome:
    """One live run of `specs` over first..last, as the live sensor would start it (`job`: `live_job_def`);
    with `KLINE_HOURLY=1` a klines_1h run of the same days follows."""
    result = job.execute_in_process(run_config={**_QUIET, **live_run_config(specs, first, last)},
                                    instance=instance, tags=live_tags(specs, first, last), raise_on_error=False)
    outcome = RunOutcome(result.success, result.run_id, *first_error(result))
    return _then_hourly(outcome, settings, specs, first.isoformat(), last.isoformat(), instance, None)


def materialize_per_market(settings: Settings, specs: list[DatasetSpec], first_key: str, last_key: str,
                           instance: dg.DagsterInstance) -> RunOutcome:
    """`materialize_range` of datasets of both markets: one run whose step per market (`defs.assets`) goes
    in a step process of Dagster's multiprocess executor, since the markets have separate weight budgets
    and one interpreter (its lock) cannot keep both busy. The step processes load the definitions from
    the variables of `settings` (`settings_env`, the datasets as resolved here); Ctrl-C or SIGTERM stops
    them through Dagster, each committing what it staged."""
    if len({s.market for s in specs}) < 2:
        return materialize_range(settings, specs, first_key, last_key, instance)
    resolved = replace(settings, pairs=tuple(specs), selectors=())
    job = dg.build_reconstructable_job(__name__, backfill_job.__name__,
                                       reconstructable_kwargs={"env": settings_env(resolved)})
    with dg.execute_job(job, instance, raise_on_error=False,
                        run_config={**_QUIET, **backfill_run_config(settings, specs, first_key, last_key)},
                        tags={TAG_SOURCE: SOURCE_CLI, **backfill_tags(specs, first_key, last_key)}) as result:
        outcome = RunOutcome(result.success, result.run_id, *first_error(result))
    return _then_hourly(outcome, settings, specs, first_key, last_key, instance, None)


def backfill_job(env: dict[str, str]) -> dg.JobDefinition:
    """The job of `materialize_per_market`, rebuilt by each step process (`dg.build_reconstructable_job`) from
    the settings the command resolved, as variables (`env`, passed with the job, never through this process's
    environment): the `klines_1m` assets of the datasets given, a step per market. It also readies the step
    process as the command readied itself (log, progress on stderr, Ctrl-C, ending with the command): this is
    the one code of ours a step process runs before its step."""
    from kline_assets.interrupts import relay_interrupts
    from kline_assets.logs import setup_logging, show_progress

    settings = load_settings(env)
    setup_logging(settings.log_dir)
    show_progress(sys.stderr)  # the step's progress lines on the command's stderr, as in one process
    relay_interrupts()  # SIGINT came blocked from the command (`interrupts`): this process takes it too
    end_with_parent()
    job = build_backfill_job(settings, dg.multiprocess_executor)
    return dg.Definitions(jobs=[job], resources=build_resources(settings)).resolve_job_def(BACKFILL_JOB)


def end_with_parent() -> None:
    """A step process of a command-line run gets SIGTERM when the command dies, even by kill -9 (Linux's
    parent-death signal; Dagster's executor does not watch for it): Dagster turns it into an interrupt, the
    step commits what it staged and ends, and nothing goes on writing behind a command the user stopped."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import multiprocessing

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    # the command may have died while this process was still starting (before the signal was asked for):
    # the parent's sentinel, not a PID, says so
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():
        os.kill(os.getpid(), signal.SIGTERM)
