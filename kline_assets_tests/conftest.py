"""Shared fixtures: a simulator per test on a free loopback port, settings pointing at it, an instance.
Shared helpers are in `helpers.py`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from kline_assets.settings import load_settings
from kline_assets.sim.server import RunningSimulator, SimConfig
from kline_assets_tests.helpers import PostgresServer, S3Server


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
             source: str = "rest", data_root: str | None = None):
        """REST by default (most tests are about REST's semantics); the archive tests ask for `auto`."""
        return load_settings({
            "KLINE_DATA_ROOT": data_root or str(tmp_path / "data"), "KLINE_LOG_DIR": str(tmp_path / "logs"),
            "KLINE_SPOT_URL": sim.url, "KLINE_FUTURES_URL": sim.url, "KLINE_COINM_URL": sim.url,
            "KLINE_ARCHIVE_URL": sim.url,
            "KLINE_ALIGN_TZ": tz, "KLINE_START": start, "KLINE_PAIRS": pairs, "KLINE_SOURCE": source,
        })
    return make


@pytest.fixture
def instance():
    """Dagster's stock SQLite instance in a temp folder."""
    with dg.instance_for_test() as inst:
        yield inst




@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def s3_root(s3_server, monkeypatch):
    """`s3://<fresh bucket>/archive` with the standard AWS variables pointing at the moto server."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return f"s3://{s3_server.bucket()}/archive"


@pytest.fixture(params=["local", "s3"])
def data_root(request, tmp_path):
    """A data root of each backend: the store-level tests run against both."""
    if request.param == "local":
        return str(tmp_path / "data")
    return request.getfixturevalue("s3_root")


@pytest.fixture(scope="session")
def pg_server():
    """Its folder directly under the system temp folder: pytest's own is private to root, and the server
    runs as the `postgres` user when the tests run as root."""
    folder = Path(tempfile.mkdtemp(prefix="kline-assets-pg-"))
    server = PostgresServer(folder)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_storage(pg_server):
    """The `storage:` entry of a dagster.yaml on a fresh Postgres database, in Dagster's documented form."""
    return {"postgres": {"postgres_db": pg_server.database()}}


@pytest.fixture(params=["sqlite", "postgres"])
def any_instance(request):
    """A Dagster instance on each storage a deployment uses: the tests of recording run on both."""
    overrides = {} if request.param == "sqlite" else {"storage": request.getfixturevalue("pg_storage")}
    with dg.instance_for_test(overrides=overrides) as inst:
        yield inst
