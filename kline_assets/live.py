"""Keeping today current: which days a live update must touch, and the foreground loop.

A live update covers every day from the last one that is not complete through today, so a machine
that slept for three days catches up in one run, and the first run after local midnight completes
yesterday. Runs are incremental: an incomplete chunk is extended from its last covered minute.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable

from kline_assets.manifest import Manifest
from kline_assets.timezones import AlignZone

log = logging.getLogger("kline_assets")

LIVE_TAG = "kline_assets/source"
LIVE_VALUE = "live"
AFTER_BOUNDARY_S = 2.0  # the exchange closes a minute a moment after :00; asking at :02 finds it closed


def live_days(manifest: Manifest | None, zone: AlignZone, now_ms: int,
              first_allowed: dt.date) -> tuple[dt.date, dt.date]:
    """[first, today]: from the last incomplete (or the day after the last complete) day through today.

    Today is the earlier of the exchange's and this machine's date, so a clock a few seconds ahead at
    midnight never asks Dagster for a partition it does not have yet."""
    today = min(zone.local_date(now_ms), zone.local_date(int(time.time() * 1000)))
    entries = sorted(manifest.chunks.values(), key=lambda e: e.index) if manifest else []
    first = today
    if entries:
        last = entries[-1]
        last_day = dt.date.fromisoformat(last.partition)
        first = last_day if not last.complete else last_day + dt.timedelta(days=1)
    first = max(min(first, today), first_allowed)
    return first, today


def seconds_to_next_boundary(server_now_ms: int) -> float:
    return (60_000 - server_now_ms % 60_000) / 1000 + AFTER_BOUNDARY_S


class StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current run; a second signal stops at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        log.info("stop requested (signal %d): finishing the current cycle", signum)

    def wait(self, seconds: float) -> bool:
        """Sleep; True when a stop was requested."""
        return self.event.wait(max(0.0, seconds))


def run_loop(cycle: Callable[[], bool], server_now_ms: Callable[[], int], stop: StopFlag, cycles: int = 0) -> int:
    """Run `cycle` now and then shortly after each minute boundary; returns the number of failed cycles."""
    done = failed = 0
    while not stop.event.is_set():
        if not cycle():
            failed += 1
        done += 1
        if cycles and done >= cycles:
            break
        if stop.wait(seconds_to_next_boundary(server_now_ms())):
            break
    return failed
