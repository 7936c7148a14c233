"""Binance's public archive of daily kline files (data.binance.vision), checked before use.

A UTC day is `<origin>/data/{spot|futures/um}/daily/klines/<SYMBOL>/1m/<SYMBOL>-1m-<YYYY-MM-DD>.zip`
with `<name>.zip.CHECKSUM` beside it (`<sha256>  <name>.zip`, as `sha256sum` writes it). Nothing of a
zip is used before its sha256 equals the published one; then the one CSV inside is parsed: with or
without a header line (futures files have one since about 2022), times in microseconds (spot from
2025-01-01) brought to milliseconds, values kept as sent. A file the archive does not have (404) is
`None`; anything else wrong with a day (mismatch, damaged zip, a CSV that does not parse, rows outside
the UTC day) raises `ArchiveUnusable`, and the caller takes that day from REST. Transient failures
(5xx, resets, time-outs) are retried with backoff; nothing here counts against the REST weight budget.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import logging
import random
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass

from kline_assets.errors import ExchangeTransient

log = logging.getLogger("kline_assets")

DAY_MS = 86_400_000
NEWEST_LAG_DAYS = 2  # the archive publishes a day some hours after it ends, sometimes days: ask no newer


class ArchiveUnusable(Exception):
    """This day's file cannot be trusted or read; the reason is the message."""


@dataclass
class ArchiveDay:
    rows: list[list]  # the 12 fields, times in ms, values as sent
    sha256: str  # the published CHECKSUM the zip matched


class ArchiveClient:
    def __init__(self, market: str, origin: str, *, timeout_s: float = 30.0, max_attempts: int = 6,
                 backoff_s: float = 0.25) -> None:
        self.market, self.origin = market, origin.rstrip("/")
        self.timeout_s, self.max_attempts, self.backoff_s = timeout_s, max_attempts, backoff_s
        self.requests = 0

    def url(self, symbol: str, day: dt.date) -> str:
        folder = "spot" if self.market == "spot" else "futures/um"
        return f"{self.origin}/data/{folder}/daily/klines/{symbol}/1m/{symbol}-1m-{day.isoformat()}.zip"

    @staticmethod
    def has(day: dt.date, today_utc: dt.date) -> bool:
        """Whether to ask the archive for a UTC day at all."""
        return day <= today_utc - dt.timedelta(days=NEWEST_LAG_DAYS)

    def day(self, symbol: str, day: dt.date) -> ArchiveDay | None:
        url = self.url(symbol, day)
        published = self._get(url + ".CHECKSUM")
        if published is None:
            return None
        expected = published.decode("utf-8", "replace").split()[0].lower() if published.strip() else ""
        data = self._get(url)
        if data is None:
            return None
        if hashlib.sha256(data).hexdigest() != expected:
            raise ArchiveUnusable(f"{url.rsplit('/', 1)[-1]} does not match its CHECKSUM")
        return ArchiveDay(parse_zip(data, day, url.rsplit("/", 1)[-1]), expected)

    def _get(self, url: str) -> bytes | None:
        attempt = 0
        while True:
            self.requests += 1
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                if exc.code in (403, 404):  # the archive answers 403/404 for files it does not hold
                    return None
                if exc.code < 500 and exc.code != 429:
                    raise ArchiveUnusable(f"{url} answered HTTP {exc.code}") from None
                what = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                what = type(exc).__name__
            attempt += 1
            if attempt >= self.max_attempts:
                raise ExchangeTransient(f"{url}: failed {attempt} times, last: {what}")
            delay = min(30.0, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            log.warning("archive: %s on %s, retry %d in %.2fs", what, url, attempt, delay)
            time.sleep(delay)


def parse_zip(data: bytes, day: dt.date, name: str) -> list[list]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [m for m in zf.namelist() if m.endswith(".csv")]
            if len(members) != 1:
                raise ArchiveUnusable(f"{name} holds {len(members)} CSV files, not one")
            text = zf.read(members[0]).decode("ascii")
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise ArchiveUnusable(f"{name} is damaged ({type(exc).__name__}: {exc})") from None
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    rows = []
    for line in csv.reader(io.StringIO(text)):
        if not line:
            continue
        if not line[0].isdigit():
            if rows:
                raise ArchiveUnusable(f"{name}: a line that is not a kline: {','.join(line)[:80]}")
            continue  # the header line
        if len(line) < 12:
            raise ArchiveUnusable(f"{name}: a line with {len(line)} fields, not 12")
        try:
            open_time, close_time, trades = int(line[0]), int(line[6]), int(line[8])
        except ValueError:
            raise ArchiveUnusable(f"{name}: a line that does not parse: {','.join(line)[:80]}") from None
        if open_time >= 10**15:  # microseconds (16 digits)
            open_time, close_time = open_time // 1000, close_time // 1000
        if not start <= open_time < start + DAY_MS:
            raise ArchiveUnusable(f"{name}: a row at {open_time} lies outside its UTC day")
        rows.append([open_time, *line[1:6], close_time, line[7], trades, *line[9:12]])
    rows.sort(key=lambda r: r[0])
    return rows
