"""A request-weight limiter shared by every thread that talks to one origin.

Binance counts weight per IP in fixed windows of one server-clock minute and reports the count in
`X-MBX-USED-WEIGHT-1M`. We reserve weight before each request, take the header as a floor after it
(other processes on the IP count too), and stop everyone when a 429/418 says `Retry-After`.
ccxt's own limiter is not used: its sync variant has no lock and assumes half the futures budget.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

SAFETY = 0.97  # share of the budget we plan to use; the rest absorbs clock skew and foreign traffic


class WeightLimiter:
    def __init__(self, budget: int, clock: Callable[[], float] = time.time) -> None:
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

    def acquire(self, weight: int) -> None:
        weight = min(weight, self.cap)
        with self._cond:
            while True:
                if self._clock() < self.blocked_until:  # Retry-After is a duration: our clock will do
                    self._sleep(self.blocked_until - self._clock())
                    continue
                now = self._now()
                minute = int(now // 60)
                if minute != self._minute:
                    self._minute, self._used = minute, 0
                if self._used + weight <= self.cap:
                    self._used += weight
                    return
                self._sleep((minute + 1) * 60 - now + 0.01)

    def _sleep(self, seconds: float) -> None:
        start = time.monotonic()
        self._cond.wait(timeout=max(0.0, seconds))
        self.waited_s += time.monotonic() - start

    def observe(self, used_weight: int | None) -> None:
        if used_weight is None:
            return
        with self._cond:
            if int(self._now() // 60) == self._minute:
                self._used = max(self._used, used_weight)

    def block(self, seconds: float, origin: str | None = None) -> None:
        """Nothing goes to the origin until `seconds` from now have passed (in this process, and in the
        next ones on this machine when `origin` is given: limits and bans are per IP)."""
        with self._cond:
            self.blocked_until = max(self.blocked_until, self._clock() + seconds)
            self._cond.notify_all()
        if origin:
            remember_block(origin, time.time() + seconds)


_LIMITERS: dict[str, WeightLimiter] = {}
_LOCK = threading.Lock()


def _blocks_file() -> Path:
    return Path(os.environ.get("KLINE_STATE_DIR") or tempfile.gettempdir()) / "kline_assets_retry_after.json"


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


def limiter_for(origin: str, budget: int) -> WeightLimiter:
    """One limiter per origin and process, whatever the number of clients; it starts blocked while a
    Retry-After that another process received is still running."""
    with _LOCK:
        if origin not in _LIMITERS:
            limiter = WeightLimiter(budget)
            limiter.blocked_until = max(0.0, remembered_block(origin))
            _LIMITERS[origin] = limiter
        return _LIMITERS[origin]
