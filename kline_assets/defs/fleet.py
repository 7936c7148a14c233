"""Many datasets in one step: each dataset's `DayStream` written by `writer.write_days` in a
driver thread, a few datasets of each market at a time, committed batches handed to the step's thread,
which records them in Dagster as they come.

Why one step for all datasets: a live update of 200 datasets is 200 tiny fetches; a step (a process,
a code-location load) per dataset made each live run last a minute. Here the datasets of a market share
its client, so they share one weight budget, and futures and spot fetch at the same time (separate
budgets). How many datasets run at once follows from how many days each has: about 32 fetching threads
per market, so a live minute runs 32 datasets at once and a long REST backfill four (the archive's
streams have 16 threads each: two), and memory stays bounded whatever the number of datasets.

A dataset that fails does not stop the others; the step fails at the end naming each failed dataset
and why (`FleetFailure`), after every committed day of every dataset was recorded.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from kline_assets.binance.days import DayStream
from kline_assets.binance.encoding import Encoder
from kline_assets.defs.resources import ExchangeResource
from kline_assets.defs.writer import PROGRESS_EVERY_S, Committed, write_days
from kline_assets.logs import Tally
from kline_assets.store.dataset import DatasetStore, before_start

log = logging.getLogger("kline_assets")
_DONE = object()


class FleetFailure(Exception):
    """Some datasets failed; the message names each with its reason."""

    def __init__(self, failures: list[tuple[str, str]], total: int) -> None:
        self.failures = failures
        named = "".join(f"\n  {name}: {reason}" for name, reason in failures)
        super().__init__(f"{len(failures)} of {total} dataset(s) failed:{named}")


class Mailbox:
    """Committed batches from the driver threads to the step's thread, at most `limit` waiting.

    Not a `queue.Queue`: the step's thread takes Dagster's interrupt (SIGINT, SIGTERM, the parent-death
    signal of a killed command) as an exception wherever it is, and one landing inside `Queue.get` can leave
    the queue's lock held; every driver then blocks for ever in `put`, and the step process outlives the
    command (seen once in `test_kill_9_of_backfill_all_...`). A deque's append and popleft take no lock of
    Python's; both sides wait by polling, a few ms at a time."""

    POLL_S = 0.005

    def __init__(self, limit: int) -> None:
        self.items: deque = deque()
        self.limit = limit
        self.closed = False  # nobody takes anything any more: `put` drops it

    def put(self, item) -> None:
        while len(self.items) >= self.limit and not self.closed:
            time.sleep(self.POLL_S)
        if not self.closed:
            self.items.append(item)

    def get(self, timeout: float):
        """The oldest item, or None after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while not self.items:
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.POLL_S)
        return self.items.popleft()


@dataclass
class Work:
    store: DatasetStore
    days: list[dt.date]


def work_for(store: DatasetStore, days: list[dt.date], report: Callable[[str], None]) -> Work | None:
    """The days of `days` a dataset has (a stored dataset keeps its own first day; `report` says so)."""
    own = [day for day in days if day >= store.start]
    if len(own) < len(days):
        report(before_start(store.spec.name, days[0], store.start))
    return Work(store, own) if own else None


@dataclass
class FleetProgress:
    datasets: int
    total_days: int
    done: int = 0
    days: int = 0
    rows: int = 0
    started: float = 0.0

    label: str = "all markets"  # the market, when all datasets are of one

    def tally(self) -> Tally:
        elapsed = max(1e-6, time.monotonic() - self.started)
        return Tally(self.label, self.days, self.total_days, self.rows, self.days / elapsed * 60,
                     (self.done, self.datasets))


IN_FLIGHT = 32  # fetching threads per market, in all datasets run at once


def datasets_at_once(exchange: ExchangeResource, work: list[Work]) -> int:
    """Datasets of one market fetched at once: ~`IN_FLIGHT` threads busy in all, and never fewer than two
    datasets, so one's start-up and commit overlap another's fetching."""
    per_stream = exchange.archive_workers if exchange.source != "rest" else exchange.workers
    longest = max((len(w.days) for w in work), default=1)
    return max(2, IN_FLIGHT // max(1, min(per_stream, longest)))


class Drivers:
    """The threads that drive each dataset's stream (a pool per market, `datasets_at_once` datasets each)
    and what the run's streams share: each market's archive client and the run's `Encoder`. Each driver
    puts its dataset's committed batches, then `_DONE` or its error, into `out`."""

    def __init__(self, exchange: ExchangeResource, work: list[Work], report: Callable[[str | Tally], None]) -> None:
        self.exchange, self.report = exchange, report
        self.out = Mailbox(256)
        self.stopping = threading.Event()
        self.archives = {m: exchange.archive(m) for m in {w.store.spec.market for w in work}}
        self.encoder = Encoder()  # the run's archive days are made on the other cores
        self.streams: list[DayStream] = []
        self.pools: list[ThreadPoolExecutor] = []
        self.futures: list[Future] = []
        by_market: dict[str, list[Work]] = {}
        for item in work:
            by_market.setdefault(item.store.spec.market, []).append(item)
        for market, items in by_market.items():
            self.pools.append(ThreadPoolExecutor(datasets_at_once(exchange, items),
                                                 thread_name_prefix=f"fleet-{market}"))
            self.futures += [self.pools[-1].submit(self.drive, item) for item in items]

    def drive(self, item: Work) -> None:
        if self.stopping.is_set():
            self.out.put((item.store, _DONE))
            return
        try:
            stream = self.exchange.day_stream(item.store, item.days, self.archives[item.store.spec.market],
                                              self.encoder)
            self.streams.append(stream)
            if self.stopping.is_set():
                stream.stop()
            batches = write_days(stream, report=self.report)
            for batch in batches:
                self.out.put((item.store, batch))
                if self.stopping.is_set():
                    batches.close()  # commits what is staged
                    break
        except BaseException as exc:
            self.out.put((item.store, exc))
            return
        self.out.put((item.store, _DONE))

    def halt(self) -> None:
        """Every stream ends now: requests in flight too; the days already staged are committed."""
        self.stopping.set()
        for stream in list(self.streams):
            stream.stop()

    def wind_down(self) -> Iterator[tuple[DatasetStore, Committed]]:
        """After `halt`: datasets not started are dropped, running ones commit and end; their batches come
        out."""
        for future in self.futures:
            future.cancel()
        while not all(f.done() for f in self.futures) or self.out.items:
            store, got = self.out.get(timeout=0.2) or (None, None)
            if isinstance(got, Committed):
                yield store, got

    def close(self) -> None:
        self.out.closed = True  # whatever ended the run, no driver waits for room any more
        self.encoder.close()

    def join(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True)


def run_fleet(exchange: ExchangeResource, work: list[Work],
              report: Callable[[str | Tally], None]) -> Iterator[tuple[DatasetStore, Committed]]:
    """Every committed batch of every dataset, as it commits; raises `FleetFailure` at the end when any
    dataset failed. One dataset reports its own progress lines; several report one line for all."""
    single = len(work) == 1
    markets = {w.store.spec.market for w in work}
    progress = FleetProgress(len(work), sum(len(w.days) for w in work), started=time.monotonic(),
                             label=markets.pop() if len(markets) == 1 else "all markets")
    drivers = Drivers(exchange, work, report if single else _log_line)
    failures: list[tuple[str, BaseException]] = []
    try:
        yield from _collect(drivers, len(work), progress, failures, None if single else report)
    except GeneratorExit:  # the consumer went away: drivers commit what they staged, no one is told
        drivers.halt()
        for _ in drivers.wind_down():
            pass
        raise
    except BaseException:  # interrupted: drivers commit what they staged; record it, then stop
        drivers.halt()
        yield from drivers.wind_down()
        raise
    finally:
        drivers.close()
    drivers.join()
    if not single:
        report(progress.tally())
    if single and failures:
        raise failures[0][1]  # one dataset: its own error, as it always was
    if failures:
        raise FleetFailure([(name, _reason(exc)) for name, exc in failures], len(work))


def _collect(drivers: Drivers, pending: int, progress: FleetProgress, failures: list[tuple[str, BaseException]],
             report: Callable[[str | Tally], None] | None) -> Iterator[tuple[DatasetStore, Committed]]:
    """The drivers' batches as they come, until every dataset is done; failures noted, not raised;
    `report`: the fleet's progress every `PROGRESS_EVERY_S`."""
    last_report = time.monotonic()
    while pending:
        store, got = drivers.out.get(timeout=0.5) or (None, None)
        if isinstance(got, Committed):
            progress.days += len(got.days)
            progress.rows += sum(entry.rows for _, entry in got.days)
            yield store, got
        elif got is _DONE or isinstance(got, BaseException):
            pending -= 1
            progress.done += 1
            if isinstance(got, BaseException):
                failures.append((store.spec.name, got))
                log.error("%s failed", store.spec.name, exc_info=got)
        if report and time.monotonic() - last_report >= PROGRESS_EVERY_S:
            last_report = time.monotonic()
            report(progress.tally())


def recording(fleet: Generator[tuple[DatasetStore, Committed], None, None],
              record: Callable[[DatasetStore, Committed], Iterator]) -> Iterator:
    """`record`'s events for each batch of `fleet` (a `run_fleet`), as it commits. Ctrl-C or SIGTERM may
    land while `record` runs rather than inside the fleet: the fleet is then stopped with the same error, so
    its drivers commit what they staged, and those batches are recorded too before the error goes on."""
    try:
        for store, batch in fleet:
            yield from record(store, batch)
    except GeneratorExit:
        raise
    except BaseException as exc:
        try:
            got = fleet.throw(exc)  # the fleet's own interrupt path: halt, then the batches committed meanwhile
            while True:
                yield from record(*got)
                got = next(fleet)
        except BaseException as after:
            if after is not exc and not isinstance(after, StopIteration):
                raise
        raise


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


def _log_line(line: str | Tally) -> None:
    log.info("%s", line)
