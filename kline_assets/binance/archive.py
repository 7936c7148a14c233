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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kline_assets.archive.schema import COLUMN_NAMES, COLUMNS, SCHEMA
from kline_assets.errors import ExchangeTransient
from kline_assets.timezones import UTC

log = logging.getLogger("kline_assets")

NEWEST_LAG_DAYS = 2  # the archive publishes a day some hours after it ends, sometimes days: ask no newer


class ArchiveUnusable(Exception):
    """This day's file cannot be trusted or read; the reason is the message."""


@dataclass
class ArchiveDay:
    table: pa.Table  # the chunk schema, times in ms
    sha256: str  # the published CHECKSUM the zip matched


class ArchiveClient:
    def __init__(self, market: str, origin: str, *, timeout_s: float = 30.0, max_attempts: int = 6,
                 backoff_s: float = 0.25) -> None:
        self.market, self.origin = market, origin.rstrip("/")
        self.timeout_s, self.max_attempts, self.backoff_s = timeout_s, max_attempts, backoff_s

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


def parse_zip(data: bytes, day: dt.date, name: str) -> pa.Table:
    """The one CSV of a verified zip as a chunk-schema table, sorted by open_time, times in ms."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [m for m in zf.namelist() if m.endswith(".csv")]
            if len(members) != 1:
                raise ArchiveUnusable(f"{name} holds {len(members)} CSV files, not one")
            text = zf.read(members[0])
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise ArchiveUnusable(f"{name} is damaged ({type(exc).__name__}: {exc})") from None
    if not text.strip():
        return SCHEMA.empty_table()
    header = not text[:1].isdigit()  # futures files carry one since about 2022, older ones and spot none
    try:
        table = pacsv.read_csv(
            pa.BufferReader(text),
            read_options=pacsv.ReadOptions(column_names=COLUMN_NAMES, skip_rows=1 if header else 0),
            convert_options=pacsv.ConvertOptions(column_types=dict(COLUMNS), strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ArchiveUnusable(f"{name}: the CSV does not parse ({str(exc).splitlines()[0]})") from None
    if table.num_rows and pc.max(table["open_time"]).as_py() >= 10**15:  # microseconds (16 digits)
        for column in ("open_time", "close_time"):
            table = table.set_column(table.schema.get_field_index(column), column,
                                     pc.divide(table[column], 1000))
    start, end = UTC.day_window_ms(day)
    times = table["open_time"]
    if table.num_rows and (pc.min(times).as_py() < start or pc.max(times).as_py() >= end):
        raise ArchiveUnusable(f"{name}: rows outside its UTC day")
    return table.sort_by("open_time")
