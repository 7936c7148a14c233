"""The day writer: the days of a `DayStream` made part of their dataset, committed in batches as they come.

Dagster calls an IO manager's `handle_output` only once the asset's body has returned, and what it records
then arrives at the end of the step: a range run of 2,000 days would show nothing until it ends, and a
failure on day 12 would lose the record of days 1-11. So the body hands its streams to `write_days`
(through `defs.fleet`): the stream's workers put each day's chunk, and `write_days` commits the manifest
in batches (every `COMMIT_EVERY_DAYS` days or `COMMIT_EVERY_S` seconds, also while a slow day is still
being retried, and once more with whatever is staged when the stream fails) and yields each committed
batch, so the body records those days in Dagster while the run goes on. Batches keep the manifest from
being rewritten per chunk (quadratic over years of days).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kline_assets.binance.days import DayStream
from kline_assets.errors import BadInput
from kline_assets.logs import PROGRESS, Tally
from kline_assets.store.dataset import DatasetStore, Staged, before_start
from kline_assets.store.manifest import ChunkEntry, Manifest

if TYPE_CHECKING:
    import dagster as dg

COMMIT_EVERY_DAYS = 64
COMMIT_EVERY_S = 2.0
PROGRESS_EVERY_S = 5.0


@dataclass
class Progress:
    days: int = 0
    written: int = 0
    rows: int = 0
    requests: int = 0

    def tally(self, stream: DayStream, final: bool = False) -> Tally | str:
        name = stream.store.spec.name
        if final and not self.requests and not self.written:
            return f"{name}: nothing new to fetch, the {self.days} day(s) already hold every closed minute"
        elapsed = max(1e-6, time.monotonic() - stream.started)
        return Tally(name, self.days, len(stream), self.rows, self.days / elapsed * 60,
                     note=f", {self.requests} requests" + (f" ({self.written} written)" if final else ""))


@dataclass
class Committed:
    """Days now part of the dataset, in day order, with their entries, and the manifest holding them."""

    days: list[tuple[dt.date, ChunkEntry]]
    manifest: Manifest
    checked: dict[dt.date, tuple[str, dict]]  # day -> (sha256 of the checked file, its `evaluate_day`)
    written: set[dt.date]  # the days this run wrote (the others were stored already)


class _Batch:
    def __init__(self, store: DatasetStore) -> None:
        self.store = store
        self.days: list[dt.date] = []
        self.staged: list[Staged] = []
        self.checked: dict[dt.date, tuple[str, dict]] = {}
        self.written: set[dt.date] = set()
        self.opened = time.monotonic()

    def due(self) -> bool:
        return bool(self.days) and (len(self.days) >= COMMIT_EVERY_DAYS
                                     or time.monotonic() - self.opened >= COMMIT_EVERY_S)

    def commit(self) -> Committed:
        self.store.commit(self.staged)
        manifest = self.store.manifest()  # an entry another writer made larger meanwhile wins
        done = Committed([(day, e) for day in self.days if (e := manifest.entry_for(day)) is not None], manifest,
                         self.checked, self.written)
        self.days, self.staged, self.checked, self.written, self.opened = [], [], {}, set(), time.monotonic()
        return done


def reporter(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> Callable[[str | Tally], None]:
    """Where a step says how it goes: the run's log in Dagster, and loader.log (and the command line's
    stderr, where a `Tally` may be a redrawn bar: `logs.show_progress`)."""
    progress = logging.getLogger(PROGRESS)

    def report(message: str | Tally) -> None:
        context.log.info(str(message))
        progress.info("%s", message, extra={"tally": message} if isinstance(message, Tally) else None)

    return report


def write_days(stream: DayStream, report: Callable[[str | Tally], None] | None = None) -> Iterator[Committed]:
    """Write every day of `stream`, yielding each committed batch. On failure the days staged so far
    are committed (and yielded) before the error goes on; `report` receives progress lines."""
    store = stream.store
    batch, progress = _Batch(store), Progress()
    last_report = time.monotonic()
    try:
        for data in stream:
            if data is not None:
                progress.days += 1
                progress.requests += data.requests
                if data.staged is None:
                    progress.rows += data.entry.rows if data.entry else 0
                else:
                    batch.staged.append(data.staged)
                    batch.written.add(data.day)
                    progress.written += 1
                    progress.rows += data.staged.entry.rows
                batch.days.append(data.day)
                written = data.staged.entry if data.staged else data.entry
                if data.checked is not None and written is not None:
                    batch.checked[data.day] = (written.sha256, data.checked)
            if batch.due():
                yield batch.commit()
            if report and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                last_report = time.monotonic()
                report(progress.tally(stream))
    except GeneratorExit:  # the consumer went away: keep the work, there is no one to tell
        if batch.days:
            batch.commit()
        raise
    except BaseException:  # a day failed, or the run was interrupted: keep and report what is done
        if batch.days:
            yield batch.commit()
        raise
    if batch.days:
        yield batch.commit()
    if store.refused:
        raise BadInput(before_start(store.spec.name, min(store.refused), store.manifest().start_date))
    if report:
        report(progress.tally(stream, final=True))
