"""A request-weight limiter shared by every thread that talks to one origin.

Binance counts weight per IP in fixed windows of one server-clock minute and reports the count in
`X-MBX-USED-WEIGHT-1M`. We reserve weight before each request, take the header as a floor after it
(other processes on the IP count too), and stop everyone when a 429/418 says `Retry-After`.
ccxt's own limiter is not used: its sync variant has no lock and assumes half the futures budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

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
                now = self._now()
                if now < self.blocked_until:
                    self._sleep(self.blocked_until - now)
                    continue
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

    def block(self, seconds: float) -> None:
        """Nothing goes to the origin until `seconds` from now have passed."""
        with self._cond:
            self.blocked_until = max(self.blocked_until, self._now() + seconds)
            self._cond.notify_all()


_LIMITERS: dict[str, WeightLimiter] = {}
_LOCK = threading.Lock()


def limiter_for(origin: str, budget: int) -> WeightLimiter:
    """One limiter per origin and process, whatever the number of clients."""
    with _LOCK:
        if origin not in _LIMITERS:
            _LIMITERS[origin] = WeightLimiter(budget)
        return _LIMITERS[origin]
