"""What a process shares between its runs and threads: one weight limiter per origin and API (and one of
its `fundingRate` requests, a budget of their own), and one
client per market, origin and retry settings. Nothing else of ours outlives a run (each run makes its own
archive clients and encoder pool).

Lifetime: the process's. Binance counts weight per IP and API, and a process may run for days (a code
server, the daemon's sensor, `kline-assets live`) with runs one after another and side by side: a count
started afresh per run would know nothing of the weight the minute has already spent. So every client of
an origin plans from the process's one `WeightLimiter`, which also meets the other processes through its
window (a file in `KLINE_STATE_DIR`, or the Dagster instance's Postgres once a run on such an instance asks
for it: `binance.pgwindow`). Clients are kept for their kept-alive connections and ccxt instances.
Tests that want a private count build a `BinanceClient` with a `WeightLimiter` of their own.
"""

from __future__ import annotations

import threading

from kline_assets.binance.client import FUNDING_PER_MINUTE, BinanceClient, budget_key
from kline_assets.binance.limiter import FileWindow, WeightLimiter, remembered_block
from kline_assets.binance.pgwindow import PostgresWindow
from kline_assets.settings import MARKETS, Settings

DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_ATTEMPTS = 8

_LOCK = threading.Lock()
_LIMITERS: dict[str, WeightLimiter] = {}
_CLIENTS: dict[tuple, BinanceClient] = {}


def limiter(key: str, budget: int, shared_url: str | None = None) -> WeightLimiter:
    """The process's limiter of one origin and API (`budget_key`), counting with the other processes of the
    machine, or, given the Postgres URL of the Dagster instance, with every worker of that instance (the
    first run that brings one moves the process's count there); it starts blocked while another process's
    Retry-After still runs."""
    with _LOCK:
        found = _LIMITERS.get(key)
        if found is None:
            found = _LIMITERS[key] = WeightLimiter(budget, shared=FileWindow(key))
            found.blocked_until = max(0.0, remembered_block(key))
        if shared_url and not isinstance(found.shared, PostgresWindow):
            found.count_in(PostgresWindow(shared_url, key, fallback=found.shared))
        return found


def client(market: str, origin: str, timeout_ms: int = DEFAULT_TIMEOUT_MS, max_attempts: int = DEFAULT_ATTEMPTS,
           shared_url: str | None = None) -> BinanceClient:
    """The process's client of `market` at `origin` (`shared_url`: see `limiter`)."""
    info = MARKETS[market]
    count = limiter(budget_key(origin, info), info.default_budget, shared_url)
    funding = limiter(budget_key(origin, info) + " fundingRate", FUNDING_PER_MINUTE, shared_url)
    key = (market, origin.rstrip("/"), timeout_ms, max_attempts)
    with _LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = BinanceClient(info, origin, count, timeout_ms=timeout_ms, max_attempts=max_attempts,
                                          funding_limiter=funding)
        return _CLIENTS[key]


def client_of(settings: Settings, market: str, **retries: int) -> BinanceClient:
    """`client` at the origin `settings` give `market` (the command line's; a run's comes from its exchange
    resource); `retries`: `timeout_ms`, `max_attempts`."""
    return client(market, settings.origin(market), **retries)
