"""Extending a partly stored day: old rows, old confirmed gaps and new rows meet without loss or repeat;
a day failing its own checks is never put."""

import datetime as dt
import time

import pytest

from kline_assets.binance.days import DayStream
from kline_assets.errors import ExchangeTransient
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import FUT, FakeSource, M

UTC = parse_zone("UTC")
DAY = dt.date(2021, 1, 1)
START, END = UTC.day_window_ms(DAY)


def minutes(*ranges):
    return [START + m * M for a, b in ranges for m in range(a, b)]


def fetch_day(store, source):
    return DayStream(store, source, [DAY], page=1000, workers=1).fetch_day(DAY)


def test_extending_a_day_keeps_its_confirmed_gaps(tmp_path):
    """The exchange has no klines 02:00-03:00: the morning run confirms it, the evening run must keep it."""
    store = DatasetStore.open(tmp_path, FUT, UTC, DAY)
    opens = minutes((0, 120), (180, 1440))
    morning = fetch_day(store, FakeSource(opens, now=START + 600 * M + 1))
    store.commit([store.stage(DAY, morning.table, morning.gaps, morning.covered_until_ms)])
    assert morning.gaps == [[START + 120 * M, START + 180 * M]]
    later = fetch_day(store, FakeSource(opens, now=END + 2 * M))
    assert later.gaps == [[START + 120 * M, START + 180 * M]] and later.covered_until_ms == END
    assert later.table["open_time"].to_pylist() == opens


def test_rows_at_or_before_the_stored_end_are_not_stored_twice(tmp_path):
    """An entry whose coverage mark lags its last row (written by an older run, or an odd row) is
    extended without repeating the rows it already holds."""
    store = DatasetStore.open(tmp_path, FUT, UTC, DAY)
    opens = minutes((0, 1440))
    first = fetch_day(store, FakeSource(opens, now=START + 10 * M + 1))
    assert first.table.num_rows == 10
    store.commit([store.stage(DAY, first.table, [], START + 5 * M)])  # coverage says 00:05, rows reach 00:09
    later = fetch_day(store, FakeSource(opens, now=END + 2 * M))
    assert later.table["open_time"].to_pylist() == opens


def test_a_day_failing_one_error_check_is_never_put(tmp_path):
    """The last line of defence before a chunk is put: its own checks, on its very bytes. Here an exchange
    whose clock runs 5 minutes ahead of this machine's serves minutes that, by the time the chunk is
    written, have not closed yet (sanity's `unclosed_rows`, the one check failing)."""
    now = int(time.time() * 1000)
    today = UTC.local_date(now)
    store = DatasetStore.open(tmp_path, FUT, UTC, today)
    start, _ = UTC.day_window_ms(today)
    source = FakeSource(range(start, now + 5 * M, M), now=now + 5 * M)
    with pytest.raises(ExchangeTransient, match=r"fails its checks \(sanity: \d+ unclosed_rows [^;]*\): not stored"):
        DayStream(store, source, [today], page=1000, workers=1).ready_day(today)
    assert store.backend.list("") == []
