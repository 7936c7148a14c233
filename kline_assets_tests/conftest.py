"""Shared fixtures: a simulator per test on a free loopback port, settings pointing at it, an instance.
Shared helpers are in `helpers.py`."""

from __future__ import annotations

import dagster as dg
import pytest

from kline_assets.defs.storage import STORAGE
from kline_assets.settings import load_settings
from kline_assets.sim.server import RunningSimulator, SimConfig


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    """Retry-After windows are remembered machine-wide; each test gets its own memory."""
    monkeypatch.setenv("KLINE_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()


@pytest.fixture
def sim():
    with RunningSimulator(SimConfig()) as running:
        yield running


@pytest.fixture
def make_settings(sim, tmp_path):
    def make(tz: str = "UTC", start: str = "2020-01-01", pairs: str = "futures:BTC/USDT,spot:BTC/USDT",
             source: str = "rest"):
        """REST by default (most tests are about REST's semantics); the archive tests ask for `auto`."""
        return load_settings({
            "KLINE_DATA_ROOT": str(tmp_path / "data"), "KLINE_LOG_DIR": str(tmp_path / "logs"),
            "KLINE_SPOT_URL": sim.url, "KLINE_FUTURES_URL": sim.url, "KLINE_ARCHIVE_URL": sim.url,
            "KLINE_ALIGN_TZ": tz, "KLINE_START": start, "KLINE_PAIRS": pairs, "KLINE_SOURCE": source,
        })
    return make


@pytest.fixture
def instance():
    """The storage kline-assets writes into a fresh DAGSTER_HOME, so every in-process run uses it."""
    with dg.instance_for_test(overrides={"storage": STORAGE}) as inst:
        yield inst


