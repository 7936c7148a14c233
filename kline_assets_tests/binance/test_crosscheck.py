"""`verify --cross-check N`: which archive days are fetched again from REST."""

import datetime as dt

from kline_assets.binance.crosscheck import sample


def test_the_sample_is_drawn_from_the_whole_window_not_its_oldest_days():
    days = [dt.date(2021, 1, 1) + dt.timedelta(n) for n in range(100)]
    drawn = [sample(days, 5) for _ in range(40)]
    assert all(len(d) == 5 == len(set(d)) and d == sorted(d) and set(d) <= set(days) for d in drawn)
    seen = {day for d in drawn for day in d}
    assert len(seen) > 50 and max(seen) > days[50]
    assert sample(days[:3], 5) == days[:3]
