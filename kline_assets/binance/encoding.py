"""Making a day's chunk: encode it as zstd Parquet and run its checks; archive days on the machine's other
cores.

An archive day costs ~6 ms of CPU here (unzip and parse the CSV ~2, encode ~2, check ~1.5), most of it
holding the interpreter, and a backfill's days arrive faster than one core makes them while the step's own
thread records them in Dagster (also mostly holding the interpreter). So a run that reads the archive
makes its archive days in a process pool of its own (`encoder`): the download threads hand over the
verified zips and get the chunk back, not yet put. REST days are made in the download thread: the weight
budget, not the CPU, bounds them, and a live minute would pay a pool's start-up for nothing.

The pool's lifetime is the run's (`run_fleet` owns an `Encoder`, which starts the pool for the run's first
archive day, and closes it at the end). Its workers ignore Ctrl-C (the run's process takes it, stops its
streams, and then the pool) and end by themselves when the process that made them is gone (a kill -9),
so none outlives a run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc

from kline_assets.binance.archive import ArchiveDay
from kline_assets.binance.paging import add_gap, note_rows
from kline_assets.store.checks import Outcome, evaluate_day
from kline_assets.store.dataset import ChunkPlan, Staged, make_chunk

ORPHAN_POLL_S = 0.5


def chunk_and_check(plan: ChunkPlan, table: pa.Table, gaps: list[list[int]], covered_until_ms: int,
                    source: str = "rest", source_sha256: str | None = None) -> tuple[Staged, dict[str, Outcome]]:
    """The day's chunk, not yet put, and its checks on those very bytes (`evaluate_day`)."""
    staged = make_chunk(plan, table, gaps, covered_until_ms, source, source_sha256)
    return staged, evaluate_day(staged.data, staged.entry, plan.paths.spec.kind_info)


def archive_chunk(files: list[ArchiveDay], plan: ChunkPlan) -> tuple[Staged, dict[str, Outcome]]:
    """The local day `plan` names, cut from the verified UTC files that cover it (two where the zone is not
    UTC). A minute the files lack is a gap the exchange confirmed. Raises `ArchiveUnusable` for a file that
    cannot be read. Runs in the encoder's processes: everything it takes and returns is plain data."""
    kind = plan.paths.spec.kind_info
    table = pa.concat_tables([f.table() for f in files])  # funding: the months' events
    times = table[kind.time_column]
    table = table.filter(pc.and_(pc.greater_equal(times, plan.start_ms), pc.less(times, plan.end_ms)))
    gaps: list[list[int]] = []
    if not kind.events:  # events have a schedule, not minutes: nothing is a gap (`checks.funding_within_day`)
        add_gap(gaps, note_rows(gaps, plan.start_ms, table["open_time"].to_pylist()), plan.end_ms)
    return chunk_and_check(plan, table, gaps, plan.end_ms, "archive", ",".join(f.sha256 for f in files))


class Encoder:
    """The run's process pool for `archive_chunk`, started by its first archive day (a live minute or a
    REST backfill starts none): the machine's cores but one (the run's own process keeps one for
    downloading and recording), at least one. Spawned, never forked: the run's process has threads."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._lock = threading.Lock()

    def archive_chunk(self, files: list[ArchiveDay], plan: ChunkPlan) -> tuple[Staged, dict[str, Outcome]]:
        with self._lock:
            if self._pool is None and not self._closed:
                self._pool = ProcessPoolExecutor(max(1, (os.cpu_count() or 2) - 1),
                                                 mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_worker_started, initargs=(os.getpid(),))
            pool = self._pool
        if pool is None:  # closed: a day still being made as the run ends is made here
            return archive_chunk(files, plan)
        return pool.submit(archive_chunk, files, plan).result()

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _worker_started(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_end_when_orphaned, args=(parent,), daemon=True, name="orphan-watch").start()


def _end_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL_S)
    os._exit(0)
