"""The resources as the home of the settings a run reads: from the environment's settings they name their
variables (`dg.EnvVar`), so Dagster resolves them when a run starts and the UI's resource view shows
them; settings given otherwise (a component's attributes, a command's flags) stay plain values."""

import dataclasses
import datetime as dt
import os

import dagster as dg
import pytest

from kline_assets.defs.component import KlineArchive, build_definitions
from kline_assets.defs.definitions import build_assets, build_resources
from kline_assets.defs.names import CHUNK_IO_MANAGER, EXCHANGE, STORE
from kline_assets.defs.resources import ExchangeResource, StoreResource
from kline_assets.settings import MARKETS, load_settings, resource_values
from kline_assets_tests.helpers import FUT, expected_rows, manifest, run, step_failure, store_of, stored_rows


@pytest.fixture
def environment(sim, tmp_path, monkeypatch):
    """The process's environment as a deployment sets it (no KLINE_ARCHIVE_URL: that one keeps its default)."""
    for name in [n for n in os.environ if n.startswith("KLINE_") and n != "KLINE_STATE_DIR"]:
        monkeypatch.delenv(name)
    values = {"KLINE_DATA_ROOT": str(tmp_path / "data"), "KLINE_LOG_DIR": str(tmp_path / "logs"),
              "KLINE_SPOT_URL": sim.url, "KLINE_FUTURES_URL": sim.url, "KLINE_COINM_URL": sim.url,
              "KLINE_SOURCE": "rest",
              "KLINE_START": "2021-01-01", "KLINE_ALIGN_TZ": "Europe/Zurich", "KLINE_PAIRS": "futures:BTC/USDT"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_the_environments_resources_name_their_variables_and_runs_read_them(sim, environment, instance):
    defs = build_definitions()
    store, exchange = defs.resources[STORE], defs.resources[EXCHANGE]
    assert isinstance(store.data_root, dg.EnvVar) and store.data_root == "KLINE_DATA_ROOT"
    assert [store.align_tz, store.start, store.log_dir] == ["KLINE_ALIGN_TZ", "KLINE_START", "KLINE_LOG_DIR"]
    assert all(isinstance(v, dg.EnvVar) for v in (store.align_tz, store.start, store.log_dir))
    assert [exchange.spot_url, exchange.futures_url, exchange.source] == \
        ["KLINE_SPOT_URL", "KLINE_FUTURES_URL", "KLINE_SOURCE"]
    assert not isinstance(exchange.archive_url, dg.EnvVar)  # unset: the default, as a value
    assert defs.resources[CHUNK_IO_MANAGER].root == store

    settings = load_settings()
    assert run(settings, instance, FUT, "2021-03-27", "2021-03-28").success  # Dagster resolved the variables
    entries = {c["partition"]: c for c in manifest(settings, FUT)["chunks"]}
    assert entries["2021-03-28"]["rows"] == 1380  # Zurich's spring-forward day
    for day in ("2021-03-27", "2021-03-28"):
        assert stored_rows(store_of(settings), entries[day]) == \
            expected_rows(sim.state, FUT, "Europe/Zurich", dt.date.fromisoformat(day))


def test_settings_not_read_from_the_environment_stay_values(sim, environment, tmp_path):
    """A command's `--data-root` and a component's attributes are what the run must use, whatever the
    environment says; settings given as a dict (not the process's environment) too."""
    overridden = dataclasses.replace(load_settings(), data_root=str(tmp_path / "elsewhere"))
    store = build_resources(overridden)[STORE]
    assert store.data_root == str(tmp_path / "elsewhere") and not isinstance(store.data_root, dg.EnvVar)
    assert isinstance(store.align_tz, dg.EnvVar)  # the environment's own value still names it

    component = KlineArchive(pairs=["futures:BTC/USDT"], data_root=environment["KLINE_DATA_ROOT"],
                             align_tz="Europe/Zurich")
    resources = component.build_defs_from_state(None, None).resources
    assert not any(isinstance(v, dg.EnvVar) for v in resources[STORE].model_dump().values())
    assert not any(isinstance(v, dg.EnvVar) for v in build_resources(load_settings(environment))[STORE]
                   .model_dump().values())


def materialize_with(settings, instance, run_config):
    return dg.materialize(build_assets(settings), resources=build_resources(settings), instance=instance,
                          raise_on_error=False, run_config={"resources": run_config},
                          selection=[dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1m"])], partition_key="2021-03-27")


def test_a_run_config_that_would_write_elsewhere_or_cut_other_days_fails_and_writes_nothing(sim, environment,
                                                                                             instance, tmp_path):
    """Dagster replaces a resource's whole config with a run's: `workers: 2` alone would set the origins
    back to Binance's, and another zone would cut other days than the partitions'."""
    settings = load_settings()
    result = materialize_with(settings, instance, {STORE: {"config": {"align_tz": "Asia/Tokyo"}}})
    message = step_failure(result).error.message
    assert not result.success and "the run's config changed the store resource's data_root 'data' (the code " \
        "location's: " in message, message
    assert "align_tz 'Asia/Tokyo' (the code location's: 'Europe/Zurich')" in message, message
    result = materialize_with(settings, instance, {EXCHANGE: {"config": {"workers": 2}}})
    message = step_failure(result).error.message
    binance = MARKETS["spot"].default_origin  # named, never asked: the run fails before any request
    assert not result.success and "the run's config changed the exchange resource's " in message and \
        f"spot_url {binance!r} (the code location's: '{sim.url}')" in message, message
    assert not (tmp_path / "data").exists() and not sim.state.log

    whole = {**resource_values(settings), "workers": 2}
    stored_whole = {k: v for k, v in whole.items() if k in StoreResource.model_fields}
    for field, value in (("align_tz", "Asia/Tokyo"), ("data_root", str(tmp_path / "elsewhere"))):
        result = materialize_with(settings, instance, {STORE: {"config": {**stored_whole, field: value}}})
        message = step_failure(result).error.message
        assert not result.success and f"store resource's {field} {value!r} (the code location's: " in message
        assert message.count("(the code location's: ") == 1, message  # that field alone
    assert not (tmp_path / "data").exists() and not (tmp_path / "elsewhere").exists() and not sim.state.log

    # the whole config restated, a run may tune what has no variable
    result = materialize_with(settings, instance, {EXCHANGE: {"config": {
        k: v for k, v in whole.items() if k in ExchangeResource.model_fields}}})
    assert result.success and manifest(settings, FUT)["chunks"][0]["rows"] == 1440
