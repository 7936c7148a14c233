"""The futures price kinds (issue #35): mark, index and premium index klines are datasets of their own,
backfilled from REST and from the archive, verified, listed and read like trade klines, the simulator's rows
exactly (premium values are signed)."""

import datetime as dt
import json

import pytest

import kline_assets
from kline_assets.settings import DatasetSpec
from kline_assets.sim.market import _ms
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import cli, cli_here, env_for, expected_rows, stored_rows

pytestmark = pytest.mark.e2e
DAYS = [dt.date(2021, 6, 1), dt.date(2021, 6, 2)]


@pytest.mark.parametrize("pair", ["BTC/USDT", "ETH/USDT"])
@pytest.mark.parametrize("kind", ["mark", "index", "premium"])
@pytest.mark.parametrize("source", ["rest", "archive"])
def test_a_price_kind_is_a_dataset_of_its_own_equal_to_the_exchange(sim, tmp_path, monkeypatch, capsys, kind,
                                                                    source, pair):
    env = env_for(sim, tmp_path, KLINE_SOURCE=source)
    done = cli(env, "--pair", pair, "--kind", kind, "backfill", "--start", "2021-06-01", "--end", "2021-06-03")
    assert done.returncode == 0, done.stderr
    spec = DatasetSpec("futures", pair, kind)
    symbol = spec.symbol
    store = DatasetStore.open(tmp_path / "data", spec, parse_zone("UTC"), DAYS[0])
    assert store.paths.dir == f"binanceusdm/{symbol}/{kind}_1m"
    manifest = store.manifest()
    assert manifest.kind == kind and {e.source for e in manifest.chunks.values()} == {source}
    for day in DAYS:
        entry = manifest.entry_for(day)
        assert entry.complete and stored_rows(store, entry) == expected_rows(sim.state, spec, "UTC", day)
    assert not (tmp_path / "data" / "binanceusdm" / symbol / "1m").exists()  # trade klines: not asked for
    endpoints = {r["endpoint"] for r in sim.state.log if r["market"] == "futures"}
    assert "klines" not in endpoints

    verify = cli_here(monkeypatch, capsys, env, "--pair", pair, "--kind", kind, "verify")
    assert verify.returncode == 0 and f"binanceusdm/{symbol}/{kind}: 2 day(s) checked" in verify.stdout
    status = json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)["datasets"]
    assert [(s["dataset"], s["kind"], s["rows"]) for s in status] == [(f"binanceusdm/{symbol}/{kind}", kind, 2880)]
    frame = kline_assets.read_klines("futures", pair, "2021-06-01", "2021-06-03", kind=kind,
                                     data_root=tmp_path / "data")
    assert len(frame) == 2880 and frame["close"].iloc[0] == expected_rows(sim.state, spec, "UTC", DAYS[0])[0][4]
    if kind == "premium":  # signed values, stored as sent and passing the checks
        assert (frame["close"] < 0).any() and (frame["close"] > 0).any()


def test_kinds_are_checked_as_bad_input(sim, tmp_path):
    env = env_for(sim, tmp_path)
    for args, said in ((("--market", "spot", "--kind", "mark"), "the spot market has no mark price klines"),
                       (("--market", "spot", "--kind", "funding"), "the spot market has no funding rates"),
                       (("--kind", "fundings"), "unknown kind 'fundings'"),
                       (("--kind", "mark+index"), "one kind at a time")):
        done = cli(env, *args, "backfill", "--start", "2021-06-01", "--end", "2021-06-02")
        assert done.returncode == 2 and said in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "data").exists()


def test_kline_pairs_name_kinds_and_one_run_loads_them_all_as_assets_grouped_per_pair(sim, tmp_path, monkeypatch):
    env = env_for(sim, tmp_path, KLINE_PAIRS="futures:BTC/USDT:klines+mark+index", KLINE_SOURCE="auto",
                  KLINE_HOURLY="1")  # klines_1h: of the trade klines only
    done = cli(env, "backfill", "--all", "--start", "2021-06-01", "--end", "2021-06-02")
    assert done.returncode == 0, done.stderr
    for kind in ("klines", "mark", "index"):
        spec = DatasetSpec("futures", "BTC/USDT", kind)
        store = DatasetStore.open(tmp_path / "data", spec, parse_zone("UTC"), DAYS[0])
        assert stored_rows(store, store.manifest().entry_for(DAYS[0])) == expected_rows(sim.state, spec, "UTC",
                                                                                         DAYS[0])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    defs = kline_assets.build_definitions()
    groups = {key.path[-1]: spec.group_name for key, spec in
              ((s.key, s) for a in defs.assets for s in getattr(a, "specs", []))}
    assert {k: groups[k] for k in ("klines_1m", "mark_klines_1m", "index_klines_1m")} == dict.fromkeys(
        ("klines_1m", "mark_klines_1m", "index_klines_1m"), "binanceusdm_BTCUSDT")
    assert [k.path[-1] for k in defs.resolve_all_asset_keys()].count("klines_1h") == 1
    assert (tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1h" / "2021-06-01.parquet").exists()
    combined = cli(env, "--kind", "index", "combine")
    assert combined.returncode == 0, combined.stderr
    assert (tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "index_1m" / "combined" /
            "BTCUSDT_index_1m_all.parquet").exists()
    assert kline_assets.klines_asset_key("futures", "BTC/USDT", kind="mark").path[-1] == "mark_klines_1m"


def test_a_mark_minute_the_exchange_lacks_is_a_recorded_gap_that_verify_names(sim, tmp_path):
    sim.state.config.extra_gaps = [["futures", "BTCUSDT", _ms("2021-06-01T03:00"), _ms("2021-06-01T03:01")]]
    env = env_for(sim, tmp_path)
    done = cli(env, "--kind", "mark", "backfill", "--start", "2021-06-01", "--end", "2021-06-02")
    assert done.returncode == 0, done.stderr
    verify = cli(env, "--kind", "mark", "verify")
    assert verify.returncode == 0 and "all well" in verify.stdout
    assert "note: the exchange has no rows for 1 minute(s) in 1 gap(s), recorded as confirmed: " \
           "2021-06-01T03:00:00Z .. 2021-06-01T03:01:00Z" in verify.stdout, verify.stdout
