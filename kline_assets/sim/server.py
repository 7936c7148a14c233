"""A local Binance-compatible REST server for tests and offline demos.

It follows the real API where users meet it: `/api/v3/klines` and `/fapi/v1/klines` (limits 1000 and
1500, weights, the still-open current minute), the futures price klines `markPriceKlines`,
`indexPriceKlines` (asked by `pair`) and `premiumIndexKlines` (docs/binance-kinds.md), listing times,
exchange-side gaps that never fill, `X-MBX-USED-WEIGHT-1M`, 429 + `Retry-After` over budget and 418 for
clients that keep going, -1121 for unknown symbols. Faults (5xx, resets, truncated bodies, 451) and
latency are switchable at run time through `POST /_sim/config`; `GET /_sim/stats` reports what it served.

Run it: `kline-assets simulate --port 8099` or `python -m kline_assets.sim.server --port 8099`.
"""


from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from kline_assets.sim import archive
from kline_assets.sim.market import (  # re-exported: tests and demos import them from here
    GAPS,
    LISTINGS,
    MINUTE,
    PRICE_KINDS,
    SimConfig,
    SimState,
    kline_row,
    rate_limits,
)

__all__ = ["GAPS", "LISTINGS", "MINUTE", "RunningSimulator", "SimConfig", "SimState", "kline_row", "make_server",
           "rate_limits"]

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
                st.funding_asked.clear()
            return self._send(200, {})
        self._send(404, {"code": -1, "msg": "not found"})

    def do_GET(self) -> None:
        st = self.state
        url = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/_sim/stats":
            with st.lock:
                return self._send(200, {"requests": list(st.log), "now_ms": st.now_ms()})
        if url.path.startswith("/data/"):  # the public archive: no weight, no limits
            if st.config.latency_ms:
                time.sleep(st.config.latency_ms / 1000)
            status, data = archive.answer(st, url.path)
            with st.lock:
                st.log.append({"t": time.time(), "market": "archive", "endpoint": url.path.rsplit("/", 1)[-1],
                               "status": status, "weight": 0, "fault": None, "retry_after": None})
            return self._send(status, None, raw=data)
        market = next((m for p, m in APIS.items() if url.path.startswith(p)), None)
        endpoint = url.path.rsplit("/", 1)[-1]
        known = {"ping", "time", "exchangeInfo", "klines", *(() if market == "spot" else (*PRICE_KINDS, "fundingRate"))}
        known -= set(st.config.missing_endpoints)
        if market is None or endpoint not in known:
            return self._send(404, {"code": -1, "msg": f"unknown path {url.path}"})
        if st.config.latency_ms:
            time.sleep(st.config.latency_ms / 1000)
        try:
            weight, status, body = self._answer(market, endpoint, q)
        except (ValueError, KeyError) as exc:
            weight, status, body = 1, 400, {"code": -1100, "msg": f"Illegal characters found in a parameter: {exc}"}
        self._account(market, endpoint, weight, status, body, q.get("symbol") or q.get("pair"))

    def _answer(self, market: str, endpoint: str, q: dict) -> tuple[int, int, object]:
        st = self.state
        if endpoint == "ping":
            return 1, 200, {}
        if endpoint == "time":
            return 1, 200, {"serverTime": st.now_ms()}
        symbols = st.listings(market)
        if endpoint == "exchangeInfo":
            wanted = q.get("symbol")
            if wanted and wanted not in symbols:
                return 20, 400, {"code": -1121, "msg": "Invalid symbol."}
            chosen = [wanted] if wanted else sorted(symbols)
            info = [st.symbol_info(market, s) for s in chosen]
            return (20 if market == "spot" else 1), 200, {
                "timezone": "UTC", "serverTime": st.now_ms(), "rateLimits": rate_limits(st.budget(market)),
                "symbols": info}
        if endpoint == "fundingRate":  # USD-M: its own 500/5min budget (`_account`), no weight; COIN-M: weight 1
            weight, limit = (0 if market == "futures" else 1), int(q.get("limit", 100))
            if q.get("symbol") not in symbols:
                return weight, 400, {"code": -1121, "msg": "Invalid symbol."}
            if not 1 <= limit <= 1000:
                return weight, 400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
            return weight, 200, st.funding(market, q["symbol"], start, end, limit)
        limit = int(q.get("limit", 500))
        max_limit = 1000 if market == "spot" else 1500
        weight = 2 if market == "spot" else (1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10)
        if q.get("interval") != "1m":
            return weight, 400, {"code": -1120, "msg": "Invalid interval."}
        if not 1 <= limit <= max_limit:
            return weight, 400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
        kind = PRICE_KINDS.get(endpoint, "klines")
        symbol = q.get("pair" if kind == "index" else "symbol")  # index klines are asked by pair
        if kind == "index" and market == "coinm":
            symbol = f"{symbol}_PERP"  # a COIN-M pair (BTCUSD): its perpetual's rows
        if symbol not in symbols or [market, symbol] in st.config.unserved:
            return weight, 400, {"code": -1121, "msg": "Invalid symbol."}
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        if start is not None and end is not None and start > end:
            return weight, 400, {"code": -1023, "msg": "Start time is greater than end time."}
        if any(m == market and a <= (start or 0) < b for m, a, b in st.config.failing_windows):
            return weight, 500, {"code": -1001, "msg": "Internal error; unable to process your request."}
        return weight, 200, st.klines(market, symbol, start, end, limit, kind)

    def _funding_allowed(self) -> bool:
        """One more fundingRate request in this 5-minute window of the simulated clock (lock held)."""
        st = self.state
        window = ("futures", int(st.now_ms() // 300_000))
        st.funding_asked[window] = st.funding_asked.get(window, 0) + 1
        return st.funding_asked[window] <= st.config.funding_limit

    def _account(self, market: str, endpoint: str, weight: int, status: int, body: object,
                 symbol: str | None = None) -> None:
        st = self.state
        now = time.time()
        minute = int(st.now_ms() // MINUTE)
        headers: dict = {}
        fault = None
        with st.lock:
            budget = st.budget(market)
            used = st.weights.get((market, minute), 0)
            if st.config.restricted:
                status, body = 451, {"code": 0, "msg": "Service unavailable from a restricted location."}
            elif st.banned_until.get(market, 0) > now:
                status = 418
                headers["Retry-After"] = math.ceil(st.banned_until[market] - now)
                body = {"code": -1003, "msg": "Way too many requests; IP banned."}
            elif endpoint == "fundingRate" and market == "futures" and not self._funding_allowed():
                left = 300 - (st.now_ms() // 1000) % 300
                status, headers["Retry-After"] = 429, max(1, math.ceil(left / st.config.clock_speed))
                body = {"code": -1003, "msg": "Too many requests; current limit is 500 requests per 5 minutes."}
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
            st.log.append({"t": now, "market": market, "endpoint": endpoint, "status": status, "symbol": symbol,
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


APIS = {"/api/v3/": "spot", "/fapi/v1/": "futures", "/dapi/v1/": "coinm"}  # path prefix -> market


class QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (a stopped run, a deadline) is normal here: no traceback for it in the
    user's shell; anything else is printed as the standard library does."""

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipe, ConnectionReset, ConnectionAborted
            return
        super().handle_error(request, client_address)


def make_server(host: str = "127.0.0.1", port: int = 0, config: SimConfig | None = None) -> ThreadingHTTPServer:
    state = SimState(config or SimConfig())
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = QuietServer((host, port), handler)
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
    parser.add_argument("--many-symbols", type=int, default=0, help="N more USDT symbols per market (C000USDT ...)")
    args = parser.parse_args(argv)
    config = SimConfig(spot_budget=args.spot_budget, futures_budget=args.futures_budget, latency_ms=args.latency_ms,
                       fault_rate=args.fault_rate, clock_offset_ms=args.clock_offset_ms, clock_speed=args.clock_speed,
                       many_symbols=args.many_symbols)
    server = make_server(args.host, args.port, config)
    print(f"Binance-compatible simulator on http://{args.host}:{server.server_address[1]} "
          f"(spot /api/v3, futures /fapi/v1, coinm /dapi/v1); Ctrl-C stops it", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
