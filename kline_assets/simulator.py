"""A local Binance-compatible REST server for tests and offline demos.

It follows the real API where users meet it: `/api/v3/klines` and `/fapi/v1/klines` (limits 1000 and
1500, weights, the still-open current minute), listing times, exchange-side gaps that never fill,
`X-MBX-USED-WEIGHT-1M`, 429 + `Retry-After` over budget and 418 for clients that keep going, -1121
for unknown symbols. Faults (5xx, resets, truncated bodies, 451) and latency are switchable at run
time through `POST /_sim/config`; `GET /_sim/stats` reports what it served.

Run it: `kline-assets simulate --port 8099` or `python -m kline_assets.simulator --port 8099`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MINUTE = 60_000


def _ms(iso: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(iso).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


# symbol -> listing time per market; gaps are [from, to) in ms, as Binance shows them on spot BTCUSDT
LISTINGS = {
    "spot": {"BTCUSDT": _ms("2017-08-17T04:00"), "ETHUSDT": _ms("2017-08-17T04:00"),
             "BNBUSDT": _ms("2017-11-06T03:54"), "SOLUSDT": _ms("2020-08-11T06:00")},
    "futures": {"BTCUSDT": _ms("2019-09-08T17:57"), "ETHUSDT": _ms("2019-11-27T07:38"),
                "BNBUSDT": _ms("2020-02-10T08:12"), "SOLUSDT": _ms("2020-09-14T07:00")},
}
GAPS = {
    "spot": [(_ms("2020-02-19T11:35"), _ms("2020-02-19T17:30")), (_ms("2021-04-25T04:00"), _ms("2021-04-25T08:45")),
             (_ms("2023-03-24T12:39"), _ms("2023-03-24T14:00"))],
    "futures": [(_ms("2020-02-19T11:35"), _ms("2020-02-19T17:30"))],
}


def _units(*parts: object) -> tuple[float, ...]:
    """Four deterministic numbers in [0, 1) from one hash (a row needs a few; hashing is the cost)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=32).digest()
    return tuple(int.from_bytes(digest[i:i + 8], "big") / 2**64 for i in range(0, 32, 8))


@functools.lru_cache(maxsize=64)
def _base(symbol: str) -> float:
    return 100.0 + 900.0 * _units(symbol)[0]


@functools.lru_cache(maxsize=8192)
def _price(market: str, symbol: str, t: int) -> float:
    base = _base(symbol)
    hours = t / 3_600_000
    return base * (1 + 0.2 * ((hours / 97) % 1) + 0.01 * _units(market, symbol, t // MINUTE)[0])


def kline_row(market: str, symbol: str, open_time: int, now_ms: int | None = None) -> list:
    """The row the simulator serves for `open_time`; an open minute shows only what has traded so far."""
    dec = 8 if market == "spot" else 2
    progress = 1.0 if now_ms is None else min(1.0, max(0.0, (now_ms - open_time) / MINUTE))
    o = _price(market, symbol, open_time)
    c = o + (_price(market, symbol, open_time + MINUTE) - o) * progress
    uh, ul, uv, ut = _units("row", symbol, open_time)
    h = max(o, c) * (1 + 0.002 * uh)
    low = min(o, c) * (1 - 0.002 * ul)
    vol = round(50 * uv * progress, 3)
    taker = round(vol * ut, 3)
    trades = int(2000 * ((uh + uv) % 1) * progress)
    f = f"{{:.{dec}f}}"
    return [open_time, f.format(o), f.format(h), f.format(low), f.format(c), f"{vol:.3f}",
            open_time + MINUTE - 1, f"{vol * (o + c) / 2:.{dec}f}", trades, f"{taker:.3f}",
            f"{taker * (o + c) / 2:.{dec}f}", "0"]


@dataclass
class SimConfig:
    spot_budget: int = 6000
    futures_budget: int = 2400
    latency_ms: float = 0.0
    fault_rate: float = 0.0  # share of kline responses that fail (500/503, reset, truncated, html)
    restricted: bool = False  # answer 451 to everything, as Binance does for restricted locations
    ban_after: int = 2  # requests inside a Retry-After window tolerated before a ban (418)
    ban_seconds: int = 120
    clock_offset_ms: int = 0  # shift the simulated clock (a midnight is then near)
    clock_speed: float = 1.0  # 60 = one simulated minute per real second
    seed: int = 1
    extra_gaps: list = field(default_factory=list)  # [[market, symbol, from_ms, to_ms], ...]
    missing_endpoints: list = field(default_factory=list)  # e.g. ["time", "exchangeInfo"]: answered 404
    odd_minutes: list = field(default_factory=list)  # open times served as early Binance data looks:
    # 3 s off the minute, high below open (stored as sent, flagged by the checks)


class SimState:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.rng = random.Random(config.seed)
        self.anchor = (time.time() * 1000, time.time() * 1000)
        self.weights: dict[tuple[str, int], int] = {}
        self.banned_until: dict[str, float] = {}
        self.over_budget: dict[str, int] = {}
        self.retry_until: dict[str, float] = {}
        self.log: list[dict] = []

    def now_ms(self) -> int:
        real = time.time() * 1000
        return int(self.anchor[1] + (real - self.anchor[0]) * self.config.clock_speed + self.config.clock_offset_ms)

    def gaps(self, market: str, symbol: str) -> list[tuple[int, int]]:
        extra = [(a, b) for m, s, a, b in self.config.extra_gaps if m == market and s == symbol]
        return (GAPS[market] if symbol == "BTCUSDT" else []) + extra

    def row(self, market: str, symbol: str, t: int, now_ms: int | None = None) -> list:
        row = kline_row(market, symbol, t, now_ms)
        if t in self.config.odd_minutes:
            row[0], row[6] = t + 3000, t + 3000 + MINUTE - 1
            row[2] = row[3]  # high = low, below open
        return row

    def klines(self, market: str, symbol: str, start: int | None, end: int | None, limit: int) -> list:
        now = self.now_ms()
        first = LISTINGS[market][symbol]
        current = now // MINUTE * MINUTE
        hi = current if end is None else min(current, end // MINUTE * MINUTE)
        lo = max(first, hi - (limit - 1) * MINUTE) if start is None else max(first, -(-start // MINUTE) * MINUTE)
        gaps = self.gaps(market, symbol)
        rows, t = [], lo
        while t <= hi and len(rows) < limit:
            gap = next((g for g in gaps if g[0] <= t < g[1]), None)
            if gap:
                t = gap[1]
                continue
            rows.append(self.row(market, symbol, t, now if t == current else None))
            t += MINUTE
        if start is None and end is not None:
            rows = rows[-limit:]
        return rows


def rate_limits(budget: int) -> list[dict]:
    return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": budget},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000}]


class Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # else small responses stall ~40 ms on loopback
    protocol_version = "HTTP/1.1"
    state: SimState  # set on the subclass made by `make_server`

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: object, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        st = self.state
        if self.path.startswith("/_sim/config"):
            with st.lock:
                for k, v in body.items():
                    if not hasattr(st.config, k):
                        return self._send(400, {"error": f"unknown setting {k}"})
                    setattr(st.config, k, v)
            return self._send(200, asdict(st.config))
        if self.path.startswith("/_sim/reset"):
            with st.lock:
                st.log.clear()
                st.weights.clear()
                st.banned_until.clear()
                st.over_budget.clear()
                st.retry_until.clear()
            return self._send(200, {})
        self._send(404, {"code": -1, "msg": "not found"})

    def do_GET(self) -> None:
        st = self.state
        url = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/_sim/stats":
            with st.lock:
                return self._send(200, {"requests": list(st.log), "now_ms": st.now_ms()})
        market = "spot" if url.path.startswith("/api/v3/") else "futures" if url.path.startswith("/fapi/v1/") else None
        endpoint = url.path.rsplit("/", 1)[-1]
        known = {"ping", "time", "exchangeInfo", "klines"} - set(st.config.missing_endpoints)
        if market is None or endpoint not in known:
            return self._send(404, {"code": -1, "msg": f"unknown path {url.path}"})
        if st.config.latency_ms:
            time.sleep(st.config.latency_ms / 1000)
        try:
            weight, status, body = self._answer(market, endpoint, q)
        except (ValueError, KeyError) as exc:
            weight, status, body = 1, 400, {"code": -1100, "msg": f"Illegal characters found in a parameter: {exc}"}
        self._account(market, endpoint, weight, status, body)

    def _answer(self, market: str, endpoint: str, q: dict) -> tuple[int, int, object]:
        st = self.state
        if endpoint == "ping":
            return 1, 200, {}
        if endpoint == "time":
            return 1, 200, {"serverTime": st.now_ms()}
        symbols = LISTINGS[market]
        if endpoint == "exchangeInfo":
            wanted = q.get("symbol")
            if wanted and wanted not in symbols:
                return 20, 400, {"code": -1121, "msg": "Invalid symbol."}
            chosen = [wanted] if wanted else sorted(symbols)
            info = [{"symbol": s, "status": "TRADING", "baseAsset": s[:-4], "quoteAsset": s[-4:],
                     "onboardDate": symbols[s]} for s in chosen]
            budget = st.config.spot_budget if market == "spot" else st.config.futures_budget
            return (20 if market == "spot" else 1), 200, {
                "timezone": "UTC", "serverTime": st.now_ms(), "rateLimits": rate_limits(budget), "symbols": info}
        limit = int(q.get("limit", 500))
        max_limit = 1000 if market == "spot" else 1500
        weight = 2 if market == "spot" else (1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10)
        if q.get("interval") != "1m":
            return weight, 400, {"code": -1120, "msg": "Invalid interval."}
        if not 1 <= limit <= max_limit:
            return weight, 400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
        if q.get("symbol") not in symbols:
            return weight, 400, {"code": -1121, "msg": "Invalid symbol."}
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        if start is not None and end is not None and start > end:
            return weight, 400, {"code": -1023, "msg": "Start time is greater than end time."}
        return weight, 200, st.klines(market, q["symbol"], start, end, limit)

    def _account(self, market: str, endpoint: str, weight: int, status: int, body: object) -> None:
        st = self.state
        now = time.time()
        minute = int(st.now_ms() // MINUTE)
        headers: dict = {}
        fault = None
        with st.lock:
            budget = st.config.spot_budget if market == "spot" else st.config.futures_budget
            used = st.weights.get((market, minute), 0)
            if st.config.restricted:
                status, body = 451, {"code": 0, "msg": "Service unavailable from a restricted location."}
            elif st.banned_until.get(market, 0) > now:
                status = 418
                headers["Retry-After"] = math.ceil(st.banned_until[market] - now)
                body = {"code": -1003, "msg": "Way too many requests; IP banned."}
            elif used + weight > budget or st.retry_until.get(market, 0) > now:
                if st.retry_until.get(market, 0) > now:  # the client ignored our Retry-After
                    st.over_budget[market] = st.over_budget.get(market, 0) + 1
                if st.over_budget.get(market, 0) > st.config.ban_after:
                    st.banned_until[market] = now + st.config.ban_seconds
                    status, headers["Retry-After"] = 418, st.config.ban_seconds
                    body = {"code": -1003, "msg": "Way too many requests; IP banned."}
                else:
                    # seconds until the weight window turns, in real seconds even on a fast clock
                    left = (MINUTE - st.now_ms() % MINUTE) / 1000 / st.config.clock_speed
                    retry = max(1, math.ceil(left))
                    st.retry_until[market] = max(st.retry_until.get(market, 0), now + retry)
                    status, headers["Retry-After"] = 429, retry
                    body = {"code": -1003, "msg": "Too much request weight used; please use WebSocket Streams."}
            else:
                used += weight
                st.weights[(market, minute)] = used
                if endpoint == "klines" and status == 200 and st.rng.random() < st.config.fault_rate:
                    fault = st.rng.choice(["500", "503", "reset", "truncated", "html"])
            headers["X-MBX-USED-WEIGHT-1M"] = used
            st.log.append({"t": now, "market": market, "endpoint": endpoint, "status": status,
                           "weight": weight, "fault": fault, "retry_after": headers.get("Retry-After")})
            del st.log[:-200_000]
        if fault == "reset":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault in ("500", "503"):
            return self._send(int(fault), {"code": -1001, "msg": "Internal error; unable to process your request."})
        if fault == "truncated":
            raw = json.dumps(body).encode()
            return self._send(200, None, headers, raw=raw[: max(1, len(raw) // 2)])
        if fault == "html":
            return self._send(200, None, headers, raw=b"<html><body>502 Bad Gateway</body></html>")
        self._send(status, body, headers)


def make_server(host: str = "127.0.0.1", port: int = 0, config: SimConfig | None = None) -> ThreadingHTTPServer:
    state = SimState(config or SimConfig())
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.state = state  # type: ignore[attr-defined]
    return server


class RunningSimulator:
    """`with RunningSimulator() as sim:` serves on a free loopback port in a background thread."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.server = make_server(config=config)
        self.state: SimState = self.server.state  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RunningSimulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kline-assets simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--spot-budget", type=int, default=6000)
    parser.add_argument("--futures-budget", type=int, default=2400)
    parser.add_argument("--clock-offset-ms", type=int, default=0)
    parser.add_argument("--clock-speed", type=float, default=1.0)
    args = parser.parse_args(argv)
    config = SimConfig(spot_budget=args.spot_budget, futures_budget=args.futures_budget, latency_ms=args.latency_ms,
                       fault_rate=args.fault_rate, clock_offset_ms=args.clock_offset_ms, clock_speed=args.clock_speed)
    server = make_server(args.host, args.port, config)
    print(f"Binance-compatible simulator on http://{args.host}:{server.server_address[1]} "
          f"(spot /api/v3, futures /fapi/v1); Ctrl-C stops it", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
