"""Settings handed to Dagster's step processes through the environment come back as they were."""

from dataclasses import fields, replace

import pytest

from kline_assets.errors import BadInput
from kline_assets.settings import DatasetSpec, load_settings, settings_env, spelled


@pytest.mark.parametrize("zone", ["UTC", "Europe/Zurich", "+02:00", "-05:00"])
def test_settings_survive_the_trip_through_the_environment(zone):
    settings = load_settings({
        "KLINE_DATA_ROOT": "s3://bucket/prefix", "KLINE_LOG_DIR": "/var/log/k", "KLINE_ALIGN_TZ": zone,
        "KLINE_START": "2019-09-08", "KLINE_SPOT_URL": "http://spot", "KLINE_FUTURES_URL": "http://fut",
        "KLINE_COINM_URL": "http://coin", "KLINE_KINDS": "klines+premium",
        "KLINE_PAIRS": "futures:ETH/USDT:klines+mark+index,spot:BTC/USDC,futures:*/USDT:mark,coinm:BTC/USD",
        "KLINE_SOURCE": "archive", "KLINE_HOURLY": "1",
        "BUILD_COMBINED_ON_BACKFILL": "1", "KLINE_ARCHIVE_URL": "http://archive"})
    assert load_settings(settings_env(settings)) == settings


def test_selectors_travel_as_the_pairs_they_resolved_to():
    settings = load_settings({"KLINE_PAIRS": "futures:*/USDT"})
    resolved = replace(settings, pairs=(DatasetSpec("futures", "BTC/USDT"), DatasetSpec("futures", "C001/USDT")),
                       selectors=())
    assert load_settings(settings_env(resolved)).pairs == resolved.pairs
    assert load_settings(settings_env(resolved)).selectors == ()


VARIABLE_VALUES = {  # each variable, a value other than its default, and the setting it must give
    "KLINE_DATA_ROOT": ("data_root", "elsewhere"), "KLINE_LOG_DIR": ("log_dir", "l"),
    "KLINE_ALIGN_TZ": ("align_tz", "Asia/Tokyo"), "KLINE_START": ("start", "2021-02-03"),
    "KLINE_SOURCE": ("source", "rest"), "KLINE_SPOT_URL": ("spot_url", "http://s"),
    "KLINE_FUTURES_URL": ("futures_url", "http://f"), "KLINE_ARCHIVE_URL": ("archive_url", "http://a"),
    "KLINE_HOURLY": ("hourly", "1"), "BUILD_COMBINED_ON_BACKFILL": ("combine_after_backfill", "1"),
    "KLINE_PAIRS": ("pairs", "spot:ETH/USDT"), "KLINE_COINM_URL": ("coinm_url", "http://c"),
    "KLINE_KINDS": ("kinds", "klines+mark"),
}


@pytest.mark.parametrize("variable", sorted(VARIABLE_VALUES))
def test_each_variable_gives_its_own_setting_and_nothing_else(variable):
    defaults = load_settings({})
    given = load_settings({variable: VARIABLE_VALUES[variable][1]})
    changed = {f.name for f in fields(given) if getattr(given, f.name) != getattr(defaults, f.name)}
    # the default kinds are those of the default pairs' entries, which name none
    assert changed == {VARIABLE_VALUES[variable][0]} | ({"pairs"} if variable == "KLINE_KINDS" else set())
    assert spelled(given, VARIABLE_VALUES[variable][0]) == VARIABLE_VALUES[variable][1]


def test_kline_kinds_apply_to_entries_naming_none_and_each_market_keeps_the_kinds_it_has():
    settings = load_settings({"KLINE_KINDS": "klines+mark+premium",
                              "KLINE_PAIRS": "futures:BTC/USDT,spot:BTC/USDT,coinm:BTC/USD,futures:ETH/USDT:index"})
    assert [(s.market, s.pair, s.kind) for s in settings.pairs] == [
        ("futures", "BTC/USDT", "klines"), ("futures", "BTC/USDT", "mark"), ("futures", "BTC/USDT", "premium"),
        ("spot", "BTC/USDT", "klines"), ("coinm", "BTC/USD", "klines"), ("coinm", "BTC/USD", "mark"),
        ("coinm", "BTC/USD", "premium"), ("futures", "ETH/USDT", "index")]
    assert [s.symbol for s in settings.pairs if s.market == "coinm"] == ["BTCUSD_PERP"] * 3
    for bad, said in (("klines+bogus", "unknown kind 'bogus'"), ("+", "names no kind")):
        with pytest.raises(BadInput, match=said):
            load_settings({"KLINE_KINDS": bad})
