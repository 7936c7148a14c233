"""Which days of a window a dataset lacks (what `read_klines` raises about), from the manifest alone."""

import datetime as dt

from kline_assets.store.manifest import Manifest
from kline_assets.store.reader import day_runs, uncovered_days
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import FUT, chunk_entry

UTC = parse_zone("UTC")
D = dt.date(2024, 1, 1)


def ms(day: dt.date, minutes: int = 0) -> int:
    return UTC.midnight_ms(day) + minutes * 60_000


def manifest(*entries) -> Manifest:
    m = Manifest.new(FUT, "UTC", D)
    m.chunks = {e.index: e for e in entries}
    return m


def test_absent_and_short_days_lack_and_recorded_gaps_do_not():
    day = [D + dt.timedelta(n) for n in range(6)]
    m = manifest(chunk_entry(1, day[0], gaps=[(ms(day[0], 10), ms(day[0], 20))]),  # a confirmed gap: held
                 chunk_entry(2, day[1], complete=False, covered_until_ms=ms(day[1], 600)),  # stopped at 10:00
                 chunk_entry(4, day[3]), chunk_entry(5, day[4]))
    now = ms(D + dt.timedelta(30))
    assert uncovered_days(m, UTC, ms(day[0]), ms(day[5]), now) == [day[1], day[2]]
    assert uncovered_days(m, UTC, ms(day[1]), ms(day[1], 600), now) == []  # the window ends where it stopped
    assert uncovered_days(m, UTC, None, None, now) == [day[1], day[2]]  # open bounds: the dataset's extent
    assert uncovered_days(m, UTC, ms(D - dt.timedelta(2)), ms(day[1]), now) == [D - dt.timedelta(2),
                                                                             D - dt.timedelta(1)]
    assert day_runs([day[0], day[1], day[2], day[4]]) == "2024-01-01..2024-01-03, 2024-01-05"


def test_today_is_live():
    today = D + dt.timedelta(1)
    m = manifest(chunk_entry(1, D), chunk_entry(2, today, complete=False, covered_until_ms=ms(today, 60)))
    assert uncovered_days(m, UTC, ms(D), ms(today + dt.timedelta(1)), ms(today, 300)) == []  # lagging: fine
    only_yesterday = manifest(chunk_entry(1, D))
    assert uncovered_days(only_yesterday, UTC, ms(D), None, ms(today, 1)) == []  # open end: its last day
    window = (ms(D), ms(today + dt.timedelta(1)))
    assert uncovered_days(only_yesterday, UTC, *window, ms(today, 1)) == []  # today's first minutes: not yet
    assert uncovered_days(only_yesterday, UTC, *window, ms(today, 300)) == [today]  # no chunk at 05:00
