"""Paging one window of 1m klines out of the exchange, recording what it confirms is empty.

Pages continue from the last open_time + 1 minute. An empty page, or a jump of more than a minute
between rows the exchange sent, is the exchange saying it has no kline there: a confirmed gap.
The loop always advances, so a window ends after at most rows/limit + gaps requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kline_assets.binance.client import BinanceClient, KlineSource
from kline_assets.settings import Kind
from kline_assets.store.checks import FUNDING_SLACK_MS, holds_latest
from kline_assets.timezones import MINUTE_MS

# Pages that minimise weight per day (issue #7): futures 499 rows cost 2 (6 per day) against 10 for
# 1500; spot costs 2 whatever the size, so the largest page wins.
DEFAULT_PAGE = {"spot": 1000, "futures": 499, "coinm": 499}


@dataclass
class Fetched:
    rows: list[list] = field(default_factory=list)
    gaps: list[list[int]] = field(default_factory=list)
    covered_until_ms: int = 0
    requests: int = 0


def add_gap(gaps: list[list[int]], start: int, end: int) -> None:
    if end <= start:
        return
    if gaps and gaps[-1][1] >= start:
        gaps[-1][1] = max(gaps[-1][1], end)
    else:
        gaps.append([start, end])


def note_rows(gaps: list[list[int]], expected: int, open_times: list[int]) -> int:
    """Rows the exchange sent, in order, from the minute `expected` on: a jump of more than a minute before
    a row is a confirmed gap. Returns the minute expected after the last row. The archive's verified
    files follow the same rule, so a day's gaps do not depend on where it came from."""
    for open_time in open_times:
        if open_time - expected >= MINUTE_MS:
            add_gap(gaps, expected, open_time)
        expected = open_time + MINUTE_MS
    return expected


def closed_horizon(now_ms: int) -> int:
    """Klines opening before this instant have closed (close_time = open + 59999 < now)."""
    return (now_ms // MINUTE_MS) * MINUTE_MS


def fetch_window(source: KlineSource, symbol: str, start_ms: int, end_ms: int, now_ms: int,
                 page: int) -> Fetched:
    """Closed klines with open_time in [start_ms, min(end_ms, horizon)); `now_ms` is the server clock.

    The next page asks from the last open_time + 1 ms rather than + 1 minute: for aligned data it is the
    same request, and an off-minute row at the end of a page (early Binance data) cannot hide the next.
    A page asks for at most as many rows as whole minutes are left in the window (USD-M weighs a request by
    its `limit`); off-minute rows beyond that are simply the next page's."""
    stop = min(end_ms, closed_horizon(now_ms))
    settled = now_ms >= end_ms + MINUTE_MS  # a trailing silence is only a gap once the window is well over
    out = Fetched(covered_until_ms=max(start_ms, stop))
    expected, ask, last_open = start_ms, start_ms, None
    while ask < stop and expected < stop:  # the next minute must still be inside the window
        # no more rows than minutes left: a live minute asks for 1-2 rows, which weighs 1 on USD-M, not 5
        limit = min(page, -(-(stop - ask) // MINUTE_MS))
        # COIN-M answers a window's last `limit` rows: its windows hold no more minutes than `limit`
        last = min(stop, ask + limit * MINUTE_MS) if source.market.pages_from_end else stop
        raw = source.klines(symbol, ask, last - 1, limit)
        out.requests += 1
        unclosed = [r[0] for r in raw if r[6] >= now_ms]
        if unclosed:  # only odd, off-minute rows can get here: never store them, never call them gaps
            stop = out.covered_until_ms = max(ask, min(unclosed))
        rows = [r for r in raw if ask <= r[0] < min(stop, last) and (last_open is None or r[0] > last_open)]
        if not rows and last < stop and not unclosed and not any(r[0] < ask for r in raw) and settled:
            add_gap(out.gaps, expected, last)  # a whole COIN-M window the exchange has nothing in
            expected = ask = last
            continue
        if not rows:
            backwards = raw and not unclosed and any(r[0] < ask for r in raw)
            if backwards or not settled:
                # a server that went backwards confirms nothing; nor does silence at the live edge (the
                # exchange may still deliver): claim nothing beyond, the next run asks again
                out.covered_until_ms = expected
                break
            add_gap(out.gaps, expected, stop)
            break
        expected = note_rows(out.gaps, expected, [r[0] for r in rows])
        out.rows.extend(rows)
        last_open = rows[-1][0]
        ask = last_open + 1
    return out


FUNDING_PAGE = 1000  # events a fundingRate request may ask for: 41 days of hourly funding, a year of 8-hourly


def events_due(kind: Kind, covered_until_ms: int, now_ms: int) -> bool:
    """Whether asking for a day's events from `covered_until_ms` on can find any: kline kinds always;
    funding once the next hour (events come at the hour, a few ms after) is `FUNDING_SLACK_MS` past, so a
    live minute asks a funding dataset once an hour, not once a minute."""
    return not kind.events or not holds_latest(kind, covered_until_ms, now_ms)


def fetch_events(client: BinanceClient, symbol: str, start_ms: int, end_ms: int, now_ms: int) -> Fetched:
    """Funding events with time in [start_ms, min(end_ms, now - FUNDING_SLACK_MS)), paged forward; rows are
    `(time, rate, mark price or None, None)` as the funding schema takes them (REST states no interval).
    The window is covered whatever it holds: the exchange's answer is the schedule's truth, and a missing
    event is named by the continuity check, not taken for a gap."""
    stop = min(end_ms, now_ms - FUNDING_SLACK_MS)
    out = Fetched(covered_until_ms=max(start_ms, stop))
    ask = start_ms
    while ask < stop:
        page = client.funding(symbol, ask, stop - 1, FUNDING_PAGE)
        out.requests += 1
        rows = [e for e in page if ask <= e[0] < stop]
        out.rows.extend(rows)
        if len(page) < FUNDING_PAGE or not rows:
            break
        ask = rows[-1][0] + 1
    return out
