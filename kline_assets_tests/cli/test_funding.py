"""Funding rates (issue #35): events of their own schema from `fundingRate` and the archive's monthly files,
split into local days, equal to the exchange's; a missing event named by the checks and `verify`; the
funding request budget; read_funding and the joined frame of a backtest."""

import datetime as dt

import pytest

import kline_assets
from kline_assets.settings import DatasetSpec
from kline_assets.sim.market import _ms, funding_events
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import cli, env_for, stored_rows

pytestmark = pytest.mark.e2e
FIRST, END = dt.date(2021, 6, 13), dt.date(2021, 6, 17)  # ETHUSDT's interval becomes 4 h on 2021-06-15


def expected_events(state, spec: DatasetSpec, tz: str, day: dt.date, source: str) -> list[list]:
    """The exchange's events of a local day as a chunk holds them: REST states no interval, the archive no
    mark price (and COIN-M's REST none either)."""
    start, end = parse_zone(tz).day_window_ms(day)
    events = funding_events(spec.market, spec.symbol, state.listings(spec.market)[spec.symbol], start, end - 1,
                            state.dropped(spec.market, spec.symbol))
    if source == "archive":
        return [[t, float(rate), None, hours] for t, rate, _, hours in events]
    return [[t, float(rate), None if spec.market == "coinm" else float(mark), None] for t, rate, mark, _ in events]


@pytest.mark.parametrize("source", ["rest", "archive"])
@pytest.mark.parametrize(("market", "pair"), [("futures", "BTC/USDT"), ("futures", "ETH/USDT"), ("coinm", "BTC/USD")])
def test_funding_equals_the_exchange_event_by_event(sim, tmp_path, market, pair, source):
    tz = "Asia/Tokyo"  # local days cut across UTC days, and 2021-07-01 local starts in June's UTC month
    env = env_for(sim, tmp_path, KLINE_SOURCE=source, KLINE_ALIGN_TZ=tz)
    done = cli(env, "--market", market, "--pair", pair, "--kind", "funding", "backfill", "--start", str(FIRST),
               "--end", str(END))
    assert done.returncode == 0, done.stderr
    spec = DatasetSpec(market, pair, "funding")
    store = DatasetStore.open(tmp_path / "data", spec, parse_zone(tz), FIRST)
    assert store.paths.dir == f"{spec.exchange_id}/{spec.symbol}/funding"
    manifest = store.manifest()
    assert manifest.kind == "funding"
    for day in (FIRST + dt.timedelta(n) for n in range((END - FIRST).days)):
        entry = manifest.entry_for(day)
        expected = expected_events(sim.state, spec, tz, day, source)
        assert entry.complete and entry.source == source and entry.exchange_gaps == []
        assert stored_rows(store, entry) == expected and len(expected) in (2, 3, 4, 5, 6)
    rest = [r for r in sim.state.log if r["endpoint"] == "fundingRate"]
    assert (len(rest) == 1) if source == "rest" else not rest  # one request for the days, none from the archive
    assert not [r for r in sim.state.log if r["endpoint"] == "klines"]
    verify = cli(env, "--market", market, "--pair", pair, "--kind", "funding", "verify")
    assert verify.returncode == 0 and "4 day(s) checked" in verify.stdout and "all well" in verify.stdout, \
        verify.stdout + verify.stderr
    frame = kline_assets.read_funding(market, pair, str(FIRST), str(END), data_root=tmp_path / "data")
    assert list(frame.columns) == ["funding_time", "funding_rate", "mark_price", "funding_interval_hours"]
    assert frame["funding_time"].is_monotonic_increasing and frame["funding_time"].is_unique
    indexed = kline_assets.read_funding(market, pair, str(FIRST), str(END), data_root=tmp_path / "data",
                                        datetime_index=True)
    assert indexed.index.name == "funding_datetime" and str(indexed.index.tz) == tz


def test_a_missing_event_is_stored_as_sent_and_named_by_verify(sim, tmp_path):
    sim.state.config.funding_dropped = [["futures", "BTCUSDT", _ms("2021-06-14T08:00")],
                                        ["futures", "BTCUSDT", _ms("2021-06-16T00:00")]]  # the second at midnight
    env = env_for(sim, tmp_path)
    done = cli(env, "--kind", "funding", "backfill", "--start", str(FIRST), "--end", str(END))
    assert done.returncode == 0, done.stderr
    verify = cli(env, "--kind", "funding", "verify")
    assert verify.returncode == 1, verify.stdout
    assert "2 problem(s): 2 discontinuous" in verify.stdout
    assert "2021-06-14 discontinuous: no funding event between 2021-06-14T00:00:00Z and 2021-06-14T16:00:00Z" \
        in verify.stdout
    assert "2021-06-16 discontinuous: no funding event in the 16 h after 2021-06-15's last" in verify.stdout
    frame = kline_assets.read_funding("futures", "BTC/USDT", "2021-06-14", "2021-06-15", data_root=tmp_path / "data")
    assert len(frame) == 2  # stored as the exchange sent them


def test_funding_requests_count_in_their_own_budget_and_a_429_there_holds_only_them(sim, tmp_path):
    # the simulated clock runs 60x: its 5-minute window of 2 requests turns every 5 s
    sim.state.config.funding_limit, sim.state.config.clock_speed = 2, 60.0
    env = env_for(sim, tmp_path, KLINE_KINDS="funding",
                  KLINE_PAIRS="futures:BTC/USDT,futures:ETH/USDT,futures:BNB/USDT,futures:SOL/USDT")
    done = cli(env, "backfill", "--all", "--start", "2021-06-01", "--end", "2021-06-06")
    assert done.returncode == 0, done.stderr
    asked = [r for r in sim.state.log if r["endpoint"] == "fundingRate"]
    # one request for each dataset's 5 days; the third and fourth wait for the window to turn
    assert {r["status"] for r in asked} == {200, 429} and sum(r["status"] == 200 for r in asked) == 4
    assert all(r["weight"] == 0 for r in asked)  # never the weight's
    assert not [r for r in sim.state.log if r["status"] == 418]


def test_a_funding_aware_frame_joins_every_kind_by_minute(sim, tmp_path):
    env = env_for(sim, tmp_path, KLINE_SOURCE="auto", KLINE_PAIRS="futures:BTC/USDT", KLINE_KINDS="klines+mark+funding")
    done = cli(env, "backfill", "--all", "--start", "2021-06-10", "--end", "2021-06-12")
    assert done.returncode == 0, done.stderr
    more = cli(env, "backfill", "--start", "2021-06-12", "--end", "2021-06-13")  # trade klines only
    assert more.returncode == 0, more.stderr
    frame = kline_assets.read_klines("futures", "BTC/USDT", "2021-06-11T07:58", "2021-06-11T08:03",
                                     join=("mark", "funding"), data_root=tmp_path / "data")
    events = kline_assets.read_funding("futures", "BTC/USDT", "2021-06-10", "2021-06-12", data_root=tmp_path / "data")
    marks = kline_assets.read_klines("futures", "BTC/USDT", "2021-06-11T07:58", "2021-06-11T08:03", kind="mark",
                                     data_root=tmp_path / "data")
    assert list(frame.columns[-3:]) == ["mark_close", "funding_rate", "funding_time"]
    assert frame["mark_close"].tolist() == marks["close"].tolist()
    at_0 = events[events["funding_time"] < _ms("2021-06-11T01:00")].iloc[-1]  # 00:00, in force until 08:00's
    at_8 = events[events["funding_time"] < _ms("2021-06-11T09:00")].iloc[-1]
    assert frame["funding_time"].tolist() == [at_0.funding_time] * 3 + [at_8.funding_time] * 2
    assert frame["funding_rate"].tolist() == [at_0.funding_rate] * 3 + [at_8.funding_rate] * 2
    with pytest.raises(kline_assets.ChunkUnavailable, match=r"funding rates .* lacks 1 day\(s\) of the window: "
                                                            r"2021-06-12; load them with `kline-assets"):
        kline_assets.read_klines("futures", "BTC/USDT", "2021-06-11", "2021-06-13", join=("funding",),
                                 data_root=tmp_path / "data")
