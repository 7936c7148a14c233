"""Binance's public archive of daily kline files (data.binance.vision), checked before use.

A UTC day is `<origin>/data/{spot|futures/um|futures/cm}/daily/klines/<SYMBOL>/1m/<SYMBOL>-1m-<YYYY-MM-DD>.zip`
with `<name>.zip.CHECKSUM` beside it (`<sha256>  <name>.zip`, as `sha256sum` writes it). Nothing of a
zip is used before its sha256 equals the published one (the two are fetched at once, over kept-alive
connections); then the one CSV inside is parsed (`parse_zip`, in the process `binance.encoding` gives it): with
or without a header line (futures files have one since about 2022), times in microseconds (spot from
2025-01-01) brought to milliseconds, values kept as sent. A file the archive does not have (404) is
`None`; anything else wrong with a day (a CHECKSUM without a sha256 or not matching, a damaged zip, one
inflating past its cap, a CSV that is empty, does not parse, holds duplicates, impossible values or rows
outside the UTC day) raises `ArchiveUnusable`, and the caller takes that day from REST. Transient
failures (5xx, resets, time-outs) are retried with backoff; nothing here counts against the REST weight
budget.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import random
import threading
import zipfile
import zlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kline_assets.binance.http import HttpFailure, Limits, Stopped, Transport, Unreachable, beside, pause
from kline_assets.errors import ExchangeTransient
from kline_assets.settings import KINDS, MARKETS, Kind
from kline_assets.store.schema import COLUMN_NAMES, COLUMNS, FUNDING_SCHEMA, value_problem
from kline_assets.timezones import UTC

log = logging.getLogger("kline_assets")

NEWEST_LAG_DAYS = 2  # the archive publishes a day some hours after it ends, sometimes days: ask no newer
# A real day's zip is ~50-150 kB and its CSV ~100-250 kB: caps far above that bound what a damaged or
# hostile archive can make us hold (a zip bomb whose CHECKSUM matches inflates to gigabytes).
CHECKSUM_LIMITS = Limits(30.0, 64 << 10)
ZIP_LIMITS = Limits(60.0, 16 << 20)
MAX_CSV_BYTES = 16 << 20
UNREACHABLE_AFTER = 3  # consecutive connection failures after which the rest of the run takes REST


class ArchiveUnusable(Exception):
    """This day's file cannot be trusted or read; the reason is the message."""


@dataclass
class ArchiveDay:
    """A UTC day's zip (funding: a UTC month's, `day` its first), verified against its CHECKSUM;
    `parse_zip` reads it."""

    day: dt.date
    name: str  # the file's name, for the messages
    zip: bytes
    sha256: str  # the published CHECKSUM the zip matched
    kind: Kind = KINDS["klines"]

    def table(self) -> pa.Table:
        return parse_funding(self.zip, self.day, self.name) if self.kind.events else \
            parse_zip(self.zip, self.day, self.name, self.kind)


class ArchiveClient:
    """One per market and run, shared by its datasets' streams: after `UNREACHABLE_AFTER` consecutive
    connection failures (DNS, refused: a firewall, an outage) it asks no more, and every later day of the
    run goes to REST at once; the next run tries again."""

    def __init__(self, market: str, origin: str, *, max_attempts: int = 6, backoff_s: float = 0.25,
                 connect_timeout_s: float = 10.0) -> None:
        self.market, self.origin = market, origin.rstrip("/")
        self.max_attempts, self.backoff_s = max_attempts, backoff_s
        self.transport = Transport(ZIP_LIMITS, connect_timeout_s=connect_timeout_s)
        self._lock = threading.Lock()
        self._unreachable_in_a_row = 0
        self.given_up = False

    def url(self, symbol: str, day: dt.date, kind: Kind = KINDS["klines"]) -> str:
        """A UTC day's file; funding: the file of `day`'s UTC month."""
        prefix = f"{self.origin}/data/{MARKETS[self.market].archive}"
        if kind.events:
            return f"{prefix}/monthly/{kind.endpoint}/{symbol}/{symbol}-{kind.endpoint}-{day:%Y-%m}.zip"
        return f"{prefix}/daily/{kind.endpoint}/{symbol}/1m/{symbol}-1m-{day.isoformat()}.zip"

    @staticmethod
    def has(day: dt.date, today_utc: dt.date, kind: Kind = KINDS["klines"]) -> bool:
        """Whether to ask the archive for a UTC day at all (funding: for its month, once the month is over)."""
        if kind.events:
            return day.replace(day=1) < (today_utc - dt.timedelta(days=NEWEST_LAG_DAYS)).replace(day=1)
        return day <= today_utc - dt.timedelta(days=NEWEST_LAG_DAYS)

    def day(self, symbol: str, day: dt.date, kind: Kind = KINDS["klines"]) -> ArchiveDay | None:
        url = self.url(symbol, day, kind)
        name = url.rsplit("/", 1)[-1]
        checksum = beside(self._get, url + ".CHECKSUM", CHECKSUM_LIMITS)  # in flight beside the zip
        try:
            data = self._get(url, ZIP_LIMITS)
        finally:
            published = checksum.result()  # its error first: the CHECKSUM decides whether the day is usable
        if published is None:
            return None
        expected = _sha256_of(published)
        if expected is None:
            raise ArchiveUnusable(f"{name}.CHECKSUM holds no sha256")
        if data is None:
            return None
        if hashlib.sha256(data).hexdigest() != expected:
            raise ArchiveUnusable(f"{name} does not match its CHECKSUM")
        return ArchiveDay(day.replace(day=1) if kind.events else day, name, data, expected, kind)

    def published(self, symbol: str, day: dt.date, kind: Kind = KINDS["klines"]) -> str | None:
        """The sha256 a file's `.CHECKSUM` publishes now (None: the archive holds no such file), without
        the zip: how a stored day learns that Binance replaced its file (`binance.recheck`)."""
        url = self.url(symbol, day, kind)
        published = self._get(url + ".CHECKSUM", CHECKSUM_LIMITS)
        if published is None:
            return None
        digest = _sha256_of(published)
        if digest is None:
            raise ArchiveUnusable(f"{url.rsplit('/', 1)[-1]}: its CHECKSUM names no sha256")
        return digest

    def _get(self, url: str, limits: Limits) -> bytes | None:
        attempt = 0
        while True:
            if self.given_up:
                raise ArchiveUnusable(f"the archive at {self.origin} is unreachable in this run")
            try:
                answer = self.transport.get(url, limits=limits)
            except Stopped:
                raise
            except Unreachable as exc:
                self._unreachable(exc)
                what = str(exc)
            except HttpFailure as exc:
                what = str(exc)
            else:
                self._reachable()
                if answer.status == 200:
                    return answer.body
                if answer.status in (403, 404):  # the archive answers 403/404 for files it does not hold
                    return None
                if answer.status < 500 and answer.status != 429:
                    raise ArchiveUnusable(f"{url} answered HTTP {answer.status}")
                what = f"HTTP {answer.status}"
            attempt += 1
            if attempt >= self.max_attempts:
                raise ExchangeTransient(f"{url}: failed {attempt} times, last: {what}")
            delay = min(30.0, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            log.warning("archive: %s on %s, retry %d in %.2fs", what, url, attempt, delay)
            pause(delay)

    def _unreachable(self, exc: Exception) -> None:
        with self._lock:
            self._unreachable_in_a_row += 1
            if self._unreachable_in_a_row >= UNREACHABLE_AFTER and not self.given_up:
                self.given_up = True
                log.warning("archive: %s unreachable %d times in a row (%s): the rest of this run takes REST",
                            self.origin, self._unreachable_in_a_row, exc)
        if self.given_up:
            raise ArchiveUnusable(f"the archive at {self.origin} is unreachable in this run")

    def _reachable(self) -> None:
        with self._lock:
            self._unreachable_in_a_row = 0


def _sha256_of(published: bytes) -> str | None:
    """The sha256 a `.CHECKSUM` file states first (`<hex>  <name>`), or None when it states none."""
    expected = published.decode("utf-8", "replace").split()[0].lower() if published.strip() else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        return None
    return expected


def utc_files(kind: Kind, start_ms: int, end_ms: int) -> list[dt.date]:
    """The archive files a local day's window [start_ms, end_ms) is cut from: its UTC days (two where the
    zone is not UTC), or for funding its UTC months (each named by its first day)."""
    first, last = UTC.local_date(start_ms), UTC.local_date(end_ms - 1)
    days = [first + dt.timedelta(n) for n in range((last - first).days + 1)]
    return sorted({d.replace(day=1) for d in days}) if kind.events else days


def csv_text(data: bytes, name: str) -> bytes:
    """The one CSV of a verified zip, inflated no further than `MAX_CSV_BYTES`."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [m for m in zf.infolist() if m.filename.endswith(".csv")]
            if len(members) != 1:
                raise ArchiveUnusable(f"{name} holds {len(members)} CSV files, not one")
            if members[0].file_size > MAX_CSV_BYTES:
                raise ArchiveUnusable(f"{name} inflates to {members[0].file_size:,} bytes, over the cap")
            with zf.open(members[0]) as member:  # the declared size may lie: read no more than the cap
                text = member.read(MAX_CSV_BYTES + 1)
            if len(text) > MAX_CSV_BYTES:
                raise ArchiveUnusable(f"{name} inflates past the cap of {MAX_CSV_BYTES:,} bytes")
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise ArchiveUnusable(f"{name} is damaged ({type(exc).__name__}: {exc})") from None
    if not text.strip():  # a verified empty file is no proof that the exchange has no klines that day
        raise ArchiveUnusable(f"{name} holds no rows")
    return text


def parse_zip(data: bytes, day: dt.date, name: str, kind: Kind = KINDS["klines"]) -> pa.Table:
    """The one CSV of a verified zip as a chunk-schema table, sorted by open_time, times in ms."""
    text = csv_text(data, name)
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
    table = table.sort_by("open_time")
    problem = value_problem(table, kind)
    if problem:
        raise ArchiveUnusable(f"{name}: {problem}")
    return table


def month_window_ms(month: dt.date) -> tuple[int, int]:
    """The UTC month of `month` (its first day) as [start, end) in ms."""
    following = (month.replace(year=month.year + 1, month=1) if month.month == 12
                 else month.replace(month=month.month + 1))
    return UTC.day_window_ms(month)[0], UTC.day_window_ms(following)[0]


FUNDING_CSV = ("calc_time", "funding_interval_hours", "last_funding_rate")


def parse_funding(data: bytes, month: dt.date, name: str) -> pa.Table:
    """A verified monthly funding file (`calc_time,funding_interval_hours,last_funding_rate`, a header
    line) as a funding-schema table, sorted; its events must lie in its UTC month. No mark price there."""
    text = csv_text(data, name)
    header = not text[:1].isdigit()
    try:
        raw = pacsv.read_csv(
            pa.BufferReader(text),
            read_options=pacsv.ReadOptions(column_names=list(FUNDING_CSV), skip_rows=1 if header else 0),
            convert_options=pacsv.ConvertOptions(column_types={"calc_time": pa.int64(),
                                                               "funding_interval_hours": pa.int64(),
                                                               "last_funding_rate": pa.float64()}))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ArchiveUnusable(f"{name}: the CSV does not parse ({str(exc).splitlines()[0]})") from None
    table = pa.Table.from_arrays([raw["calc_time"], raw["last_funding_rate"],
                                  pa.nulls(raw.num_rows, pa.float64()), raw["funding_interval_hours"]],
                                 schema=FUNDING_SCHEMA).sort_by("funding_time")
    start, end = month_window_ms(month)
    times = table["funding_time"]
    if table.num_rows and (pc.min(times).as_py() < start or pc.max(times).as_py() >= end):
        raise ArchiveUnusable(f"{name}: events outside its UTC month")
    problem = value_problem(table, KINDS["funding"])
    if problem:
        raise ArchiveUnusable(f"{name}: {problem}")
    return table
