"""The ccxt client against the local simulator: exact data through faults, rate limits honoured."""

import datetime as dt
import time

import pytest

from kline_assets.binance.client import MAX_RETRY_AFTER_S, BinanceClient, _malformed
from kline_assets.binance.limiter import WeightLimiter
from kline_assets.binance.paging import fetch_window
from kline_assets.errors import Banned, ExchangeFinal, UnknownSymbol
from kline_assets.settings import KINDS, MARKETS
from kline_assets.sim.server import RunningSimulator, SimConfig
from kline_assets.store.schema import funding_table, rows_to_table, value_problem
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import FUT, SPOT, expected_rows, sim_requests

UTC = parse_zone("UTC")


def client(sim, market="futures", budget=2400):
    return BinanceClient(MARKETS[market], sim.url, backoff_s=0.01, limiter=WeightLimiter(budget))


def fetch_day(c, day, page=499):
    start, end = UTC.day_window_ms(day)
    got = fetch_window(c, "BTCUSDT", start, end, c.server_time_ms(), page)
    return [list(r.values()) for r in rows_to_table(got.rows).to_pylist()], got


@pytest.mark.parametrize("spec", [FUT, SPOT])
def test_rows_equal_the_exchange_through_ten_percent_faults(spec):
    with RunningSimulator(SimConfig(fault_rate=0.10, seed=7)) as sim:
        c = client(sim, spec.market)
        for n in range(8):
            day = dt.date(2021, 5, 1) + dt.timedelta(n)
            rows, _ = fetch_day(c, day, page=499 if spec.market == "futures" else 1000)
            assert rows == expected_rows(sim.state, spec, "UTC", day)
        faults = [r for r in sim_requests(sim.state) if r["fault"]]
        assert faults and c.stats.retries >= len(faults)


def test_429_retry_after_is_honoured_and_nothing_is_sent_meanwhile():
    # no exchangeInfo: the client believes in 2400/min, so the server's 429s must hold it back
    with RunningSimulator(SimConfig(futures_budget=12, clock_speed=20, missing_endpoints=["exchangeInfo"])) as sim:
        c = client(sim)
        for n in range(4):
            day = dt.date(2021, 5, 1) + dt.timedelta(n)
            rows, _ = fetch_day(c, day)
            assert rows == expected_rows(sim.state, FUT, "UTC", day)
        log = sim_requests(sim.state) + sim_requests(sim.state, "time")
        log.sort(key=lambda r: r["t"])
        limited = [r for r in log if r["status"] == 429]
        assert limited, "the budget should have been hit"
        assert not [r for r in log if r["status"] == 418]
        for hit in limited:
            inside = [r for r in log if hit["t"] < r["t"] < hit["t"] + hit["retry_after"] - 0.05]
            assert not inside, f"request sent {inside[0]['t'] - hit['t']:.2f}s after a 429 asking {hit['retry_after']}s"


def test_418_with_long_ban_is_final():
    with RunningSimulator(SimConfig()) as sim:
        sim.state.banned_until["futures"] = 10**12
        with pytest.raises(ExchangeFinal, match="418"):
            client(sim).klines("BTCUSDT", 0, 10**12, 10)


def test_451_and_unknown_symbol_are_final_after_one_request():
    with RunningSimulator(SimConfig(restricted=True)) as sim:
        with pytest.raises(ExchangeFinal, match="451"):
            client(sim).klines("BTCUSDT", 0, 10**12, 10)
        assert len(sim_requests(sim.state)) == 1
    with RunningSimulator(SimConfig()) as sim:
        with pytest.raises(UnknownSymbol, match="NOPEUSDT"):
            client(sim, "spot").klines("NOPEUSDT", 0, 10**12, 10)
        assert len(sim_requests(sim.state)) == 1


def test_gap_day_is_recorded_and_ends():
    with RunningSimulator(SimConfig()) as sim:
        c = client(sim, "spot")
        rows, got = fetch_day(c, dt.date(2020, 2, 19), page=1000)
        assert rows == expected_rows(sim.state, SPOT, "UTC", dt.date(2020, 2, 19))
        assert got.gaps == [[1582112100000, 1582133400000]] and len(rows) == 1440 - 355


def test_a_ban_is_remembered_for_the_next_process_on_this_machine():
    from kline_assets.binance import shared as process
    from kline_assets.binance.limiter import FileWindow, remembered_block

    with RunningSimulator(SimConfig()) as sim:
        sim.state.banned_until["futures"] = 10**12
        shared = WeightLimiter(2400, shared=FileWindow(f"{sim.url} futures"))  # as binance.shared makes them
        with pytest.raises(ExchangeFinal, match="418"):
            BinanceClient(MARKETS["futures"], sim.url, shared, backoff_s=0.01).klines("BTCUSDT", 0, 10**12, 10)
        assert remembered_block(f"{sim.url} futures") > 10**9
        assert remembered_block(f"{sim.url} spot") == 0  # a ban on /fapi is not one on /api
        fresh = process.client("futures", sim.url)  # as a new process would start
        assert fresh.limiter is process.limiter(f"{sim.url} futures", 2400)
        before = len(sim_requests(sim.state))
        with pytest.raises(ExchangeFinal, match="wait"):
            fresh.klines("BTCUSDT", 0, 10**12, 10)
        assert len(sim_requests(sim.state)) == before  # nothing sent during the ban


def test_the_budget_in_force_comes_from_exchange_info():
    with RunningSimulator(SimConfig(futures_budget=600)) as sim:
        c = client(sim)
        c.klines("BTCUSDT", 0, 10**12, 10)
        assert (c.limiter.budget, c.limiter.cap) == (600, 582)
        assert len(sim_requests(sim.state, "exchangeInfo")) == 1
        c.klines("BTCUSDT", 0, 10**12, 10)
        assert len(sim_requests(sim.state, "exchangeInfo")) == 1


@pytest.fixture(params=["file", "postgres"])
def window_of(request, tmp_path, monkeypatch):
    """A `Window` per origin, as separate processes open them: the machine's files, or the instance's Postgres
    (whose fallback, the file window, counts nothing while Postgres answers)."""
    from kline_assets.binance.limiter import FileWindow
    from kline_assets.binance.pgwindow import PostgresWindow

    monkeypatch.setenv("KLINE_STATE_DIR", str(tmp_path))
    if request.param == "file":
        return FileWindow
    url = request.getfixturevalue("pg_server").url()
    return lambda origin: PostgresWindow(url, origin, fallback=FileWindow(origin))


def test_processes_plan_from_one_shared_minute_count(window_of):
    """Two limiters on one origin stand for two processes (a UI backfill and the live sensor's run, or two
    run workers on two machines): together they never reserve more than the cap in a minute; the header
    floor is shared too."""
    import math
    import time

    window = window_of

    start = time.time()
    delta = math.ceil(start / 60) * 60 + 59.4 - start  # 0.6 s before a minute ends, whatever now is
    clock = lambda: time.time() + delta  # noqa: E731
    a = WeightLimiter(100, clock=clock, shared=window("http://one.example"))
    b = WeightLimiter(100, clock=clock, shared=window("http://one.example"))
    minute = int(clock() // 60)
    a.acquire(60)
    b.acquire(37)  # cap 97 reached between the two
    b.acquire(10)  # waits for the next minute although b alone used only 37
    assert int(clock() // 60) == minute + 1
    assert not window("http://one.example").reserve(minute + 1, 88, 97)[0]  # 10 + 88 > 97
    sent_in = a.acquire(1)
    a.observe(95, sent_in)  # the exchange says 95 are used (other machines on the IP): a floor for both
    assert not window("http://one.example").reserve(minute + 1, 3, 97)[0]
    assert window("http://other.example").reserve(minute + 1, 97, 97)[0]  # per origin


def test_a_retry_after_beyond_the_cap_fails_at_once_and_blocks_this_origin():
    c = BinanceClient(MARKETS["futures"], "http://127.0.0.1:9", limiter=WeightLimiter(2400))
    began = time.monotonic()
    with pytest.raises(Banned, match="429"):
        c._rate_limited(429, {"Retry-After": str(MAX_RETRY_AFTER_S + 60)}, c.limiter)
    assert time.monotonic() - began < 1
    with pytest.raises(Banned):  # nothing is sent meanwhile, and nothing waits
        c.klines("BTCUSDT", 0, 10**12, 10)
    assert time.monotonic() - began < 1


def test_a_header_from_a_request_sent_in_the_previous_minute_does_not_stall_the_new_one():
    """At a minute's turn, responses to requests reserved in the old minute carry the old minute's count."""
    now = [600.0 * 60 + 59.9]
    limiter = WeightLimiter(100, clock=lambda: now[0])
    old = limiter.acquire(90)
    now[0] += 0.2  # the next minute
    fresh = limiter.acquire(1)
    limiter.observe(96, old)  # the late answer to the old request: not this minute's count
    assert fresh == old + 1
    started = time.monotonic()
    limiter.acquire(90)  # fits in the new minute: no wait
    assert time.monotonic() - started < 0.5
    limiter.observe(97, fresh)  # a header for this minute still counts
    assert limiter._used == 97


def test_the_shared_count_never_falls_back_to_an_earlier_minute(window_of):
    """A process whose clock is still in minute m must not reset the count another process already moved
    to minute m+1: together they stay within the cap."""
    ahead, behind = window_of("http://skew.example"), window_of("http://skew.example")
    assert ahead.reserve(1001, 90, 97)[0]
    assert behind.reserve(1000, 5, 97)[0]  # counted in minute 1001, where the count is
    assert not behind.reserve(1000, 5, 97)[0]  # 90 + 5 + 5 > 97
    assert not ahead.reserve(1001, 3, 97)[0]


def test_a_retry_after_reaches_every_worker_of_a_postgres_instance(pg_server, tmp_path, monkeypatch):
    """A 429's Retry-After received by one worker holds every other one before its next request (on one
    machine a process learns it as it starts: `remembered_block`, test above)."""
    from kline_assets.binance.limiter import FileWindow
    from kline_assets.binance.pgwindow import PostgresWindow

    monkeypatch.setenv("KLINE_STATE_DIR", str(tmp_path))
    url = pg_server.url()
    one, other = (PostgresWindow(url, "http://ban.example", fallback=FileWindow("http://ban.example")) for _ in "12")
    limiter = WeightLimiter(100, shared=one)
    limiter.block(MAX_RETRY_AFTER_S + 300)  # an IP ban (418)
    granted, banned = other.reserve(int(time.time() // 60), 1, 97)
    assert not granted and banned > time.time() + MAX_RETRY_AFTER_S + 290
    began = time.monotonic()
    with pytest.raises(Banned):  # longer than a run waits: the other worker fails at once, sending nothing
        WeightLimiter(100, shared=other).acquire(1)
    assert time.monotonic() - began < 1


def test_an_unreachable_postgres_falls_back_to_the_machines_count_with_one_warning(tmp_path, monkeypatch, caplog):
    from kline_assets.binance.limiter import FileWindow
    from kline_assets.binance.pgwindow import PostgresWindow

    monkeypatch.setenv("KLINE_STATE_DIR", str(tmp_path))
    down = PostgresWindow("postgresql://nobody@127.0.0.1:9/none", "http://down.example",
                          fallback=FileWindow("http://down.example"))
    assert down.reserve(1000, 90, 97) == (True, 0.0)
    assert down.reserve(1000, 10, 97) == (False, 0.0)  # the machine's count goes on
    assert FileWindow("http://down.example").reserve(1000, 7, 97) == (True, 0.0)
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "unavailable" in caplog.records[0].message


def test_funding_pages_count_in_their_own_limiter_and_broken_ones_never_are_events():
    with RunningSimulator() as sim:
        c = client(sim)
        start, end = UTC.day_window_ms(dt.date(2021, 6, 1))
        got = c.funding("BTCUSDT", start, end - 1, 1000)
        assert [t // 3_600_000 % 24 for t, *_ in got] == [0, 8, 16] and all(m is not None for _, _, m, _ in got)
        assert c.funding_limiter._used == 1 and c.limiter._used == 1  # the weight: the exchangeInfo read only
    for page, said in (([{"fundingTime": 2, "fundingRate": "0.1"}, {"fundingTime": 1, "fundingRate": "0.1"}],
                        "not strictly ascending"),
                       ([{"fundingTime": 1, "fundingRate": "0.1"}, {"fundingTime": 1, "fundingRate": "0.2"}],
                        "not strictly ascending"),
                       ([{"fundingTime": "1", "fundingRate": "0.1"}], "without an integer fundingTime"),
                       ([{"fundingTime": 1}], "without an integer fundingTime"),
                       ({"code": -1003, "msg": "busy"}, "error -1003")):
        assert said in _malformed("GetFundingRate", page)
    for events, said in (([(1, "nan", None, None)], "the event"), ([(1, "0.1", "-5", None)], "the event"),
                         ([(1, "0.1", None, 0)], "the event"), ([(2, "0.1", None, 8), (1, "0.1", None, 8)],
                                                                 "duplicate or out-of-order")):
        assert said in value_problem(funding_table(events), KINDS["funding"])
