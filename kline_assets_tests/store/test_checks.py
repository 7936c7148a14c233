"""Check functions on synthetic tables: each defect fails its check with the right numbers."""

import datetime as dt

import pytest

from kline_assets.sim.server import kline_row
from kline_assets.store.checks import (
    continuity,
    coverage,
    funding_follows_previous,
    funding_sanity,
    funding_within_day,
    sanity,
)
from kline_assets.store.manifest import ChunkEntry, Manifest
from kline_assets.store.schema import funding_table, rows_to_table
from kline_assets.timezones import ms_to_iso
from kline_assets_tests.helpers import FUT, chunk_entry, with_value

M = 60_000
DAY = 1440 * M
START = 18628 * DAY  # 2021-01-01


def entry(rows, gaps=(), start=START, complete=True):
    return ChunkEntry(index=1, partition=dt.date(2021, 1, 1).isoformat(), file="chunks/x", start_ms=start,
                      end_ms=start + DAY, rows=rows, first_open_time=None, last_open_time=None, sha256="",
                      bytes=0, complete=complete, exchange_gaps=[list(g) for g in gaps], written_at="",
                      covered_until_ms=start + DAY)


def table(opens):
    return rows_to_table([kline_row("futures", "BTCUSDT", t) for t in opens])


FULL = [START + i * M for i in range(1440)]


def test_full_day_passes():
    got = continuity(table(FULL), entry(1440))
    assert got.passed and got.metadata["unexplained_missing_minutes"] == 0


def test_unexplained_gap_fails_and_confirmed_gap_passes():
    opens = FULL[:100] + FULL[110:]
    bad = continuity(table(opens), entry(1430))
    assert not bad.passed and bad.metadata["unexplained_missing_minutes"] == 10
    good = continuity(table(opens), entry(1430, gaps=[(FULL[100], FULL[110])]))
    assert good.passed and good.metadata["exchange_gap_minutes"] == 10


def test_missing_head_and_tail_are_found():
    got = continuity(table(FULL[5:-7]), entry(1428))
    assert got.metadata["unexplained_missing_minutes"] == 12


def test_duplicate_and_out_of_order_rows_fail():
    dup = continuity(table(FULL[:10] + FULL[9:]), entry(1441))
    assert not dup.passed and dup.metadata["duplicates"] == 1
    swapped = [*FULL[:10], FULL[11], FULL[10], *FULL[12:]]
    disorder = continuity(table(swapped), entry(1440))
    assert not disorder.passed and disorder.metadata["out_of_order"] == 1


def test_boundary_with_previous_day():
    prev = entry(1440, start=START - DAY)
    prev.last_open_time = START - 2 * M  # the previous day lost its last minute
    got = continuity(table(FULL), entry(1440), prev)
    assert not got.passed and got.metadata["follows_previous_day"] is False
    prev.exchange_gaps = [[START - M, START]]
    assert continuity(table(FULL), entry(1440), prev).passed


def test_sanity_flags_each_kind_of_bad_row():
    base = table(FULL[:60])
    ok = sanity(base, entry(60), fetched_before_ms=START + DAY)
    assert ok.passed
    cases = {
        "unclosed_rows": (base, START + 30 * M),
        "bad_close_time": (with_value(base, "close_time", 3, FULL[3] + 1), START + DAY),
        "ohlc_violations": (with_value(base, "high", 4, 0.5), START + DAY),
        "impossible_values": (with_value(base, "volume", 5, -1.0), START + DAY),
        "out_of_window_rows": (with_value(base, "open_time", 0, START - M), START + DAY),
        "off_minute_rows": (with_value(base, "open_time", 7, FULL[7] + 1234), START + DAY),
    }
    for kind, (tbl, fetched) in cases.items():
        got = sanity(tbl, entry(60), fetched_before_ms=fetched)
        assert not got.passed and got.metadata[kind] >= 1, kind


def test_a_row_closing_at_the_fetch_time_is_unclosed():
    """A row is closed once its close_time is before the moment it was fetched: at that very millisecond
    the exchange may still change it."""
    base = table(FULL[:60])
    last_close = base.column("close_time")[-1].as_py()
    assert sanity(base, entry(60), fetched_before_ms=last_close + 1).passed
    got = sanity(base, entry(60), fetched_before_ms=last_close)
    assert not got.passed and got.severity == "ERROR" and got.metadata["unclosed_rows"] == 1


@pytest.mark.parametrize("name,value", [("open", float("nan")), ("close", float("inf")), ("low", -2.0),
                                        ("quote_volume", float("-inf")), ("volume", -0.5)])
def test_impossible_values_fail_sanity_and_name_the_minute(name, value):
    got = sanity(with_value(table(FULL[:60]), name, 9, value), entry(60), fetched_before_ms=START + DAY)
    assert not got.passed and got.severity == "ERROR"
    assert got.metadata["impossible_values"] == 1 and ms_to_iso(FULL[9]) in got.problem


def test_off_minute_rows_are_a_warning_naming_the_minute():
    got = sanity(with_value(table(FULL[:60]), "open_time", 7, FULL[7] + 1234), entry(60), fetched_before_ms=START + DAY)
    assert not got.passed and got.severity == "WARN" and ms_to_iso(FULL[7] + 1234) in got.problem


def test_odd_exchange_values_warn_and_our_faults_error():
    base = table(FULL[:60])
    odd = sanity(with_value(base, "high", 4, 0.5), entry(60), fetched_before_ms=START + DAY)
    assert not odd.passed and odd.severity == "WARN"
    ours = sanity(base, entry(60), fetched_before_ms=START + 30 * M)
    assert not ours.passed and ours.severity == "ERROR"


def test_coverage_names_missing_and_incomplete_days_and_warns_of_a_stalled_live_day():
    today = dt.date(2021, 1, 20)
    m = Manifest.new(FUT, "UTC", dt.date(2021, 1, 1))
    stored = [dt.date(2021, 1, d) for d in (2, 3, 7, 9, 10, 11, 12)]
    m.chunks = {d.day: chunk_entry(d.day, d, complete=d.day != 10) for d in stored}
    now = START + 19 * DAY + 600 * M
    bad = coverage(m, today, now)
    assert not bad.passed and bad.severity == "ERROR"
    assert bad.problem == ("4 day(s) missing: 2021-01-04..2021-01-06, 2021-01-08; "
                           "1 day(s) over but incomplete: 2021-01-10")
    assert bad.metadata["last_complete_day"] == "2021-01-12" and bad.metadata["days_behind_yesterday"] == 7
    m.chunks = {d.day: chunk_entry(d.day, d) for d in (dt.date(2021, 1, 18), dt.date(2021, 1, 19))}
    m.chunks[20] = chunk_entry(20, today, complete=False, covered_until_ms=now - 3 * M)
    good = coverage(m, today, now)
    assert good.passed and good.metadata["live_minutes_behind"] == 3 and good.metadata["days_behind_yesterday"] == 0
    m.chunks[20] = chunk_entry(20, today, complete=False, covered_until_ms=now - 40 * M)
    stalled = coverage(m, today, now)
    assert not stalled.passed and stalled.severity == "WARN" and "40 minutes ago" in stalled.problem


def test_a_signed_kind_may_have_negative_prices_never_negative_volumes_or_nan():
    """The premium index is signed (docs/binance-kinds.md); its volumes and counts are not, and NaN is
    never a value."""
    negative = with_value(table(FULL[:60]), "close", 9, -0.0004)
    assert sanity(negative, entry(60), fetched_before_ms=START + DAY, signed=True).metadata["impossible_values"] == 0
    assert not sanity(negative, entry(60), fetched_before_ms=START + DAY).passed
    for name, value in (("close", float("nan")), ("volume", -1.0), ("open", float("-inf"))):
        got = sanity(with_value(table(FULL[:60]), name, 9, value), entry(60), START + DAY, signed=True)
        assert got.metadata["impossible_values"] == 1, name


H = 3_600_000


def events(hours, stated=None):
    """Funding events at `hours` after START (a few ms after each), with stated intervals or none (REST)."""
    return funding_table([(START + h * H + 5, "0.0001", "100.5", stated[i] if stated else None)
                          for i, h in enumerate(hours)])


@pytest.mark.parametrize(("hours", "stated", "missing"), [
    ([0, 8, 16], None, 0),  # 8-hourly
    ([0, 16], None, 1),  # 08:00 lacks: 16 h is over 8
    ([0, 4, 8, 16, 20], None, 1),  # 4-hourly missing 12:00: 8 h between two 4 h steps
    ([0, 8, 16, 20], None, 0),  # the interval changes to 4 h: not a missing event
    ([0, 8, 12, 16, 20], [8, 8, 4, 4, 4], 0),  # the archive states the change
    ([0, 8, 16, 20], [8, 4, 4, 4], 1),  # and so tells that 12:00 lacks, where REST's steps cannot
])
def test_funding_events_follow_the_interval_in_force(hours, stated, missing):
    got = funding_within_day(events(hours, stated), entry(len(hours)))
    assert got.metadata["missing_events"] == missing and got.passed == (missing == 0)
    if missing:
        assert got.severity == "WARN" and "no funding event" in got.problem


def test_a_funding_day_ending_early_names_the_event_after_its_last():
    got = funding_within_day(events([0, 8]), entry(2))
    assert not got.passed
    assert got.problem == f"no funding event at {ms_to_iso(START + 16 * H)} (8 h after the day's last)"
    live = entry(2, complete=False)
    live.covered_until_ms = START + 16 * H + 30_000  # the 16:00 event may still come
    assert funding_within_day(events([0, 8]), live).passed


def test_funding_across_midnight_and_impossible_events():
    prev = entry(3, start=START - DAY)
    prev.last_open_time = START - 8 * H + 5  # 16:00 the day before
    today = entry(2)
    assert funding_follows_previous(funding_within_day(events([0, 8, 16]), today), today, prev, START + 5).passed
    late = funding_follows_previous(funding_within_day(events([8, 16]), today), today, prev, START + 8 * H + 5)
    assert not late.passed and "no funding event in the 16 h after" in late.problem
    bad = funding_table([(START + 5, "nan", None, 8), (START + 8 * H + 5, "0.0001", "-3", None),
                         (START + 16 * H + 5, "0.0001", None, 0)])
    got = funding_sanity(bad, today, fetched_before_ms=START + DAY)
    assert not got.passed and got.severity == "ERROR" and got.metadata["impossible_values"] == 3
    future = funding_sanity(events([0, 8, 16]), today, fetched_before_ms=START + 10 * H)
    assert future.metadata["future_events"] == 1 and not future.passed
