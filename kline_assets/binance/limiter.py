"""A request-weight limiter shared by every thread that talks to one origin.

Binance counts weight per IP in fixed windows of one server-clock minute and reports the count in
`X-MBX-USED-WEIGHT-1M`. We reserve weight before each request, in this process and in a count shared
with the other processes (a `Window`: a file under a lock for the processes of one machine, or a row in
the Dagster instance's Postgres for run workers on any number of machines behind one IP, see
`binance.pgwindow`), take the header as a floor after it (traffic we do not count shows there), and stop
everyone when a 429/418 says `Retry-After`.
ccxt's own limiter is not used: its sync variant has no lock and assumes half the futures budget.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from kline_assets.binance.http import Stopped, stopping
from kline_assets.errors import Banned
from kline_assets.store.atomic import locked

log = logging.getLogger("kline_assets")

SAFETY = 0.97  # share of the budget we plan to use; the rest absorbs clock skew and foreign traffic


MAX_RETRY_AFTER_S = 900  # a longer ban (418s can last days) fails the run instead of hanging it
STOP_CHECK_S = 0.25
RECORD = 32  # bytes of "<minute> <used>", space-padded


class Window(Protocol):
    """A minute's weight count and the ban memory of one origin, shared by processes."""

    def reserve(self, minute: int, weight: int, cap: int, floor: int = 0) -> tuple[bool, float]:
        """Add `weight` to `minute`'s count if it stays within `cap` (weight 0: only raise it to `floor`).
        Returns whether it was added, and until when (epoch s) a Retry-After anyone received still runs."""

    def remember_block(self, until: float) -> None:
        """Nobody sends before `until` (epoch s): a 429/418's Retry-After, for every process sharing this."""


class FileWindow:
    """The weight every process of this machine has reserved with one origin in the current minute,
    kept in a tiny file under a lock (`store.atomic.locked`), so a UI backfill, the live sensor's runs and
    a CLI command plan from one count instead of meeting only in the exchange's header (which arrives
    after the fact). Bans are kept in a JSON file beside it (`remember_block`)."""

    def __init__(self, origin: str) -> None:
        digest = hashlib.sha1(origin.encode()).hexdigest()[:16]
        self.origin = origin
        self.warned = False
        self.path = _state_dir() / f"kline_assets_weight_{digest}"
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def reserve(self, minute: int, weight: int, cap: int, floor: int = 0) -> tuple[bool, float]:
        try:
            with locked(self.lock_path):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
                try:
                    stored, used = _parse(os.read(fd, RECORD))
                    if stored > minute:  # another process is already in the next minute (clock skew of ms)
                        minute = stored
                    used = used if stored == minute else 0
                    used = max(used, floor)
                    ok = used + weight <= cap or weight == 0
                    if ok:
                        used += weight
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.write(fd, f"{minute} {used}".ljust(RECORD).encode())  # fixed width: no truncation
                finally:
                    os.close(fd)
        except OSError as exc:
            if not self.warned:  # the process's own count still applies; say once that it is alone
                self.warned = True
                log.warning("no weight count shared with other processes (%s): set KLINE_STATE_DIR to a "
                            "writable folder", exc)
            return True, 0.0
        return ok, 0.0  # a ban is read once, when the limiter starts (`remembered_block`)

    def remember_block(self, until: float) -> None:
        remember_block(self.origin, until)


def _parse(raw: bytes) -> tuple[int, int]:
    try:
        minute, used = raw.split()
        return int(minute), int(used)
    except ValueError:
        return -1, 0


class WeightLimiter:
    def __init__(self, budget: int, clock: Callable[[], float] = time.time,
                 shared: Window | None = None) -> None:
        self.shared = shared  # the count other processes see (`count_in` moves it)
        self._cond = threading.Condition()
        self._clock = clock
        self.offset_s = 0.0  # server clock minus ours, so windows follow the server's minute
        self.set_budget(budget)
        self._minute = -1
        self._used = 0
        self.blocked_until = 0.0
        self.waited_s = 0.0

    def set_budget(self, budget: int) -> None:
        self.budget = max(1, int(budget))
        self.cap = max(1, int(self.budget * SAFETY))

    def _now(self) -> float:
        return self._clock() + self.offset_s

    def acquire(self, weight: int) -> int:
        """Reserve `weight` in the current minute (waiting for a later one if need be); returns the minute."""
        weight = min(weight, self.cap)
        with self._cond:
            while True:
                if self._clock() < self.blocked_until:  # Retry-After is a duration: our clock will do
                    if self.blocked_until - self._clock() > MAX_RETRY_AFTER_S:  # e.g. learnt from another worker
                        raise Banned(f"the exchange asked this IP to wait {self.blocked_until - self._clock():.0f}s "
                                     "more (Retry-After after an HTTP 418/429); try again after that")
                    self._sleep(self.blocked_until - self._clock())
                    continue
                now = self._now()
                minute = int(now // 60)
                if minute != self._minute:
                    self._minute, self._used = minute, 0
                if self._used + weight <= self.cap:
                    granted, banned = (True, 0.0) if self.shared is None else \
                        self.shared.reserve(minute, weight, self.cap)
                    if banned > self.blocked_until:  # another worker (machine) received a Retry-After
                        self.blocked_until = banned
                        if not granted:
                            continue
                    if granted:
                        self._used += weight
                        return minute
                self._sleep((minute + 1) * 60 - now + 0.01)

    def _sleep(self, seconds: float) -> None:
        """Waits of up to a minute (or a Retry-After) end early, in slices, when the run is stopping."""
        start = time.monotonic()
        if stopping():
            raise Stopped("stopped while waiting for the weight budget")
        self._cond.wait(timeout=max(0.0, min(seconds, STOP_CHECK_S)))
        self.waited_s += time.monotonic() - start

    def observe(self, used_weight: int | None, sent_in: int) -> None:
        """`used_weight`: the exchange's count after a request reserved in minute `sent_in`. A request sent
        just before a minute turned reports the old minute's count: taken for the new one's, it would
        stall every thread until the next minute."""
        if used_weight is None:
            return
        with self._cond:
            if sent_in == self._minute == int(self._now() // 60) and used_weight > self._used:
                self._used = used_weight
                if self.shared is not None:  # the shared count holds ours, so only a higher header moves it
                    self.shared.reserve(self._minute, 0, self.cap, floor=used_weight)

    def count_in(self, shared: Window) -> None:
        """From now on the minute's count is kept in `shared` (`binance.shared.limiter`)."""
        with self._cond:
            self.shared = shared

    def block(self, seconds: float) -> None:
        """Nothing goes to the origin until `seconds` from now have passed, in this process and in every
        process sharing its window (limits and bans are per IP)."""
        with self._cond:
            self.blocked_until = max(self.blocked_until, self._clock() + seconds)
            self._cond.notify_all()
        if self.shared is not None:
            self.shared.remember_block(time.time() + seconds)


def _state_dir() -> Path:
    """KLINE_STATE_DIR (created when missing), else the system's temp folder. One that cannot be made
    is said once, by the first count that cannot be kept there."""
    path = Path(os.environ.get("KLINE_STATE_DIR") or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _blocks_file() -> Path:
    return _state_dir() / "kline_assets_retry_after.json"


def remember_block(origin: str, until: float) -> None:
    """Machine-wide: a process started during a ban must not send (repeated violations extend bans)."""
    path = _blocks_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known = {o: t for o, t in known.items() if t > time.time()}
    known[origin] = max(until, known.get(origin, 0))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(known))
        os.replace(tmp, path)
    except OSError:
        pass


def remembered_block(origin: str) -> float:
    try:
        return float(json.loads(_blocks_file().read_text()).get(origin, 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0
