"""Turning a list of days into closed, exact day tables, a few days ahead in a bounded pool.

Each worker also makes its day's chunk (zstd Parquet, sha256) and runs the day's checks on those very
bytes (`binance.encoding`: archive days in the run's process pool, REST days in the worker), then puts it
(`store.put`, durable), so the consumer only commits and records, in the one thread that records days in
Dagster. Days come out in order whatever order they finish in, so at most `2 * workers` days are in flight and
the writer can commit in day order; the chunks of days never handed out (a failure before them) stay
unlisted, for `DatasetStore.collect`. While the next day is still being fetched (a slow day being
retried), the stream yields `None` every `TICK_S`, so its consumer can commit what it already has.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kline_assets.binance.archive import NEWEST_LAG_DAYS, ArchiveClient, ArchiveDay, ArchiveUnusable, utc_files
from kline_assets.binance.client import BinanceClient
from kline_assets.binance.encoding import Encoder, archive_chunk, chunk_and_check
from kline_assets.binance.http import pause, stoppable
from kline_assets.binance.paging import Fetched, add_gap, events_due, fetch_events, fetch_window
from kline_assets.errors import ExchangeTransient
from kline_assets.store.checks import evaluate_day
from kline_assets.store.dataset import DatasetStore, Staged, sha256_bytes
from kline_assets.store.manifest import ChunkEntry, Manifest
from kline_assets.store.schema import funding_table, rows_to_table, value_problem
from kline_assets.timezones import UTC

log = logging.getLogger("kline_assets")
TICK_S = 0.5
MONTHS_KEPT = 3
EVENTS_AHEAD = dt.timedelta(days=30)


def _staged_or_kept(future: Future[DayData]) -> bool:
    if not future.done() or future.cancelled() or future.exception() is not None:
        return False
    return future.result().staged is not None or future.result().entry is not None


@dataclass
class DayData:
    day: dt.date
    table: pa.Table | None  # None: nothing new, the stored chunk stands
    gaps: list[list[int]] = field(default_factory=list)
    covered_until_ms: int = 0
    requests: int = 0
    entry: ChunkEntry | None = None  # the stored entry when nothing is new
    staged: Staged | None = None  # the new chunk, put but not yet committed (the stream's output)
    checked: dict | None = None  # the day's checks on its file, but for the previous day (`evaluate_day`)


class DayStream:
    """Lazily fetched days of one dataset, committed by `defs.writer.write_days`."""

    def __init__(self, store: DatasetStore, client: BinanceClient, days: list[dt.date], page: int,
                 workers: int = 4, archive: ArchiveClient | None = None, archive_only: bool = False,
                 encoder: Encoder | None = None) -> None:
        """`archive`: closed days whose entry is absent or damaged come from the public archive when it has
        them (REST otherwise, or, with `archive_only`, an error); `encoder` makes them (`binance.encoding`),
        else the download thread does."""
        self.store, self.client, self.days, self.page = store, client, days, page
        self.workers = max(1, workers)
        self.archive, self.archive_only, self.encoder = archive, archive_only, encoder
        self.snapshot: Manifest = store.manifest()
        self.months: dict[dt.date, ArchiveDay | None] = {}  # funding's monthly archive files (`archive_file`)
        self.months_lock = threading.Lock()
        # funding's last REST answer, ((from, covered until), events), for the days after (`events_of`)
        self.events: tuple[tuple[int, int], list[tuple]] = ((0, 0), [])
        self.events_lock = threading.Lock()
        self.started = time.monotonic()
        # set by `stop()`: requests in flight end at once, days not yet fetched are not started, and the
        # stream ends after handing out the days already staged (so they are committed and recorded)
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def __len__(self) -> int:
        return len(self.days)

    def __iter__(self) -> Iterator[DayData | None]:
        """Each day in order; `None` while the next one is not ready yet (at most every `TICK_S`)."""
        self.started = time.monotonic()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="klines")
        queue: deque[Future[DayData]] = deque()
        todo = iter(self.days)
        try:
            for day in todo:
                queue.append(pool.submit(self.ready_day, day))
                if len(queue) >= 2 * self.workers:
                    break
            while queue:
                if self.stopping.is_set() and not _staged_or_kept(queue[0]):
                    return  # stopped: the days before this one are handed out, the rest is dropped
                try:
                    result = queue[0].result(timeout=TICK_S)
                except FutureTimeout:
                    yield None
                    continue
                queue.popleft()
                nxt = next(todo, None)
                if nxt is not None and not self.stopping.is_set():
                    queue.append(pool.submit(self.ready_day, nxt))
                yield result
        finally:
            self.stopping.set()  # whatever ended the stream, its workers' requests end now
            # days fetched and staged but never handed out stay unlisted objects: `collect` removes them
            # after the grace period (another writer may be committing the very same bytes meanwhile)
            pool.shutdown(wait=True, cancel_futures=True)

    def ready_day(self, day: dt.date) -> DayData:
        """The day fetched (`fetch_day`), its new chunk made, checked and put."""
        with stoppable(self.stopping):
            data = self.fetch_day(day)
        if self.stopping.is_set():
            return DayData(day, None)  # never handed out
        if data.table is not None:  # a REST day: made here (`binance.encoding` says why)
            data.staged, data.checked = chunk_and_check(self.store.plan(day), data.table, data.gaps,
                                                        data.covered_until_ms)
            data.table = None  # memory holds no day the consumer has not taken
        if data.staged is not None:
            wrong = [f"{name}: {o.problem}" for name, o in data.checked.items()
                     if not o.passed and o.severity == "ERROR"]
            if wrong:  # the last line of defence: a day failing its own checks is never stored
                raise ExchangeTransient(f"{self.store.spec.name} {day} fails its checks ({'; '.join(wrong)}): "
                                        "not stored")
            self.store.put(data.staged)
            data.staged.data = None
        elif data.entry is not None and data.checked is None:
            data.checked = evaluate_day(self.store.chunk_bytes(data.entry), data.entry,
                                        self.store.spec.kind_info)
        return data

    def from_archive(self, day: dt.date) -> DayData | None:
        """The whole local day made from the archive's UTC files that cover it (two where the zone is not
        UTC), or None (said in the log) when any of them cannot be used: never half a day from each source."""
        plan = self.store.plan(day)
        today = UTC.local_date(self.client.server_time_ms())
        files, kind = [], self.store.spec.kind_info
        try:
            for utc_day in utc_files(kind, plan.start_ms, plan.end_ms):
                if not ArchiveClient.has(utc_day, today, kind):
                    return self.not_archived(day, "the archive publishes nothing newer than "
                                                  + ("the last month" if kind.events else f"{NEWEST_LAG_DAYS} days"))
                got = self.archive_file(utc_day)
                if got is None:
                    return self.not_archived(day, "not in the archive (404)", asked=True)
                files.append(got)
            staged, checked = (self.encoder.archive_chunk if self.encoder else archive_chunk)(files, plan)
        except (ArchiveUnusable, ExchangeTransient) as exc:  # retries ran out: REST may still answer
            return self.not_archived(day, str(exc), asked=True)
        return DayData(day, None, staged.entry.exchange_gaps, plan.end_ms, staged=staged, checked=checked)

    def archive_file(self, utc_day: dt.date) -> ArchiveDay | None:
        """The verified file of a UTC day, or of a UTC month for funding: a month's file serves each of its
        days, so the stream keeps the last few it read (days come in order)."""
        kind = self.store.spec.kind_info
        if not kind.events:
            return self.archive.day(self.store.spec.symbol, utc_day, kind)
        with self.months_lock:  # one download of a month, whichever of the stream's threads asks first
            if utc_day not in self.months:
                self.months[utc_day] = self.archive.day(self.store.spec.symbol, utc_day, kind)
                while len(self.months) > MONTHS_KEPT:
                    self.months.pop(next(iter(self.months)))
            return self.months[utc_day]

    def not_archived(self, day: dt.date, reason: str, asked: bool = False) -> None:
        """REST takes the day, but with `archive_only`: then it fails. Said in the log when the archive was
        asked."""
        if self.archive_only:
            raise ArchiveUnusable(f"{self.store.spec.name} {day}: {reason} (source archive: no REST)")
        if asked:
            log.info("%s %s from REST: %s", self.store.spec.name, day, reason)

    def fetch_rest(self, day: dt.date, from_ms: int, end_ms: int, attempts: int = 3) -> tuple[Fetched, pa.Table]:
        """The window's pages as a table; rows that cannot be exchange data (NaN, negative, duplicates:
        `value_problem`) are a broken answer: asked again, then the day fails, naming the minute."""
        kind = self.store.spec.kind_info
        for attempt in range(1, attempts + 1):
            if kind.events:
                fetched = self.events_of(from_ms, end_ms, fresh=attempt > 1)
                table = funding_table(fetched.rows)
            else:
                fetched = fetch_window(self.client.source(kind), self.store.spec.symbol, from_ms, end_ms,
                                       self.client.server_time_ms(), self.page)
                table = rows_to_table(fetched.rows)
            problem = value_problem(table, kind)
            if problem is None:
                return fetched, table
            log.warning("%s %s: the exchange sent %s (attempt %d)", self.store.spec.name, day, problem, attempt)
            if attempt < attempts:
                pause(self.client.backoff_s * 2 ** attempt)
        raise ExchangeTransient(f"{self.store.spec.name} {day}: the exchange sent {problem} ({attempts} times): "
                                "not stored")

    def events_of(self, start_ms: int, end_ms: int, fresh: bool = False) -> Fetched:
        """Funding events of a window, from the stream's last answer when it covered the window: one request
        answers up to 1,000 events, so the stream asks for the next `EVENTS_AHEAD` of its days at once (a day
        of 8-hourly funding is three events; 30 days of 450 symbols are 450 requests, not 13,500, in a
        budget of 100 a minute). `fresh`: ask again (a broken answer)."""
        with self.events_lock:
            span, rows = self.events
            if fresh or not span[0] <= start_ms < end_ms <= span[1]:
                last_end = self.store.zone.day_window_ms(max(self.days))[1]
                ahead = min(max(end_ms, last_end), start_ms + EVENTS_AHEAD.days * 86_400_000)
                fetched = fetch_events(self.client, self.store.spec.symbol, start_ms, ahead,
                                       self.client.server_time_ms())
                self.events = ((start_ms, fetched.covered_until_ms), fetched.rows)
                span, rows, requests = self.events[0], fetched.rows, fetched.requests
            else:
                requests = 0
        covered = max(start_ms, min(end_ms, span[1]))
        return Fetched([e for e in rows if start_ms <= e[0] < covered], [], covered, requests)

    def fetch_day(self, day: dt.date) -> DayData:
        """The day's closed rows: the stored chunk extended from its last covered minute, or fetched whole."""
        entry = self.snapshot.chunks.get(self.store.index_of(day))
        raw = self.store.chunk_bytes(entry) if entry is not None else None  # read once: checked, then extended
        intact = raw is not None and len(raw) == entry.bytes and sha256_bytes(raw) == entry.sha256
        if entry is not None and intact and entry.complete:
            return DayData(day, None, entry.exchange_gaps, entry.covered_until_ms, entry=entry,
                           checked=evaluate_day(raw, entry, self.store.spec.kind_info))
        if self.archive is not None and not intact:
            from_archive = self.from_archive(day)
            if from_archive is not None:
                return from_archive
        start_ms, end_ms = self.store.zone.day_window_ms(day)
        old, gaps, from_ms = None, [], start_ms
        if entry is not None and intact and (entry.start_ms, entry.end_ms) == (start_ms, end_ms):
            old, from_ms = pq.read_table(pa.BufferReader(raw)), entry.covered_until_ms
            gaps = [list(g) for g in entry.exchange_gaps]
            if not events_due(self.store.spec.kind_info, from_ms, self.client.server_time_ms()):
                return DayData(day, None, gaps, from_ms, entry=entry)  # funding: no event can have come yet
        fetched, table = self.fetch_rest(day, from_ms, end_ms)
        for gap in fetched.gaps:
            add_gap(gaps, *gap)
        covered = max(from_ms, fetched.covered_until_ms)
        if old is not None:
            if not fetched.rows and covered == entry.covered_until_ms:
                return DayData(day, None, gaps, covered, fetched.requests, entry=entry)
            if old.num_rows:
                column = self.store.spec.kind_info.time_column
                table = table.filter(pc.greater(table[column], old[column][-1]))
            table = pa.concat_tables([old, table])
        return DayData(day, table, gaps, covered, fetched.requests)
