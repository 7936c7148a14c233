"""Settings handed to Dagster's step processes through the environment come back as they were."""

from dataclasses import replace

import pytest

from kline_assets.settings import DatasetSpec, load_settings, settings_env


@pytest.mark.parametrize("zone", ["UTC", "Europe/Zurich", "+02:00", "-05:00"])
def test_settings_survive_the_trip_through_the_environment(zone):
    settings = load_settings({
        "KLINE_DATA_ROOT": "s3://bucket/prefix", "KLINE_LOG_DIR": "/var/log/k", "KLINE_ALIGN_TZ": zone,
        "KLINE_START": "2019-09-08", "KLINE_SPOT_URL": "http://spot", "KLINE_FUTURES_URL": "http://fut",
        "KLINE_PAIRS": "futures:ETH/USDT,spot:BTC/USDC", "KLINE_SOURCE": "archive", "KLINE_HOURLY": "1",
        "BUILD_COMBINED_ON_BACKFILL": "1", "KLINE_ARCHIVE_URL": "http://archive"})
    assert load_settings(settings_env(settings)) == settings


def test_selectors_travel_as_the_pairs_they_resolved_to():
    settings = load_settings({"KLINE_PAIRS": "futures:*/USDT"})
    resolved = replace(settings, pairs=(DatasetSpec("futures", "BTC/USDT"), DatasetSpec("futures", "C001/USDT")),
                       selectors=())
    assert load_settings(settings_env(resolved)).pairs == resolved.pairs
    assert load_settings(settings_env(resolved)).selectors == ()
