"""The pager on a fake exchange: gaps, empty pages, repeats, never an unclosed row, always ends."""

from kline_assets.binance.paging import add_gap, fetch_window
from kline_assets.settings import MARKETS
from kline_assets_tests.helpers import FakeSource, M


def test_gaps_inside_and_at_both_ends_are_confirmed():
    opens = [t * M for t in range(10, 20)] + [t * M for t in range(25, 30)]
    src = FakeSource(opens, now=10**12)
    got = fetch_window(src, "X", 0, 40 * M, src.now, page=4)
    assert [r[0] for r in got.rows] == opens
    assert got.gaps == [[0, 10 * M], [20 * M, 25 * M], [30 * M, 40 * M]]
    assert got.covered_until_ms == 40 * M


def test_empty_window_is_one_request_and_one_gap():
    src = FakeSource([], now=10**12)
    got = fetch_window(src, "X", 0, 1440 * M, src.now, page=499)
    assert (got.rows, got.gaps, got.requests) == ([], [[0, 1440 * M]], 1)


def test_current_minute_is_never_stored():
    now = 100 * M + 30_000  # half-way through minute 100
    src = FakeSource([t * M for t in range(0, 200)], now=now)
    got = fetch_window(src, "X", 0, 1440 * M, now, page=1000)
    assert got.rows[-1][0] == 99 * M and all(r[6] < now for r in got.rows)
    assert got.covered_until_ms == 100 * M and got.gaps == []


def test_repeated_rows_across_pages_are_dropped():
    class Repeating(FakeSource):
        def klines(self, symbol, start, end, limit):
            return super().klines(symbol, max(0, start - M), end, limit)  # one row of overlap

    src = Repeating([t * M for t in range(50)], now=10**12)
    got = fetch_window(src, "X", 0, 50 * M, src.now, page=10)
    assert [r[0] for r in got.rows] == [t * M for t in range(50)]


def test_off_minute_open_times_are_stored_as_sent():
    opens = [0, M + 3000, 2 * M, 3 * M]
    src = FakeSource(opens, now=10**12)
    got = fetch_window(src, "X", 0, 4 * M, src.now, page=10)
    assert [r[0] for r in got.rows] == opens and got.gaps == []


def test_add_gap_merges_adjacent():
    gaps = []
    add_gap(gaps, 0, 10)
    add_gap(gaps, 10, 20)
    add_gap(gaps, 30, 30)
    assert gaps == [[0, 20]]


def test_off_minute_row_at_a_page_end_does_not_hide_the_next():
    opens = [0, M, 2 * M + 3000, 3 * M, 4 * M]
    src = FakeSource(opens, now=10**12)
    got = fetch_window(src, "X", 0, 5 * M, src.now, page=3)
    assert [r[0] for r in got.rows] == opens and got.gaps == []


def test_a_server_that_does_not_advance_is_not_taken_for_a_gap():
    class Stuck(FakeSource):
        def klines(self, symbol, start, end, limit):
            return super().klines(symbol, 0, end, limit)  # ignores startTime

    src = Stuck([t * M for t in range(20)], now=10**12)
    got = fetch_window(src, "X", 0, 20 * M, src.now, page=5)
    assert [r[0] for r in got.rows] == [t * M for t in range(5)]
    assert got.gaps == [] and got.covered_until_ms == 5 * M


def test_silence_at_the_live_edge_is_not_a_gap_until_the_window_is_over():
    opens = [t * M for t in range(50)]  # the exchange has nothing after minute 49 yet
    live = FakeSource(opens, now=60 * M + 5000)
    got = fetch_window(live, "X", 0, 1440 * M, live.now, page=1000)
    assert got.gaps == [] and got.covered_until_ms == 50 * M
    just_over = fetch_window(live, "X", 0, 60 * M, 60 * M + 5000, page=1000)
    assert just_over.gaps == [] and just_over.covered_until_ms == 50 * M
    settled = fetch_window(live, "X", 0, 60 * M, 61 * M + 1, page=1000)
    assert settled.gaps == [[50 * M, 60 * M]] and settled.covered_until_ms == 60 * M


def test_an_off_minute_row_still_open_at_the_live_edge_is_not_stored():
    """Caught by the close_time filter alone: the row opens before the closed horizon (10:00.003 < 11:00)
    but closes after now (11:00.001), so it is still open and nothing from it on is claimed."""
    opens = [t * M for t in range(10)] + [10 * M + 3000]
    src = FakeSource(opens, now=11 * M + 1000)
    got = fetch_window(src, "X", 0, 1440 * M, src.now, page=1000)
    assert [r[0] for r in got.rows] == [t * M for t in range(10)]
    assert got.covered_until_ms == 10 * M and got.gaps == []  # the next run asks again from 00:10


def test_a_row_of_the_open_minute_that_claims_to_be_closed_is_not_stored():
    """Caught by the closed horizon alone: a server that ignores endTime sends the current minute with a
    close_time in the past; its open_time is at or after the horizon, so it is still open."""
    class Lying(FakeSource):
        def klines(self, symbol, start, end, limit):
            rows = super().klines(symbol, start, 10**15, limit)
            return [[*r[:6], min(r[6], self.now - 1), *r[7:]] for r in rows]

    src = Lying([t * M for t in range(12)], now=11 * M + 1000)
    got = fetch_window(src, "X", 0, 1440 * M, src.now, page=1000)
    assert [r[0] for r in got.rows] == [t * M for t in range(11)] and got.covered_until_ms == 11 * M


def test_a_page_asks_for_no_more_rows_than_minutes_are_left():
    """USD-M weighs a request by its limit: a live minute's 2 rows weigh 1, not the 5 of a 1,000-row page."""
    class Asked(FakeSource):
        limits: list[int] = []

        def klines(self, symbol, start, end, limit):
            self.limits.append(limit)
            return super().klines(symbol, start, end, limit)

    now = 100 * M + 2_000
    src = Asked([t * M for t in range(200)], now=now)
    got = fetch_window(src, "X", 98 * M, 1440 * M, now, page=1000)
    assert [r[0] for r in got.rows] == [98 * M, 99 * M] and src.limits == [2]
    src.limits.clear()
    whole = fetch_window(src, "X", 0, 100 * M, now, page=30)
    assert len(whole.rows) == 100 and src.limits == [30, 30, 30, 11]  # from 89:00.001: 11 minutes begun


def test_coinm_pages_ask_windows_no_longer_than_their_limit_and_confirm_empty_ones():
    class FromEnd(FakeSource):
        """COIN-M: a window larger than `limit` answers its last `limit` rows."""

        market = MARKETS["coinm"]

        def klines(self, symbol, start, end, limit):
            self.calls += 1
            assert end - start < limit * M, "a window larger than its limit loses its first rows"
            rows = [t for t in self.opens if start <= t <= end][-limit:]
            return [[t, "1", "1", "1", "1", "1", t + M - 1, "1", 1, "1", "1", "0"] for t in rows]

    opens = [t * M for t in range(1440) if not 100 <= t < 130 and not 400 <= t < 1000]  # 30 and 600 minutes
    src = FromEnd(opens, now=10**12)
    got = fetch_window(src, "X", 0, 1440 * M, src.now, page=499)
    assert [r[0] for r in got.rows] == opens
    assert got.gaps == [[100 * M, 130 * M], [400 * M, 1000 * M]] and got.covered_until_ms == 1440 * M
