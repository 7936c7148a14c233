"""The simulated public archive (data.binance.vision's layout): a daily zip of the 12-field CSV per
(market, symbol, UTC date), with its `.CHECKSUM`, holding the same rows as the REST endpoints; for
futures also the mark, index and premium index klines (`daily/markPriceKlines/...`, docs/binance-kinds.md),
and a monthly funding file per (market, symbol, UTC month) (`monthly/fundingRate/...`).

As Binance writes them: futures files carry a header line from 2022 on (none before), spot files from
2025-01-01 carry open and close times in microseconds, and numbers are formatted differently across
years (trailing zeros dropped before 2021). A day is published once it is over (the real archive takes
some hours more). Switchable faults, by UTC date (`YYYY-MM-DD`) in `SimConfig`: `archive_missing`
(404), `archive_bad_checksum` (the CHECKSUM names other bytes), `archive_truncated` (half a zip),
`archive_throttled` (the zip answers 429 the first time it is asked for, as a CDN under load does),
`archive_replaced` (Binance re-uploaded the file: another zip and CHECKSUM).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import zipfile

from kline_assets.binance.archive import month_window_ms
from kline_assets.sim.market import PRICE_KINDS, SimState, funding_events

MONTHLY = re.compile(r"^/data/(futures/um|futures/cm)/monthly/fundingRate/([A-Z0-9_]+)/\2-fundingRate-"
                     r"(\d{4}-\d{2})\.zip(\.CHECKSUM)?$")
FUNDING_HEADER = "calc_time,funding_interval_hours,last_funding_rate"
PATH = re.compile(r"^/data/(spot|futures/um|futures/cm)/daily/(klines|markPriceKlines|indexPriceKlines|"
                  r"premiumIndexKlines)/([A-Z0-9_]+)/1m/\3-1m-(\d{4}-\d{2}-\d{2})\.zip(\.CHECKSUM)?$")
HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
          "taker_buy_quote_volume,ignore")
DAY_MS = 86_400_000
ARCHIVE_CACHE_DAYS = 8192  # ~40 kB each: a warmed cache lets a benchmark measure the client, not the server


def _number(text: str, year: int) -> str:
    return text.rstrip("0").rstrip(".") if year < 2021 and "." in text else text


def day_csv(state: SimState, market: str, symbol: str, day: dt.date, kind: str = "klines") -> bytes:
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    rows = state.klines(market, symbol, start, start + DAY_MS - 1, 1440, kind)
    micro = market == "spot" and day >= dt.date(2025, 1, 1)
    lines = [HEADER] if market != "spot" and day.year >= 2022 else []
    for r in rows:
        times = (r[0] * 1000, r[6] * 1000) if micro else (r[0], r[6])
        values = [str(times[0]), *(_number(v.strip(), day.year) for v in r[1:6]), str(times[1]),
                  _number(r[7], day.year),
                  str(r[8]), _number(r[9], day.year), _number(r[10], day.year), r[11]]
        lines.append(",".join(values))
    return ("\n".join(lines) + "\n").encode()


def zipped_day(state: SimState, market: str, symbol: str, day: dt.date, kind: str = "klines") -> bytes:
    """The day's zip, made once (a client asks for the CHECKSUM, then the zip) and kept for a while; a day of
    `archive_replaced` is another file (re-uploaded: other bytes, the same rows)."""
    replaced = day.isoformat() in state.config.archive_replaced
    key = (market, symbol, day, kind, replaced)
    with state.lock:
        if key in state.archive_cache:
            return state.archive_cache[key]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        # a fixed date: the zip is the same bytes at every request, as a published file is
        member = zipfile.ZipInfo(f"{symbol}-1m-{day}.csv",
                                 date_time=(day.year, day.month, day.day, 12 if replaced else 0, 0, 0))
        zf.writestr(member, day_csv(state, market, symbol, day, kind), compress_type=zipfile.ZIP_DEFLATED)
    with state.lock:
        state.archive_cache[key] = buffer.getvalue()
        while len(state.archive_cache) > ARCHIVE_CACHE_DAYS:
            state.archive_cache.pop(next(iter(state.archive_cache)))
        return state.archive_cache[key]


def month_zip(state: SimState, market: str, symbol: str, month: str) -> bytes:
    """A month's funding file: the REST events of the UTC month, no mark price, each with its interval."""
    key = (market, symbol, month, "funding")
    with state.lock:
        if key in state.archive_cache:
            return state.archive_cache[key]
    first = dt.date.fromisoformat(f"{month}-01")
    start, end = month_window_ms(first)
    events = funding_events(market, symbol, state.listings(market)[symbol], start, end - 1,
                            state.dropped(market, symbol))
    text = "\n".join([FUNDING_HEADER, *(f"{t},{hours},{rate}" for t, rate, _, hours in events)]) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        member = zipfile.ZipInfo(f"{symbol}-fundingRate-{month}.csv", date_time=(first.year, first.month, 1, 0, 0, 0))
        zf.writestr(member, text.encode(), compress_type=zipfile.ZIP_DEFLATED)
    with state.lock:
        state.archive_cache[key] = buffer.getvalue()
        return state.archive_cache[key]


def answer_month(state: SimState, match: re.Match) -> tuple[int, bytes]:
    """A monthly funding file, published once its month is over; the faults take `YYYY-MM`."""
    market = "futures" if match.group(1) == "futures/um" else "coinm"
    symbol, month, checksum = match.group(2), match.group(3), bool(match.group(4))
    cfg = state.config
    if symbol not in state.listings(market) or month in cfg.archive_missing \
            or month >= state.today_utc().isoformat()[:7]:
        return 404, b"<Error><Code>NoSuchKey</Code></Error>"
    data = month_zip(state, market, symbol, month)
    if checksum:
        digest = hashlib.sha256(data + (b"x" if month in cfg.archive_bad_checksum else b"")).hexdigest()
        return 200, f"{digest}  {symbol}-fundingRate-{month}.zip\n".encode()
    return 200, data[: len(data) // 2] if month in cfg.archive_truncated else data


def answer(state: SimState, path: str) -> tuple[int, bytes]:
    """(status, body) for an archive path; 404 for what the archive does not have."""
    monthly = MONTHLY.match(path)
    if monthly:
        return answer_month(state, monthly)
    match = PATH.match(path)
    if not match:
        return 404, b"not found"
    market = {"spot": "spot", "futures/um": "futures", "futures/cm": "coinm"}[match.group(1)]
    kind = PRICE_KINDS.get(match.group(2), "klines")
    if kind != "klines" and market == "spot":
        return 404, b"<Error><Code>NoSuchKey</Code></Error>"
    symbol, date, checksum = match.group(3), match.group(4), bool(match.group(5))
    day = dt.date.fromisoformat(date)
    listed = state.listings(market)
    cfg = state.config
    if symbol not in listed or date in cfg.archive_missing or day >= state.today_utc():
        return 404, b"<Error><Code>NoSuchKey</Code></Error>"
    if not checksum and date in cfg.archive_throttled:
        with state.lock:
            first = path not in state.archive_throttled
            state.archive_throttled.add(path)
        if first:
            return 429, b"<Error><Code>SlowDown</Code></Error>"
    name = f"{symbol}-1m-{date}"
    data = zipped_day(state, market, symbol, day, kind)
    if checksum:
        digest = hashlib.sha256(data + (b"x" if date in cfg.archive_bad_checksum else b"")).hexdigest()
        return 200, f"{digest}  {name}.zip\n".encode()
    return 200, data[: len(data) // 2] if date in cfg.archive_truncated else data
