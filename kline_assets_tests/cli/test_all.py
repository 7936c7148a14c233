"""`--all`: every configured dataset (selectors included) in one command, sharing each market's budget."""

import datetime as dt
import json

import pytest

from kline_assets.archive.store import DatasetStore
from kline_assets.settings import DatasetSpec
from kline_assets.sim.server import RunningSimulator, SimConfig
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import cli, env_for, expected_rows, stored_rows

UTC = parse_zone("UTC")


@pytest.fixture
def market_sim():
    with RunningSimulator(SimConfig(many_symbols=3, unserved=[["futures", "C001USDT"]])) as running:
        yield running


def days_ago(n: int) -> str:
    return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=n)).isoformat()


def test_each_verb_over_every_dataset(market_sim, tmp_path):
    env = env_for(market_sim, tmp_path, KLINE_PAIRS="futures:BTC/USDT,spot:*/USDT")
    bad = cli(env, "--pair", "ETH/USDT", "backfill", "--all")
    assert bad.returncode == 2 and "--all and --pair" in bad.stderr and not (tmp_path / "data").exists()
    done = cli(env, "backfill", "--all", "--start", days_ago(3), "--end", days_ago(1))
    assert done.returncode == 0, done.stderr
    assert "8 dataset(s) (1 futures, 7 spot), 2 day(s) each" in done.stdout
    # a process per market (separate budgets): spot's seven datasets report one progress line
    assert "spot: 7/7 datasets, 14/14 days" in done.stderr and "binanceusdm/BTCUSDT: 2/2 days" in done.stderr
    root = tmp_path / "data"
    for spec in (DatasetSpec("spot", "C002/USDT"), DatasetSpec("futures", "BTC/USDT")):
        store = DatasetStore(root, spec, UTC, dt.date(2021, 1, 1))
        for n in (3, 2):
            day = dt.date.fromisoformat(days_ago(n))
            entry = store.manifest().entry_for(day)
            assert stored_rows(store.paths.resolve(entry.file)) == expected_rows(market_sim.state, spec, "UTC", day)
    status = json.loads(cli(env, "status", "--json").stdout)["datasets"]
    assert len(status) == 8 and all(s["trading"] for s in status if s["market"] == "spot")
    live = cli(env, "--market", "spot", "live", "--all", "--cycles", "1")
    assert live.returncode == 0, live.stderr
    assert "7/7 datasets hold the minute" in live.stderr
    assert {r["symbol"] for r in market_sim.state.log if r["endpoint"] == "klines" and r["market"] == "futures"} \
        == {"BTCUSDT"}  # only the backfill asked futures: --market spot narrowed live
    verify = cli(env, "verify", "--all")
    assert verify.returncode == 0 and "verified 8 dataset(s): all ok" in verify.stdout
    store = DatasetStore(root, DatasetSpec("spot", "ETH/USDT"), UTC, dt.date(2021, 1, 1))
    entry = store.manifest().entry_for(dt.date.fromisoformat(days_ago(3)))
    store.paths.resolve(entry.file).unlink()
    broken = cli(env, "verify", "--all", "--repair")
    assert broken.returncode == 0, broken.stdout + broken.stderr
    assert "verified 8 dataset(s): all ok" in broken.stdout and "after repair" in broken.stdout


def test_a_failing_dataset_does_not_stop_the_others(market_sim, tmp_path):
    env = env_for(market_sim, tmp_path, KLINE_PAIRS="futures:*/USDT")
    done = cli(env, "backfill", "--all", "--start", days_ago(2), "--end", days_ago(1))
    assert done.returncode == 1
    assert "1 of 7 dataset(s) failed" in done.stderr and "binanceusdm/C001USDT:" in done.stderr
    root = tmp_path / "data"
    for symbol in ("BTC", "ETH", "BNB", "SOL", "C000", "C002"):
        store = DatasetStore(root, DatasetSpec("futures", f"{symbol}/USDT"), UTC, dt.date(2021, 1, 1))
        assert store.manifest().entry_for(dt.date.fromisoformat(days_ago(2))).complete
    assert not (root / "binanceusdm" / "C001USDT" / "1m" / "manifest.json").exists()
