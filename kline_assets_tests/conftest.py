"""Shared fixtures: a simulator per test on a free loopback port, settings pointing at it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from kline_assets.instance_storage import STORAGE
from kline_assets.settings import DatasetSpec, load_settings
from kline_assets.simulator import LISTINGS, RunningSimulator, SimConfig, SimState
from kline_assets.timezones import parse_zone

FUT = DatasetSpec("futures", "BTC/USDT")
SPOT = DatasetSpec("spot", "BTC/USDT")


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
    def make(tz: str = "UTC", start: str = "2020-01-01", pairs: str = "futures:BTC/USDT,spot:BTC/USDT"):
        return load_settings({
            "KLINE_DATA_ROOT": str(tmp_path / "data"), "KLINE_LOG_DIR": str(tmp_path / "logs"),
            "KLINE_SPOT_URL": sim.url, "KLINE_FUTURES_URL": sim.url, "KLINE_ALIGN_TZ": tz,
            "KLINE_START": start, "KLINE_PAIRS": pairs,
        })
    return make


@pytest.fixture
def instance():
    """The storage kline-assets writes into a fresh DAGSTER_HOME, so every in-process run uses it."""
    with dg.instance_for_test(overrides={"storage": STORAGE}) as inst:
        yield inst


def expected_rows(state: SimState, spec: DatasetSpec, tz: str, day: dt.date) -> list[list]:
    """What the exchange serves for a closed local day, converted as SPEC's schema says."""
    start, end = parse_zone(tz).day_window_ms(day)
    symbol = spec.symbol
    first = LISTINGS[spec.market][symbol]
    gaps = state.gaps(spec.market, symbol)
    out = []
    for t in range(max(start, first - first % 60_000), end, 60_000):
        if t < first or any(a <= t < b for a, b in gaps):
            continue
        r = state.row(spec.market, symbol, t)
        out.append([r[0], *map(float, r[1:6]), r[6], float(r[7]), r[8], float(r[9]), float(r[10]), r[11]])
    return out


def stored_rows(path: Path) -> list[list]:
    return [list(row.values()) for row in pq.read_table(path).to_pylist()]


def sim_requests(state: SimState, endpoint: str = "klines") -> list[dict]:
    with state.lock:
        return [r for r in state.log if r["endpoint"] == endpoint]
