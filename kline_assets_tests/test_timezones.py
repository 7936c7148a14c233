import datetime as dt

import pytest

from kline_assets.errors import BadInput
from kline_assets.timezones import ceil_to_local_day, parse_instant, parse_zone


@pytest.mark.parametrize(("tz", "day", "minutes"), [
    ("Europe/Zurich", dt.date(2021, 3, 28), 1380),
    ("Europe/Zurich", dt.date(2021, 10, 31), 1500),
    ("Europe/Zurich", dt.date(2021, 6, 1), 1440),
    ("UTC", dt.date(2021, 3, 28), 1440),
    ("+02:00", dt.date(2021, 3, 28), 1440),
])
def test_day_windows_are_real_minutes(tz, day, minutes):
    start, end = parse_zone(tz).day_window_ms(day)
    assert (end - start) // 60_000 == minutes


def test_fixed_offset_maps_to_etc_zone_with_inverted_sign():
    zone = parse_zone("+02:00")
    assert (zone.name, zone.iana) == ("+02:00", "Etc/GMT-2")
    start, _ = zone.day_window_ms(dt.date(2021, 1, 1))
    assert start == int(dt.datetime(2020, 12, 31, 22, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert parse_zone("-05:00").iana == "Etc/GMT+5"
    assert parse_zone("Z").name == "UTC"


@pytest.mark.parametrize("bad", ["Mars/Olympus", "+05:30", "+25:00", "", "../etc/passwd"])
def test_bad_zones_are_bad_input(bad):
    with pytest.raises(BadInput):
        parse_zone(bad)


def test_instants_and_rounding():
    zone = parse_zone("Europe/Zurich")
    assert parse_instant("2021-01-01", zone).utcoffset() == dt.timedelta(hours=1)
    assert parse_instant("2021-01-01T00:00:00Z", zone).utcoffset() == dt.timedelta(0)
    # 2021-01-01T00:00Z is 01:00 in Zurich, so an exclusive end there still needs that local day
    assert ceil_to_local_day(parse_instant("2021-01-01T00:00:00Z", zone), zone) == dt.date(2021, 1, 2)
    assert ceil_to_local_day(parse_instant("2021-01-02", zone), zone) == dt.date(2021, 1, 2)
    with pytest.raises(BadInput):
        parse_instant("yesterday", zone)
