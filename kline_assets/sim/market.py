"""The simulated exchange's market: listings, gaps, deterministic klines, and its mutable state
(clock, weights, bans, request log). The HTTP side is `kline_assets.sim.server`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import random
import threading
import time
from dataclasses import dataclass, field

MINUTE = 60_000


def _ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


# symbol -> listing time per market; gaps are [from, to) in ms, as Binance shows them on spot BTCUSDT
LISTINGS = {
    "spot": {"BTCUSDT": _ms("2017-08-17T04:00"), "ETHUSDT": _ms("2017-08-17T04:00"),
             "BNBUSDT": _ms("2017-11-06T03:54"), "SOLUSDT": _ms("2020-08-11T06:00")},
    "futures": {"BTCUSDT": _ms("2019-09-08T17:57"), "ETHUSDT": _ms("2019-11-27T07:38"),
                "BNBUSDT": _ms("2020-02-10T08:12"), "SOLUSDT": _ms("2020-09-14T07:00")},
    "coinm": {"BTCUSD_PERP": _ms("2020-08-10T07:00"), "ETHUSD_PERP": _ms("2020-08-14T07:00"),
              "BNBUSD_PERP": _ms("2020-09-17T07:00")},
}
# listed but never selected by `*/USDT` (`*/USD`): another quote, and dated (non-perpetual) futures
OTHER_LISTINGS = {"spot": {"ETHBTC": _ms("2017-08-17T04:00")}, "futures": {"BTCUSDT_261225": _ms("2026-06-26T08:00")},
                  "coinm": {"BTCUSD_261225": _ms("2026-06-26T08:00")}}
MANY_LISTED_AT = _ms("2019-06-01T00:00")  # the `many_symbols` listings: whole days from then on
GAPS = {
    "spot": [(_ms("2020-02-19T11:35"), _ms("2020-02-19T17:30")), (_ms("2021-04-25T04:00"), _ms("2021-04-25T08:45")),
             (_ms("2023-03-24T12:39"), _ms("2023-03-24T14:00"))],
    "futures": [(_ms("2020-02-19T11:35"), _ms("2020-02-19T17:30"))],
    "coinm": [],
}


def _units(*parts: object) -> tuple[float, ...]:
    """Four deterministic numbers in [0, 1) from one hash (a row needs a few; hashing is the cost)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=32).digest()
    return tuple(int.from_bytes(digest[i:i + 8], "big") / 2**64 for i in range(0, 32, 8))


@functools.lru_cache(maxsize=4096)
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


# the futures price series besides trades (docs/binance-kinds.md), by REST endpoint: the 12 kline fields,
# prices only; what Binance marks "Ignore" as it sends it (volume "0 " with its space, the count of price
# samples behind the minute)
PRICE_KINDS = {"markPriceKlines": "mark", "indexPriceKlines": "index", "premiumIndexKlines": "premium"}


def price_kind_row(kind: str, symbol: str, open_time: int, now_ms: int | None = None) -> list:
    """The `kind` row ("mark", "index", "premium") the simulator serves for `open_time`: mark and index
    follow the trade price a little apart; the premium index is small and signed, as Binance's is."""
    trade = kline_row("futures", symbol, open_time, now_ms)
    um, ui, uh, ul = _units(kind, symbol, open_time)
    mark = [float(v) * (1 + 0.0004 * (um - 0.5)) for v in trade[1:5]]
    index = [float(v) * (1 + 0.0004 * (ui - 0.5)) for v in trade[1:5]]
    if kind == "premium":
        o, c = 0.0004 * (uh - 0.5), 0.0004 * (ul - 0.5)
        values, count, volume = [o, max(o, c) + 0.0001 * um, min(o, c) - 0.0001 * ui, c], 12, "0"
    else:
        values, count, volume = (mark if kind == "mark" else index), 60, "0 "
    return [open_time, *(f"{v:.8f}" for v in values), volume, open_time + MINUTE - 1, "0", count, "0", "0", "0"]


HOUR = 3_600_000
# funding (docs/binance-kinds.md): every 8 h at 00, 08 and 16 UTC, a few ms after the hour; ETHUSDT's
# interval changes to 4 h, as Binance changes a symbol's interval
FUNDING_CHANGES = {("futures", "ETHUSDT"): (_ms("2021-06-15T00:00"), 4)}


def funding_events(market: str, symbol: str, first_ms: int, start: int, end: int,
                   dropped: tuple[int, ...] = ()) -> list[tuple[int, str, str, int]]:
    """(funding time, rate, mark price, interval hours) of the events in [start, end], the symbol listed at
    `first_ms`: its first event is the first 8-hour boundary after the listing; none at the `dropped` hours."""
    change, hours = FUNDING_CHANGES.get((market, symbol), (None, 8))
    t = max(start, first_ms) // HOUR * HOUR
    out = []
    while t <= end:
        interval = hours if change is not None and t >= change else 8
        if t % (interval * HOUR) == 0 and t > first_ms and t not in dropped:
            u = _units("funding", market, symbol, t)
            at = t + 1 + int(8 * u[1])  # Binance's fundingTime: a few ms after the hour
            if start <= at <= end:
                mark = float(kline_row(market, symbol, t)[1])
                out.append((at, f"{(u[0] - 0.4) * 0.0005:.8f}", f"{mark:.8f}", interval))
        t += HOUR
    return out


@dataclass
class SimConfig:
    spot_budget: int = 6000
    futures_budget: int = 2400
    coinm_budget: int = 2400
    funding_limit: int = 500  # fundingRate requests per 5 minutes (USD-M), beside the weight
    funding_dropped: list = field(default_factory=list)  # [[market, symbol, hour_ms], ...]: events the exchange
    # lacks, in REST and in the archive (as after an outage)
    latency_ms: float = 0.0
    fault_rate: float = 0.0  # share of kline responses that fail (500/503, reset, truncated, html)
    restricted: bool = False  # answer 451 to everything, as Binance does for restricted locations
    ban_after: int = 2  # requests inside a Retry-After window tolerated before a ban (418)
    ban_seconds: int = 120
    clock_offset_ms: int = 0  # shift the simulated clock (a midnight is then near)
    clock_speed: float = 1.0  # 60 = one simulated minute per real second
    seed: int = 1
    extra_gaps: list = field(default_factory=list)  # [[market, symbol, from_ms, to_ms], ...]
    failing_windows: list = field(default_factory=list)  # [[market, from_ms, to_ms], ...]: kline requests
    # whose startTime falls inside answer HTTP 500 (a day that cannot be fetched until the retries run out)
    archive_missing: list = field(default_factory=list)  # UTC dates the archive answers 404 for
    archive_bad_checksum: list = field(default_factory=list)  # UTC dates whose CHECKSUM does not match
    archive_truncated: list = field(default_factory=list)  # UTC dates whose zip is cut in half
    archive_throttled: list = field(default_factory=list)  # UTC dates whose zip answers 429 the first time
    archive_replaced: list = field(default_factory=list)  # UTC dates whose file was re-uploaded (other bytes)
    missing_endpoints: list = field(default_factory=list)  # e.g. ["time", "exchangeInfo"]: answered 404
    many_symbols: int = 0  # N more USDT symbols per market (C000USDT ...), for archives of the whole market
    delisted: list = field(default_factory=list)  # [[market, symbol], ...]: exchangeInfo says BREAK (spot) or
    # SETTLING (futures); their history is still served
    unserved: list = field(default_factory=list)  # [[market, symbol], ...]: listed, but klines answer -1121
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
        self.funding_asked: dict[tuple[str, int], int] = {}  # (market, 5-minute window) -> fundingRate requests
        self.log: list[dict] = []
        self.archive_cache: dict[tuple, bytes] = {}  # recent archive zips (kline_assets.sim.archive)
        self.archive_throttled: set[str] = set()  # paths that answered 429 once (`SimConfig.archive_throttled`)
        self._listings = {market: {**LISTINGS[market], **OTHER_LISTINGS[market],
                                   **{f"C{i:03d}" + ("USD_PERP" if market == "coinm" else "USDT"): MANY_LISTED_AT
                                      for i in range(config.many_symbols)}}
                          for market in LISTINGS}

    def now_ms(self) -> int:
        real = time.time() * 1000
        return int(self.anchor[1] + (real - self.anchor[0]) * self.config.clock_speed + self.config.clock_offset_ms)

    def listings(self, market: str) -> dict[str, int]:
        """symbol -> listing time (ms) of every symbol the market knows."""
        return self._listings[market]

    def symbol_info(self, market: str, symbol: str) -> dict:
        """The symbol's exchangeInfo entry (the fields kline-assets reads, as Binance names them)."""
        base, _, expiry = symbol.partition("_")
        quote = next(q for q in ("USDT", "USD", "BTC") if base.endswith(q))
        delisted = [market, symbol] in self.config.delisted
        status = ("BREAK" if market == "spot" else "SETTLING") if delisted else "TRADING"
        # COIN-M states a contract's status as `contractStatus` (no `status`), and names its pair
        info = {"symbol": symbol, "contractStatus" if market == "coinm" else "status": status,
                "baseAsset": base[:-len(quote)], "quoteAsset": quote}
        if market != "spot":
            perpetual = expiry in ("", "PERP")
            info.update(contractType="PERPETUAL" if perpetual else "CURRENT_QUARTER",
                        onboardDate=self._listings[market][symbol])
        if market == "coinm":
            info["pair"] = base
        return info

    def budget(self, market: str) -> int:
        return getattr(self.config, f"{market}_budget")

    def today_utc(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.now_ms() / 1000, dt.timezone.utc).date()

    def gaps(self, market: str, symbol: str) -> list[tuple[int, int]]:
        extra = [(a, b) for m, s, a, b in self.config.extra_gaps if m == market and s == symbol]
        return (GAPS[market] if symbol == "BTCUSDT" else []) + extra

    def funding(self, market: str, symbol: str, start: int | None, end: int | None, limit: int) -> list[dict]:
        """`fundingRate` as Binance pages it: from `start` ascending, at most `limit`; without `start`, the
        latest `limit` up to `end`; only events already due. COIN-M rows have no markPrice."""
        now = self.now_ms()
        hi = now if end is None else min(now, end)
        lo = max(0, hi - limit * 8 * HOUR) if start is None else start
        events = funding_events(market, symbol, self._listings[market][symbol], lo, hi, self.dropped(market, symbol))
        events = events[-limit:] if start is None else events[:limit]
        return [{"symbol": symbol, "fundingTime": t, "fundingRate": rate,
                 **({} if market == "coinm" else {"markPrice": mark})} for t, rate, mark, _ in events]

    def dropped(self, market: str, symbol: str) -> tuple[int, ...]:
        return tuple(t for m, s, t in self.config.funding_dropped if (m, s) == (market, symbol))

    def row(self, market: str, symbol: str, t: int, now_ms: int | None = None, kind: str = "klines") -> list:
        if kind != "klines":
            return price_kind_row(kind, symbol, t, now_ms)
        row = kline_row(market, symbol, t, now_ms)
        if t in self.config.odd_minutes:
            row[0], row[6] = t + 3000, t + 3000 + MINUTE - 1
            row[2] = row[3]  # high = low, below open
        return row

    def klines(self, market: str, symbol: str, start: int | None, end: int | None, limit: int,
               kind: str = "klines") -> list:
        """The rows of `kind` ("klines", or a futures price kind of `PRICE_KINDS`) as the endpoint pages
        them: from `start`, at most `limit`, never past the current minute (shown as it stands). COIN-M
        answers a window's last `limit` rows instead (docs/binance-kinds.md)."""
        now = self.now_ms()
        first = self._listings[market][symbol]
        current = now // MINUTE * MINUTE
        hi = current if end is None else min(current, end // MINUTE * MINUTE)
        lo = max(first, hi - (limit - 1) * MINUTE) if start is None else max(first, -(-start // MINUTE) * MINUTE)
        gaps = self.gaps(market, symbol)
        from_end = end is not None and (start is None or market == "coinm")
        rows, t = [], hi if from_end else lo
        while lo <= t <= hi and len(rows) < limit:
            gap = next((g for g in gaps if g[0] <= t < g[1]), None)
            if gap:
                t = gap[0] - MINUTE if from_end else gap[1]
                continue
            rows.append(self.row(market, symbol, t, now if t == current else None, kind))
            t += -MINUTE if from_end else MINUTE
        return rows[::-1] if from_end else rows


def rate_limits(budget: int) -> list[dict]:
    return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": budget},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000}]
