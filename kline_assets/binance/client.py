"""The exchange behind a small interface: raw kline pages, server time, exchangeInfo, through ccxt.

ccxt maps HTTP failures to exception classes by host name, which tells a 451 from a 503 only on
binance.com. We record each response's status and headers ourselves (`on_rest_response`) and decide
retry or final from those, so the same rules hold against any Binance-compatible origin.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import ccxt

from kline_assets.binance.http import CappedSession, HttpFailure, Limits, Stopped, Transport, pause
from kline_assets.binance.limiter import MAX_RETRY_AFTER_S, WeightLimiter
from kline_assets.errors import Banned, ExchangeFinal, ExchangeTransient, UnknownSymbol
from kline_assets.settings import KINDS, Kind, Market

log = logging.getLogger("kline_assets")

# A page of 1,500 klines is ~200 kB and exchangeInfo of every spot symbol some MB: generous caps, so that a
# broken or hostile server cannot fill the memory; every request ends within its deadline (`http`).
REQUEST_DEADLINE_S = 30.0
# fundingRate: "share 500/5min/IP rate limit with GET /fapi/v1/fundingInfo"; counted per minute as a
# fifth of that, which never exceeds it (a 5-minute window holds at most five such minutes)
FUNDING_PER_MINUTE = 100
PAGE_MAX_BYTES = 8 << 20
INFO_MAX_BYTES = 64 << 20


class KlineSource(Protocol):
    market: Market

    def klines(self, symbol: str, start_ms: int, end_ms: int, limit: int) -> list[list]: ...

    def server_time_ms(self) -> int: ...


def kline_weight(market: str, limit: int) -> int:
    """Binance's published weights: spot 2 per page; USD-M and COIN-M by `limit`."""
    if market == "spot":
        return 2
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _recording(cls: type) -> type:
    class Recording(cls):  # type: ignore[misc, valid-type]
        last_status: int | None = None

        def on_rest_response(self, code, reason, url, method, headers, body, req_headers, req_body):
            self.last_status = int(code)
            self.last_response_headers = headers
            return super().on_rest_response(code, reason, url, method, headers, body, req_headers, req_body)

    return Recording


@dataclass
class RequestStats:
    requests: int = 0
    weight: int = 0
    retries: int = 0
    rate_limited: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


def budget_key(origin: str, market: Market) -> str:
    """Binance counts weight (and bans) per API: /api (spot), /fapi (USD-M) and /dapi (COIN-M) have budgets
    of their own, also where one origin serves them all (a mirror, the simulator)."""
    return f"{origin.rstrip('/')} {market.name}"


class BinanceClient:
    """Thread-safe: one ccxt instance per thread. `limiter` counts the weight of `budget_key` (the process's
    one: `binance.shared`)."""

    def __init__(self, market: Market, origin: str, limiter: WeightLimiter, *,
                 timeout_ms: int = int(REQUEST_DEADLINE_S * 1000), max_attempts: int = 8,
                 backoff_s: float = 0.25, funding_limiter: WeightLimiter | None = None) -> None:
        """`timeout_ms`: the deadline of the whole of each request (connect, headers, body).
        `funding_limiter`: the count of `fundingRate` requests, a budget of their own (`FUNDING_PER_MINUTE`)."""
        self.market = market
        deadline_s = timeout_ms / 1000
        self.transport = Transport(Limits(deadline_s, PAGE_MAX_BYTES), connect_timeout_s=min(10.0, deadline_s))
        self.info_limits = Limits(deadline_s, INFO_MAX_BYTES)
        self.origin = origin.rstrip("/")
        self.timeout_ms = timeout_ms
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.budget_key = budget_key(origin, market)
        self.limiter = limiter
        self.funding_limiter = funding_limiter or WeightLimiter(FUNDING_PER_MINUTE)
        self.stats = RequestStats()
        self._ccxt = _recording(getattr(ccxt, market.exchange_id))  # the class of this market's instances
        self._idle: list[Any] = []  # ccxt instances not in a request now (`_instance`)
        self._idle_lock = threading.Lock()
        self._prefix = market.ccxt_api
        self._time_sync: tuple[float, int] | None = None
        self._limits_known = threading.Event()
        self._limits_lock = threading.Lock()

    @contextlib.contextmanager
    def _instance(self) -> Iterator[Any]:
        """A ccxt instance for one request at a time, reused by any thread: building one costs ~5 ms, and a
        live minute runs each dataset in a short-lived thread of its own."""
        with self._idle_lock:
            inst = self._idle.pop() if self._idle else None
        if inst is None:
            urls = {self.market.ccxt_api: self.origin + self.market.api}
            inst = self._ccxt({
                # JSON numbers as numbers, whichever ccxt: up to 4.5.x, without orjson installed, ccxt read
                # them as strings (integer times too); newer ones ignore the flag in Python
                "quoteJsonNumbers": False,
                "enableRateLimit": False, "timeout": self.timeout_ms, "urls": {"api": urls},
                "session": CappedSession(self.transport),
            })
        try:
            yield inst
        finally:
            with self._idle_lock:
                self._idle.append(inst)

    def _call(self, endpoint: str, params: dict, weight: int, limits: Limits | None = None,
              attempts: int | None = None, budget: WeightLimiter | None = None) -> Any:
        """`budget`: the limiter the request counts in, when not the weight's (`funding`)."""
        attempt = 0
        count = budget or self.limiter
        while True:
            banned = max(self.limiter.blocked_until, count.blocked_until) - time.time()
            if banned > MAX_RETRY_AFTER_S:  # e.g. a ban another process on this machine received
                raise Banned(f"{self.origin} asked this IP to wait {banned:.0f}s more (Retry-After after an "
                             "HTTP 418/429); try again after that")
            if count is not self.limiter:
                self.limiter.acquire(0)  # a ban on the origin holds these requests too
            minute = count.acquire(weight)
            with self._instance() as inst:
                inst.last_status, inst.last_response_headers = None, None
                inst.session.limits = limits or self.transport.limits
                try:
                    result = getattr(inst, self._prefix + endpoint)(params)
                    error = None
                except ccxt.BaseError as exc:
                    result, error = None, exc
                status, headers = inst.last_status, inst.last_response_headers or {}
                last_response = inst.last_http_response
            cause = _http_cause(error)
            if isinstance(cause, Stopped):
                raise cause
            self.stats.add(requests=1, weight=weight)
            used = headers.get("X-MBX-USED-WEIGHT-1M") or headers.get("x-mbx-used-weight-1m")
            self.limiter.observe(int(used) if used and str(used).isdigit() else None, minute)
            malformed = _malformed(endpoint, result) if error is None else None
            if error is None and malformed is None:
                return result
            if status in (418, 429):
                self._rate_limited(status, headers, count)
                continue
            if status is not None and 400 <= status < 500:
                raise self._final(status, last_response, params)
            attempt += 1
            self.stats.add(retries=1)
            what = (str(cause) if cause else f"{type(error).__name__} {error}".strip() if error
                    else f"HTTP {status}: {_error_object(result)}" if _error_object(result)
                    else f"HTTP {status} with a malformed body ({malformed})")
            if attempt >= (attempts or self.max_attempts):
                raise ExchangeTransient(f"{self.origin}: {endpoint} failed {attempt} times, last: {what}")
            delay = min(30.0, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            log.warning("transient failure (%s) on %s %s, retry %d in %.2fs", what, self.origin, endpoint,
                        attempt, delay)
            pause(delay)

    def _rate_limited(self, status: int, headers: Any, count: WeightLimiter) -> None:
        """A 429 of a budget of its own (funding) stops that budget's requests; a 418 is a ban of the IP."""
        self.stats.add(rate_limited=1)
        raw = headers.get("Retry-After") or headers.get("retry-after")
        try:
            wait = float(raw) if raw is not None else 60.0
        except ValueError:
            wait = 60.0
        (self.limiter if status == 418 else count).block(wait)
        if wait > MAX_RETRY_AFTER_S:
            kind = "banned this IP (HTTP 418)" if status == 418 else "rate-limited this IP (HTTP 429)"
            raise Banned(f"{self.origin} {kind} for {wait:.0f}s; try again after that")
        log.warning("HTTP %d from %s: sending nothing for %.0fs (Retry-After)", status, self.origin, wait)

    def _final(self, status: int, body: str | None, params: dict) -> ExchangeFinal:
        code, msg = None, body
        try:
            doc = json.loads(body or "")
            code, msg = doc.get("code"), doc.get("msg")
        except (ValueError, AttributeError):
            pass
        if code == -1121:
            symbol = params.get("symbol") or params.get("pair")
            return UnknownSymbol(f"{self.market.name} market does not list {symbol}")
        if status == 451:
            return ExchangeFinal(f"{self.origin} refuses service from this location (HTTP 451)")
        if status == 403:
            return ExchangeFinal(f"{self.origin} blocked the request (HTTP 403, firewall)")
        return ExchangeFinal(f"{self.origin} answered HTTP {status}: {msg}")

    # --- the interface -------------------------------------------------------------------------
    def klines(self, symbol: str, start_ms: int, end_ms: int, limit: int, kind: Kind = KINDS["klines"]) -> list[list]:
        """One page of `kind`'s rows (trade klines, or a futures price kind: docs/binance-kinds.md, same
        weights); index klines are asked by pair, the perpetual's symbol."""
        self.load_rate_limits(symbol)
        asked = symbol.removesuffix(self.market.suffix) if kind.by_pair else symbol  # COIN-M: BTCUSD_PERP's pair BTCUSD
        params = {"pair" if kind.by_pair else "symbol": asked, "interval": "1m", "startTime": int(start_ms),
                  "endTime": int(end_ms), "limit": int(limit)}
        return self._call("Get" + kind.endpoint[0].upper() + kind.endpoint[1:], params,
                          kline_weight(self.market.name, limit))

    def funding(self, symbol: str, start_ms: int, end_ms: int, limit: int) -> list[tuple]:
        """One page of funding events, `(time, rate, mark price or None, None)`, ascending. `fundingRate`
        counts in its own budget (500 requests in 5 minutes per IP, shared with `fundingInfo`), not in the
        weight's (docs/binance-kinds.md)."""
        self.load_rate_limits(symbol)
        params = {"symbol": symbol, "startTime": int(start_ms), "endTime": int(end_ms), "limit": int(limit)}
        page = self._call("GetFundingRate", params, 1, budget=self.funding_limiter)
        return [(row["fundingTime"], row["fundingRate"], row.get("markPrice") or None, None) for row in page]

    def source(self, kind: Kind) -> KlineSource:
        """This client's pages of `kind`, as the pager asks for them."""
        return self if kind.name == "klines" else KindSource(self, kind)

    def load_rate_limits(self, symbol: str | None = None) -> None:
        """Once per client: the REQUEST_WEIGHT budget in force can be lower than the default (shared or
        throttled IPs); an origin without exchangeInfo keeps the default and the used-weight header."""
        if self._limits_known.is_set():
            return
        with self._limits_lock:
            if self._limits_known.is_set():
                return
            try:  # two tries: the default budget and the header serve where exchangeInfo does not
                self.apply_rate_limits(self.exchange_info(symbol, attempts=2))
            except Banned:
                raise
            except (ExchangeFinal, ExchangeTransient) as exc:
                log.info("no rate limits from %s exchangeInfo (%s): budget %d assumed", self.origin, exc,
                         self.limiter.budget)
            self._limits_known.set()

    def apply_rate_limits(self, info: dict) -> None:
        for limit in info.get("rateLimits", []) if isinstance(info, dict) else []:
            kind = (limit.get("rateLimitType"), limit.get("interval"), limit.get("intervalNum", 1))
            if kind == ("REQUEST_WEIGHT", "MINUTE", 1) and int(limit.get("limit", 0)) > 0:
                self.limiter.set_budget(int(limit["limit"]))
        self._limits_known.set()

    def sync_time(self) -> int:
        """Ask the server for its clock (weight 1) and keep the offset; returns the server time.

        An origin without `/time` (some mirrors) leaves us with our own clock, kept a little behind so
        that a minute is only taken for closed once it surely is."""
        try:
            server = int(self._call("GetTime", {}, 1)["serverTime"])
        except ExchangeFinal as exc:
            if isinstance(exc, (UnknownSymbol, Banned)) or "HTTP 4" not in str(exc):
                raise
            log.warning("%s has no usable /time (%s): using the local clock minus 2s", self.origin, exc)
            server = int(time.time() * 1000) - 2000
        except (KeyError, TypeError, ValueError):
            server = int(time.time() * 1000) - 2000
        received = time.time()  # pairing with the receipt, not the send, errs on the early side
        self._time_sync = (received, server)
        self.limiter.offset_s = self.funding_limiter.offset_s = server / 1000 - received
        return server

    def server_time_ms(self) -> int:
        """The server's clock, from a sync at most a minute old; never ahead of the real server time."""
        if self._time_sync is None or time.time() - self._time_sync[0] > 60:
            return self.sync_time()
        received, server = self._time_sync
        return server + int((time.time() - received) * 1000)

    def exchange_info(self, symbol: str | None = None, attempts: int | None = None) -> dict:
        params = {"symbol": symbol} if symbol and self.market.name == "spot" else {}
        weight = (2 if symbol else 20) if self.market.name == "spot" else 1
        return self._call("GetExchangeInfo", params, weight, self.info_limits, attempts)


def _http_cause(error: BaseException | None) -> HttpFailure | None:
    """The transport's own failure behind ccxt's exception (a deadline, a cap, a stopped run), if any."""
    while error is not None:
        if isinstance(error, HttpFailure):
            return error
        error = error.__cause__
    return None


def _error_object(result: Any) -> str | None:
    """An error object where data was due (`{"code": -1001, "msg": ...}` with HTTP 200), in words."""
    if isinstance(result, dict) and "code" in result and "msg" in result:
        return f"error {result.get('code')}: {result.get('msg')}"
    return None


@dataclass
class KindSource:
    """A client's pages of one kind other than trade klines (`BinanceClient.source`): what the pager sees
    is the same interface, so every kind is paged, checked and stored the same way."""

    client: BinanceClient
    kind: Kind

    @property
    def market(self) -> Market:
        return self.client.market

    def klines(self, symbol: str, start_ms: int, end_ms: int, limit: int) -> list[list]:
        return self.client.klines(symbol, start_ms, end_ms, limit, self.kind)

    def server_time_ms(self) -> int:
        return self.client.server_time_ms()


def _malformed(endpoint: str, result: Any) -> str | None:
    """Why an answer cannot be data (None: it can). A page of klines (of any kind) is rows of at least 12
    fields with integer open and close times, strictly ascending, and a page of funding events objects with
    an integer `fundingTime`, strictly ascending, and a `fundingRate`: anything else (a duplicate, a page in
    another order) is a broken answer to retry, never data and never a gap."""
    if endpoint.endswith("FundingRate"):
        return _malformed_events(result)
    if not endpoint.endswith("Klines"):
        return None if isinstance(result, dict) and _error_object(result) is None else "not a JSON object"
    if not isinstance(result, list):
        return _error_object(result) or f"a {type(result).__name__}, not a list of rows"
    last = None
    for row in result:
        if not (isinstance(row, list) and len(row) >= 12 and type(row[0]) is int and type(row[6]) is int):
            return f"a row that is not 12 fields with integer times: {str(row)[:80]}"
        if last is not None and row[0] <= last:
            return f"open_time {row[0]} after {last}: rows not strictly ascending"
        last = row[0]
    return None


def _malformed_events(result: Any) -> str | None:
    if not isinstance(result, list):
        return _error_object(result) or f"a {type(result).__name__}, not a list of funding events"
    last = None
    for row in result:
        if not (isinstance(row, dict) and type(row.get("fundingTime")) is int and row.get("fundingRate") is not None):
            return f"an event without an integer fundingTime and a fundingRate: {str(row)[:80]}"
        if last is not None and row["fundingTime"] <= last:
            return f"fundingTime {row['fundingTime']} after {last}: events not strictly ascending"
        last = row["fundingTime"]
    return None
