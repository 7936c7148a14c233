"""KLINE_PAIRS selectors: resolved from exchangeInfo, cached in the data root, never slow at load, and
symbols that stop trading keep their datasets."""

import json
import logging
import socket
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from kline_assets.binance.listing import Listing
from kline_assets.defs.component import build_definitions
from kline_assets.defs.datasets import resolve_datasets
from kline_assets.defs.names import LIVE_SENSOR, klines_key
from kline_assets.errors import BadInput
from kline_assets.settings import DatasetSpec, Selector, parse_pairs
from kline_assets.sim.hostile import Hostile
from kline_assets.sim.server import RunningSimulator, SimConfig
from kline_assets.store.backend import open_root
from kline_assets.store.paths import listing_cache
from kline_assets_tests.helpers import FUT, SPOT, cli, cli_here, env_for, live_datasets


@pytest.fixture
def market_sim():
    """Three more USDT symbols per market; spot C001USDT no longer trades."""
    with RunningSimulator(SimConfig(many_symbols=3, delisted=[["spot", "C001USDT"]])) as running:
        yield running


def settings_for(make_settings, sim, pairs):
    return replace(make_settings(pairs=pairs), spot_url=sim.url, futures_url=sim.url)


def names(settings):
    return [f"{s.market}:{s.pair}" for s in settings.pairs]


def test_parse_pairs_mixes_selectors_and_pairs():
    specs, selectors = parse_pairs("futures:*/usdt, spot:BTC/USDT,futures:*/USDT")
    assert specs == [SPOT] and selectors == [Selector("futures", "USDT")]
    for bad in ("futures:*", "futures:*/", "futures:ETH*/USDT", "spot:*/US-DT"):
        with pytest.raises(BadInput, match=r"selector|BASE/QUOTE"):
            parse_pairs(bad)


def test_selectors_pick_trading_symbols_of_the_quote_after_the_explicit_pairs(market_sim, make_settings):
    settings = resolve_datasets(settings_for(make_settings, market_sim, "spot:ETH/BTC,futures:*/USDT,spot:*/USDT"))
    futures = ["futures:BNB/USDT", "futures:BTC/USDT", "futures:C000/USDT", "futures:C001/USDT",
               "futures:C002/USDT", "futures:ETH/USDT", "futures:SOL/USDT"]  # no dated BTCUSDT_261225
    spot = ["spot:BNB/USDT", "spot:BTC/USDT", "spot:C000/USDT", "spot:C002/USDT", "spot:ETH/USDT",
            "spot:SOL/USDT"]  # C001 does not trade, ETHBTC is another quote
    assert names(settings) == ["spot:ETH/BTC", *futures, *spot]
    assert not settings.retired
    keys = build_definitions(settings).resolve_all_asset_keys()
    assert len([k for k in keys if k.path[-1] == "klines_1m"]) == 14


def test_listing_is_cached_and_serves_when_the_exchange_is_down(market_sim, make_settings, caplog):
    settings = settings_for(make_settings, market_sim, "futures:*/USDT")
    first = resolve_datasets(settings)
    cached = Path(settings.data_root) / listing_cache("futures")
    body = json.loads(cached.read_text())
    assert body["symbols"]["C000USDT"] == ["C000", "USDT", "TRADING", True]
    body["fetched_at_ms"] -= 2 * 3600 * 1000  # stale: asked again, but the exchange is gone
    cached.write_text(json.dumps(body))
    down = replace(settings, futures_url="http://127.0.0.1:9", spot_url="http://127.0.0.1:9")
    with caplog.at_level(logging.WARNING, logger="kline_assets"):
        assert resolve_datasets(down).pairs == first.pairs
    assert "exchangeInfo of futures unavailable" in caplog.text and "2.0 h ago" in caplog.text


def test_loading_never_asks_the_exchange(make_settings, caplog):
    """An origin that accepts connections and never answers: loading takes well under a second, connects to
    nothing, defines the explicit pairs (one nobody asked about keeps its name) and says how to refresh."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        settings = replace(make_settings(pairs="futures:BTC/USDT,futures:ETH/USDT,spot:*/USDT,futures:*/USDT"),
                           spot_url=url, futures_url=url, coinm_url=url, archive_url=url)
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="kline_assets"):
            defs = build_definitions(settings)
            keys = [k for k in defs.resolve_all_asset_keys() if k.path[-1] == "klines_1m"]
        took = time.monotonic() - began
        silent.setblocking(False)
        with pytest.raises(BlockingIOError):
            silent.accept()  # nobody connected
    finally:
        silent.close()
    assert took < 1, took
    assert sorted(k.path[:2] for k in keys) == [["binanceusdm", "BTCUSDT"], ["binanceusdm", "ETHUSDT"]]
    assert "KLINE_PAIRS spot:*/USDT: no exchangeInfo stored yet" in caplog.text
    assert "kline-assets verify --all" in caplog.text and "dg utils refresh-defs-state" in caplog.text
    assert not Path(settings.data_root).exists() and not Path(settings.log_dir).exists()  # nothing written


def test_a_symbol_that_stops_trading_keeps_its_dataset_and_live_leaves_it(make_settings, tmp_path, monkeypatch, capsys):
    with RunningSimulator(SimConfig(many_symbols=2)) as sim:
        env = env_for(sim, tmp_path, KLINE_PAIRS="futures:*/USDT")
        done = cli(env, "--pair", "C001/USDT", "backfill", "--start", "2021-01-01", "--end", "2021-01-02")
        assert done.returncode == 0, done.stderr
    delisted = [["futures", "C001USDT"], ["futures", "C000USDT"]]
    with RunningSimulator(SimConfig(many_symbols=2, delisted=delisted)) as sim:
        env = env_for(sim, tmp_path, KLINE_PAIRS="futures:*/USDT")
        (tmp_path / "data" / ".kline_assets" / "listing_futures.json").unlink(missing_ok=True)  # news
        settings = resolve_datasets(settings_for(make_settings, sim, "futures:*/USDT"))
        gone = DatasetSpec("futures", "C001/USDT")
        assert gone in settings.pairs and settings.retired == {gone}  # C000 had no data: simply not selected
        assert DatasetSpec("futures", "C000/USDT") not in settings.pairs
        assert gone not in settings.live_pairs and FUT in settings.live_pairs
        status = cli_here(monkeypatch, capsys, env, "status")
        assert "binanceusdm/C001USDT" in status.stdout and "no longer trading" in status.stdout
        status = json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)
        assert status["datasets"][0]["trading"] is False
        live = cli(env, "live", "--all", "--cycles", "1")
        assert live.returncode == 0, live.stderr
        assert "binanceusdm/C001USDT no longer trades" in live.stderr
        assert not any(r["symbol"] == "C001USDT" for r in sim.state.log if r["endpoint"] == "klines")


def test_listing_reads_exchange_info_fields():
    info = {"symbols": [{"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT", "status": "TRADING",
                         "contractType": "PERPETUAL"},
                        {"symbol": "ETHUSDT_261225", "baseAsset": "ETH", "quoteAsset": "USDT", "status": "TRADING",
                         "contractType": "CURRENT_QUARTER"},
                        {"symbol": "XUSDT", "baseAsset": "X", "quoteAsset": "USDT", "status": "SETTLING"}]}
    listing = Listing.from_exchange_info("futures", info, 0)
    assert listing.select("USDT") == [FUT]
    assert listing.trading("BTCUSDT") and not listing.trading("XUSDT") and not listing.trading("NOPE")


def test_an_exchange_info_listing_no_symbol_keeps_the_cached_listing(market_sim, make_settings):
    settings = settings_for(make_settings, market_sim, "futures:*/USDT")
    first = resolve_datasets(settings)
    cached = Path(settings.data_root) / listing_cache("futures")
    body = json.loads(cached.read_text())
    body["fetched_at_ms"] -= 2 * 3600 * 1000  # stale: asked again
    cached.write_text(json.dumps(body))
    with Hostile(market_sim.url, "no_symbols", target="exchangeInfo") as empty:
        again = resolve_datasets(replace(settings, futures_url=empty.url, spot_url=empty.url))
    assert again.pairs == first.pairs and not again.retired
    assert json.loads(cached.read_text())["symbols"] == body["symbols"]


def test_an_explicit_pair_the_listing_shows_no_longer_trading_is_retired(market_sim, make_settings, instance):
    """No selector of its market: the cached listing still says the symbol stopped trading, so live (the
    command and the sensor) leaves it alone."""
    settings = settings_for(make_settings, market_sim, "futures:BTC/USDT,spot:*/USDT")
    Listing("futures", int(time.time() * 1000), {"BTCUSDT": ("BTC", "USDT", "BREAK", True)}).save(
        open_root(settings.data_root))
    resolved = resolve_datasets(settings)
    assert FUT in resolved.pairs and FUT in resolved.retired and FUT not in resolved.live_pairs
    defs = build_definitions(settings)
    result = defs.resolve_sensor_def(LIVE_SENSOR).evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs))
    selected = {name for request in result.run_requests for name in live_datasets(request)}
    assert selected and FUT.name not in selected


def test_status_says_nothing_of_trading_without_a_cached_listing(market_sim, tmp_path, monkeypatch, capsys):
    env = env_for(market_sim, tmp_path)
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-02").returncode == 0
    assert not (tmp_path / "data" / listing_cache("futures")).exists()
    status = cli_here(monkeypatch, capsys, env, "status")
    assert status.returncode == 0 and "no longer trading" not in status.stdout
    assert json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)["datasets"][0]["trading"] is None


def test_a_listed_symbol_too_long_or_not_ascii_is_left_out_with_one_warning(caplog):
    long = "A" * 296
    listing = Listing("futures", 0, {f"{long}USDT": (long, "USDT", "TRADING", True),
                                     "\u0392TCUSDT": ("\u0392TC", "USDT", "TRADING", True),
                                     "ETHUSDT": ("ETH", "USDT", "TRADING", True)})
    with caplog.at_level(logging.WARNING, logger="kline_assets"):
        assert listing.select("USDT") == [DatasetSpec("futures", "ETH/USDT")]
    assert caplog.text.count("leaves out 2 listed symbol(s)") == 1


def test_a_dataset_made_by_the_command_line_is_defined_but_not_live(market_sim, make_settings, tmp_path, instance):
    """`kline-assets --pair ETH/USDT backfill` with KLINE_PAIRS naming only BTC/USDT: the code location
    defines ETH/USDT too (its history and checks, not a bare key in the catalog); live leaves it alone."""
    env = env_for(market_sim, tmp_path, KLINE_PAIRS="futures:BTC/USDT")
    done = cli(env, "--pair", "ETH/USDT", "backfill", "--start", "2021-01-01", "--end", "2021-01-02")
    assert done.returncode == 0, done.stderr
    (tmp_path / "data" / ".kline_assets" / "listing_futures.json").unlink(missing_ok=True)  # pair from the manifest
    settings = settings_for(make_settings, market_sim, "futures:BTC/USDT")
    defs = build_definitions(settings)
    eth = DatasetSpec("futures", "ETH/USDT")
    assert dg.AssetKey(["binanceusdm", "ETHUSDT", "klines_1m"]) in defs.resolve_all_asset_keys()
    resolved = resolve_datasets(settings, ask=False, stored=True)
    assert eth in resolved.pairs and eth in resolved.stored_only and eth not in resolved.live_pairs
    result = defs.resolve_sensor_def(LIVE_SENSOR).evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs))
    selected = {name for request in result.run_requests for name in live_datasets(request)}
    assert selected == {FUT.name}


def test_the_refresh_job_stores_the_listing_loading_then_reads(market_sim, make_settings, instance):
    """No listing yet: loading defines the explicit pair only and names the refresh job; the job (as a UI
    user launches it) asks exchangeInfo and stores it; the next load selects the symbols."""
    settings = settings_for(make_settings, market_sim, "futures:BTC/USDT,futures:*/USDT")
    defs = build_definitions(settings)
    assert [k for k in defs.resolve_all_asset_keys() if k.path[-1] == "klines_1m"] == [klines_key(FUT)]
    result = defs.resolve_job_def("refresh_listing").execute_in_process(instance=instance)
    assert result.success
    told = [e.user_message for e in instance.all_logs(result.run_id) if "trading symbol(s)" in e.user_message]
    assert told and "new: binanceusdm/BNBUSDT" in told[0] and "reload the code location" in told[0]
    keys = build_definitions(settings).resolve_all_asset_keys()
    assert klines_key(DatasetSpec("futures", "SOL/USDT")) in keys
