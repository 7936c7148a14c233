"""COIN-M (issue #35): `--market coinm`, its perpetual `BTC/USD` as `BTCUSD_PERP`, every kline kind from REST
(windows the exchange answers from their end) and from the archive's `futures/cm`, row by row."""

import datetime as dt

import pytest

import kline_assets
from kline_assets.settings import DatasetSpec
from kline_assets.sim.market import MINUTE, _ms
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import cli, env_for, expected_rows, stored_rows

pytestmark = pytest.mark.e2e
DAY = dt.date(2021, 6, 1)


@pytest.mark.parametrize("source", ["rest", "archive"])
@pytest.mark.parametrize("kind", ["klines", "mark", "index", "premium"])
def test_each_coinm_kind_equals_the_exchange_row_by_row(sim, tmp_path, kind, source):
    # 700 minutes the exchange has nothing in: more than a page, so whole windows answer empty
    sim.state.config.extra_gaps = [["coinm", "BTCUSD_PERP", _ms("2021-06-01T03:00"), _ms("2021-06-01T14:40")]]
    env = env_for(sim, tmp_path, KLINE_SOURCE=source)
    done = cli(env, "--market", "coinm", "--kind", kind, "backfill", "--start", "2021-06-01", "--end", "2021-06-02")
    assert done.returncode == 0, done.stderr
    spec = DatasetSpec("coinm", "BTC/USD", kind)
    store = DatasetStore.open(tmp_path / "data", spec, parse_zone("UTC"), DAY)
    assert store.paths.dir == f"binancecoinm/BTCUSD_PERP/{spec.kind_info.folder}"
    manifest = store.manifest()
    assert (manifest.market, manifest.symbol, manifest.pair, manifest.kind) == ("coinm", "BTCUSD_PERP", "BTC/USD",
                                                                              kind)
    entry = manifest.entry_for(DAY)
    expected = expected_rows(sim.state, spec, "UTC", DAY)
    assert entry.complete and entry.source == source and len(expected) == 1440 - 700
    assert stored_rows(store, entry) == expected
    assert entry.exchange_gaps == [[_ms("2021-06-01T03:00"), _ms("2021-06-01T14:40")]]
    asked = [r for r in sim.state.log if r["market"] != "archive"]
    assert asked and {r["market"] for r in asked} == {"coinm"}
    if kind == "index":  # asked by the perpetual's pair
        assert {r["symbol"] for r in asked if r["endpoint"] == "indexPriceKlines"} <= {"BTCUSD"}
    verify = cli(env, "--market", "coinm", "--kind", kind, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    frame = kline_assets.read_klines("coinm", "BTC/USD", "2021-06-01", "2021-06-02", kind=kind,
                                     data_root=tmp_path / "data")
    assert len(frame) == len(expected) and frame["open_time"].iloc[-1] == DAY_END - MINUTE


DAY_END = _ms("2021-06-02T00:00")


def test_coinm_selectors_take_perpetuals_and_an_unlisted_pair_falls_back_to_btc_usd(sim, tmp_path):
    env = env_for(sim, tmp_path, KLINE_PAIRS="coinm:*/USD:klines+mark")
    done = cli(env, "backfill", "--all", "--start", "2021-06-01", "--end", "2021-06-02")
    assert done.returncode == 0, done.stderr
    done = cli(env, "status")
    for symbol in ("BTCUSD_PERP", "ETHUSD_PERP", "BNBUSD_PERP"):
        assert f"binancecoinm/{symbol}" in done.stdout and f"binancecoinm/{symbol}/mark" in done.stdout
    assert "BTCUSD_261225" not in done.stdout  # a dated future: not a perpetual
    fallback = cli(env, "--market", "coinm", "--pair", "BTC/USDT", "backfill", "--start", "2021-06-01",
                   "--end", "2021-06-02")
    assert fallback.returncode == 0, fallback.stderr
    assert "the coinm market does not list BTC/USDT; using BTC/USD instead (data under BTCUSD_PERP)" in \
        fallback.stdout + fallback.stderr
    assert (tmp_path / "data" / "binancecoinm" / "BTCUSD_PERP" / "1m" / "manifest.json").exists()
    assert not (tmp_path / "data" / "binancecoinm" / "BTCUSDT_PERP").exists()
