"""Turning a list of days into closed, exact day tables, a few days ahead in a bounded pool.

Days come out in order whatever order they finish in, so memory holds at most `2 * workers` days
and the IO manager can commit in day order.

A process may name a fetch gate (a lock file that also holds whose turn it is): its streams then fetch
only on their turn and while holding the lock, so the runs of one command-line backfill take the weight
budget one after the other, in day order (see `segments`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from kline_assets.atomic import locked
from kline_assets.exchange import BinanceClient
from kline_assets.fetch import add_gap, fetch_window
from kline_assets.manifest import ChunkEntry, Manifest
from kline_assets.schema import rows_to_table
from kline_assets.store import DatasetStore

_fetch_gate: tuple[Path, int] | None = None
TURN_POLL_S = 0.05


def use_fetch_gate(path: Path | None, turn: int = 0) -> None:
    """Streams created from now on wait for turn `turn` (0, 1, 2, ...) of the gate at `path`."""
    global _fetch_gate
    _fetch_gate = (path, turn) if path is not None else None


def _turn_now(path: Path) -> int:
    return int(path.read_text() or 0)


def _end_turn(path: Path, turn: int) -> None:
    """Under the gate's lock: the next turn may go, unless a later one is already under way."""
    if _turn_now(path) == turn:
        path.write_text(str(turn + 1))


@contextlib.contextmanager
def _fetching(gate: tuple[Path, int] | None) -> Iterator[None]:
    if gate is None:
        yield
        return
    path, turn = gate
    while True:
        with locked(path):
            if _turn_now(path) >= turn:
                try:
                    yield
                finally:
                    _end_turn(path, turn)
                return
        time.sleep(TURN_POLL_S)


def pass_turn(path: Path, turn: int) -> None:
    """A run that ended without fetching (failed early) must not hold up the next one."""
    with locked(path):
        _end_turn(path, turn)


@dataclass
class DayData:
    day: dt.date
    table: pa.Table | None  # None: nothing new, the stored chunk stands
    gaps: list[list[int]] = field(default_factory=list)
    covered_until_ms: int = 0
    requests: int = 0
    entry: ChunkEntry | None = None  # the stored entry when nothing is new


class DayStream:
    """Lazily fetched days, consumed by the chunk IO manager (an iterable, not a generator: Dagster
    would take a returned generator for an event stream)."""

    def __init__(self, store: DatasetStore, client: BinanceClient, days: list[dt.date], page: int,
                 workers: int = 4) -> None:
        self.store, self.client, self.days, self.page = store, client, days, page
        self.workers = max(1, workers)
        self.snapshot: Manifest = store.manifest()
        self.started = time.monotonic()
        self.gate = _fetch_gate

    def __len__(self) -> int:
        return len(self.days)

    def __iter__(self) -> Iterator[DayData]:
        with _fetching(self.gate):
            self.started = time.monotonic()  # a gated stream starts when it gets the gate
            pool = ThreadPoolExecutor(self.workers, thread_name_prefix="klines")
            queue: deque[Future[DayData]] = deque()
            todo = iter(self.days)
            try:
                for day in todo:
                    queue.append(pool.submit(self.collect, day))
                    if len(queue) >= 2 * self.workers:
                        break
                while queue:
                    result = queue.popleft().result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        queue.append(pool.submit(self.collect, nxt))
                    yield result
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def collect(self, day: dt.date) -> DayData:
        entry = self.snapshot.chunks.get(self.store.index_of(day))
        intact = entry is not None and self.store.entry_intact(entry)
        if entry is not None and intact and entry.complete:
            return DayData(day, None, entry.exchange_gaps, entry.covered_until_ms, entry=entry)
        start_ms, end_ms = self.store.zone.day_window_ms(day)
        old, gaps, from_ms = None, [], start_ms
        if entry is not None and intact and (entry.start_ms, entry.end_ms) == (start_ms, end_ms):
            old, from_ms = self.store.read_table(entry), entry.covered_until_ms
            gaps = [list(g) for g in entry.exchange_gaps]
        fetched = fetch_window(self.client, self.store.spec.symbol, from_ms, end_ms,
                               self.client.server_time_ms(), self.page)
        for gap in fetched.gaps:
            add_gap(gaps, *gap)
        covered = max(from_ms, fetched.covered_until_ms)
        table = rows_to_table(fetched.rows)
        if old is not None:
            if not fetched.rows and covered == entry.covered_until_ms:
                return DayData(day, None, gaps, covered, fetched.requests, entry=entry)
            if old.num_rows:
                table = table.filter(pc.greater(table["open_time"], old["open_time"][-1]))
            table = pa.concat_tables([old, table])
        return DayData(day, table, gaps, covered, fetched.requests)
