"""Long command-line backfills as consecutive Dagster runs in two worker processes.

Dagster records a range run's events (one materialization and three check evaluations per day, ~20 ms
of CPU per day) only after the IO manager has fetched and written the whole range, so in one run that
bookkeeping adds to the fetching: a quarter of a spot backfill at the exchange's weight budget. Here
the range becomes runs of at most `SEGMENT_DAYS` days, taken in order by two worker processes; a lock
file (the fetch gate) lets one run fetch at a time, in day order, so while a run records its events the
next one already fetches with the whole budget. The last runs halve in size, so the final bookkeeping that
nothing overlaps stays short. Every run is an ordinary Dagster run (tagged with its segment); a
failed or interrupted one stops the rest, and what was committed stays committed.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import dagster as dg

from kline_assets.cli import quiet_warnings
from kline_assets.collect import pass_turn, use_fetch_gate
from kline_assets.logs import setup_logging
from kline_assets.names import klines_key
from kline_assets.runner import RunOutcome, dagster_instance, materialize_range
from kline_assets.settings import DatasetSpec, Settings

SEGMENT_DAYS = 200  # recording a segment (~4 s) takes less than fetching the next one (~8 s on spot)
SMALLEST = 25
WORKERS = 2
SEGMENT_TAG = "kline_assets/segment"


def split(first: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """[first, end) as (first, last) pairs: one if it fits in `SEGMENT_DAYS` days, else runs of that
    size, then halving while at least `SMALLEST` days remain for each half."""
    size, smallest = SEGMENT_DAYS, SMALLEST
    if (end - first).days <= size:
        return [(first, end - dt.timedelta(days=1))]
    out, day = [], first
    while day < end:
        remaining = (end - day).days
        n = remaining if remaining < 2 * smallest else min(size, -(-remaining // 2))
        out.append((day, day + dt.timedelta(days=n - 1)))
        day += dt.timedelta(days=n)
    return out


_running = threading.Event()


def _watch_parent(parent: int) -> None:
    """Without this a worker outlives a killed command (it would wait for work forever): interrupt the
    run in progress as Ctrl-C would, give Dagster a moment to record that, then leave."""
    while os.getppid() == parent:
        time.sleep(1)
    if _running.is_set():
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 30
        while _running.is_set() and time.monotonic() < deadline:
            time.sleep(0.2)
    os._exit(1)


def _init_worker() -> None:
    # an idle worker ignores Ctrl-C (the parent stops handing out runs); a running one gets it back
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_warnings()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="watch-parent").start()


def _run_segment(settings: Settings, spec: DatasetSpec, first: dt.date, last: dt.date, n: int, count: int,
                 gate: str) -> RunOutcome:
    setup_logging(settings.log_dir)
    use_fetch_gate(Path(gate), turn=n - 1)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _running.set()
    try:
        return materialize_range(settings, spec, first.isoformat(), last.isoformat(), dagster_instance(),
                                 dg.AssetSelection.assets(klines_key(spec)), tags={SEGMENT_TAG: f"{n}/{count}"})
    finally:
        _running.clear()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        pass_turn(Path(gate), n - 1)


def _outcome(future: Future[RunOutcome]) -> RunOutcome:
    try:
        return future.result()
    except BrokenProcessPool:
        return RunOutcome(False, "-", "a worker process died (killed?); committed days stay, rerun to finish")


def run_segments(settings: Settings, spec: DatasetSpec, segments: list[tuple[dt.date, dt.date]],
                 report: Callable[[str], None]) -> list[RunOutcome]:
    """Runs in order, at most `WORKERS` at once; stops handing out runs after the first failure."""
    dagster_instance()  # DAGSTER_HOME resolved (and dagster.yaml written) before the workers start
    with tempfile.TemporaryDirectory(prefix="kline_assets_") as tmp:
        return _run_all(settings, spec, segments, Path(tmp) / "fetch.lock", report)


def _run_all(settings: Settings, spec: DatasetSpec, segments: list[tuple[dt.date, dt.date]], gate: Path,
             report: Callable[[str], None]) -> list[RunOutcome]:
    outcomes: list[RunOutcome] = []
    context = multiprocessing.get_context("spawn")  # never fork a process that has threads
    with ProcessPoolExecutor(WORKERS, mp_context=context, initializer=_init_worker) as pool:
        running: dict[Future[RunOutcome], str] = {}
        todo = list(enumerate(segments, 1))
        try:
            while todo or running:
                while todo and len(running) < WORKERS and all(o.success for o in outcomes):
                    n, (first, last) = todo.pop(0)
                    future = pool.submit(_run_segment, settings, spec, first, last, n, len(segments), str(gate))
                    running[future] = f"run {n}/{len(segments)} {first}..{last}"
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = _outcome(future)
                    outcomes.append(outcome)
                    report(f"{running.pop(future)}: {'done' if outcome.success else outcome.error} "
                           f"(run {outcome.run_id})")
        except KeyboardInterrupt:
            # the terminal sent Ctrl-C to the workers too: their runs end as interrupted
            wait(running)
            raise
    return outcomes
