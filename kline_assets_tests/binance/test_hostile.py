"""Hostile and broken servers: whatever they send, nothing wrong is stored, time and memory stay bounded,
and a failure is one line naming its cause. Each server is the simulator's genuine answer spoilt one way
(`kline_assets.sim.hostile`)."""

import datetime as dt
import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from kline_assets.defs.component import build_definitions
from kline_assets.defs.definitions import build_resources
from kline_assets.defs.names import EXCHANGE
from kline_assets.defs.resources import ExchangeResource
from kline_assets.defs.runs import first_error
from kline_assets.sim.hostile import Hostile
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import (
    BIN,
    FUT,
    check_days,
    env_for,
    expected_rows,
    materialized,
    run,
    stored_rows,
)

FIRST = dt.date(2021, 3, 1)
DAYS = 2


def hostile_run(make_settings, instance, url, source="rest", archive_url=None, days=DAYS):
    """A range run of futures BTC/USDT against `url`, each request bounded to 1.5 s and tried twice."""
    settings = replace(make_settings(pairs="futures:BTC/USDT", source=source), futures_url=url,
                       archive_url=archive_url or url)
    resources = {**build_resources(settings),
                 EXCHANGE: ExchangeResource.from_settings(settings, timeout_ms=1500, max_attempts=2)}
    began = time.monotonic()
    result = run(settings, instance, FUT, FIRST.isoformat(), (FIRST + dt.timedelta(days - 1)).isoformat(), resources,
                 raise_on_error=False)
    return settings, result, time.monotonic() - began


def stored(settings):
    store = DatasetStore.open(settings.data_root, FUT, parse_zone("UTC"), FIRST)
    manifest = store.read_manifest()
    return store, ([] if manifest is None else sorted(manifest.chunks.values(), key=lambda e: e.index))


def assert_exact(sim, settings, days=DAYS):
    store, entries = stored(settings)
    assert [e.partition for e in entries] == [(FIRST + dt.timedelta(n)).isoformat() for n in range(days)]
    for entry in entries:
        day = dt.date.fromisoformat(entry.partition)
        assert store.entry_intact(entry) and entry.complete
        assert stored_rows(store, entry) == expected_rows(sim.state, FUT, "UTC", day)
    return entries


def test_rows_beyond_the_window_are_dropped(sim, make_settings, instance):
    with Hostile(sim.url, "beyond") as bad:
        settings, result, _ = hostile_run(make_settings, instance, bad.url)
    assert result.success
    assert_exact(sim, settings)


@pytest.mark.parametrize("mode,cause", [
    ("descending", "not strictly ascending"),
    ("duplicates", "not strictly ascending"),
    ("nan", "open nan at 2021-03-01T"),
    ("inf", "open inf at 2021-03-01T"),
    ("negative", "volume -5.0 at 2021-03-01T"),
    ("error200", "Internal error; unable to process your request"),
    ("short", "the body ended after "),  # a Content-Length the body never reaches
])
def test_impossible_pages_are_never_stored(sim, make_settings, instance, mode, cause):
    with Hostile(sim.url, mode) as bad:
        settings, result, took = hostile_run(make_settings, instance, bad.url)
    assert not result.success and took < 30
    message, _ = first_error(result)
    assert cause in message and len(message.splitlines()) == 1, message
    assert stored(settings)[1] == []


@pytest.mark.parametrize("mode", ["drip", "drip_headers"])
def test_a_dripping_server_fails_within_the_deadline(sim, make_settings, instance, mode):
    with Hostile(sim.url, mode, drip_s=1.0) as bad:
        settings, result, took = hostile_run(make_settings, instance, bad.url)
    assert not result.success and took < 20, took
    assert "no complete answer within 1.5s" in first_error(result)[0]
    assert stored(settings)[1] == []


def test_loading_the_code_location_does_not_wait_on_a_dripping_exchange_info(sim, make_settings, caplog):
    """Loading reads the stored listing only; the command line's refresh is the one bounded by its deadline."""
    with Hostile(sim.url, "drip", target="exchangeInfo", drip_s=1.5) as bad:
        settings = replace(make_settings(pairs="futures:BTC/USDT,futures:*/USDT"), futures_url=bad.url,
                           spot_url=bad.url)
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="kline_assets"):
            build_definitions(settings)
        took = time.monotonic() - began
    assert took < 1, took
    assert "no complete answer" not in caplog.text and "no exchangeInfo stored yet" in caplog.text


@pytest.mark.parametrize("mode", ["bomb", "dupes", "empty", "empty_checksum"])
def test_an_archive_day_that_cannot_be_trusted_goes_to_rest(sim, make_settings, instance, mode, caplog):
    with Hostile(sim.url, mode, target=".zip") as bad, caplog.at_level(logging.INFO, logger="kline_assets"):
        settings, result, _ = hostile_run(make_settings, instance, sim.url, source="auto", archive_url=bad.url)
    assert result.success
    assert {e.source for e in assert_exact(sim, settings)} == {"rest"}
    why = {"bomb": "over the cap", "dupes": "duplicate or out-of-order rows", "empty": "holds no rows",
           "empty_checksum": "holds no sha256"}[mode]
    assert why in caplog.text


def test_an_unreachable_archive_is_given_up_once_per_run(sim, make_settings, instance, caplog):
    with caplog.at_level(logging.WARNING, logger="kline_assets"):
        settings, result, took = hostile_run(make_settings, instance, sim.url, source="auto",
                                             archive_url="http://127.0.0.1:9", days=20)
    assert result.success and took < 30, took
    assert_exact(sim, settings, days=20)
    assert caplog.text.count("the rest of this run takes REST") == 1


MEMORY_PROBE = """
import datetime as dt, resource, sys
from dataclasses import replace
import dagster as dg
from kline_assets.defs.definitions import build_assets, build_resources
from kline_assets.defs.names import EXCHANGE, klines_key, range_tags
from kline_assets.defs.resources import ExchangeResource
from kline_assets.defs.runs import first_error
from kline_assets.sim.hostile import Hostile
from kline_assets.settings import load_settings
from kline_assets_tests.helpers import FUT
settings = load_settings()
resources = {**build_resources(settings), EXCHANGE: ExchangeResource.from_settings(settings, max_attempts=2)}
with dg.instance_for_test() as instance:
    dg.materialize(build_assets(settings), resources=resources, instance=instance, selection=[klines_key(FUT)],
                   tags=range_tags("2021-03-01", "2021-03-08"), raise_on_error=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.parametrize("mode,target,source", [("huge", "klines", "rest"), ("bomb", ".zip", "auto")])
def test_memory_stays_bounded_whatever_the_server_sends(sim, tmp_path, mode, target, source):
    """A 200 MB kline body and a zip whose matching CHECKSUM hides 300 MB: the process stays small."""
    with Hostile(sim.url, mode, target=target) as bad:
        env = env_for(sim, tmp_path, KLINE_FUTURES_URL=bad.url, KLINE_ARCHIVE_URL=bad.url, KLINE_SOURCE=source,
                      KLINE_PAIRS="futures:BTC/USDT")
        done = subprocess.run([sys.executable, "-c", MEMORY_PROBE], env=env, capture_output=True, text=True,
                              timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mb = int(done.stdout.split()[-1])
    assert peak_mb < 600, f"peak RSS {peak_mb} MB"


@pytest.mark.e2e
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_backfill_on_a_dripping_server_within_5s(sim, tmp_path, sig, code):
    """Some days stored, then the server drips: the signal stops the command within 5 s, the staged days
    are committed, one line, 130 for SIGINT and 143 for SIGTERM (what docker stop and Kubernetes send)."""
    third = parse_zone("UTC").day_window_ms(dt.date(2021, 3, 3))[0]
    with Hostile(sim.url, "drip", drip_s=3.0, from_ms=third) as bad:
        env = env_for(sim, tmp_path, KLINE_FUTURES_URL=bad.url)
        proc = subprocess.Popen([str(BIN / "kline-assets"), "backfill", "--start", "2021-03-01", "--end",
                                 "2021-03-05"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log = tmp_path / "logs" / "loader.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and "day(s) 2021-03-01" in log.read_text()):
            time.sleep(0.1)
        time.sleep(3.0)  # two days are committed, the run is waiting on the drip of the others
        proc.send_signal(sig)
        sent = time.monotonic()
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        took = time.monotonic() - sent
    assert proc.returncode == code, err
    assert took < 5, took
    lines = [line for line in err.splitlines() if line.startswith("kline-assets:")]
    assert len(lines) == 1 and "interrupted" in lines[0], err
    manifest = json.loads((tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json").read_text())
    assert [c["partition"] for c in manifest["chunks"]] == ["2021-03-01", "2021-03-02"]
    check_days(sim, tmp_path / "data", dt.date(2021, 3, 1), 2)
    assert materialized(env) == {"2021-03-01", "2021-03-02"}
