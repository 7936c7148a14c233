"""Helpers shared by the tests: what the simulated exchange serves, what is stored, how to run the CLI
and Dagster the way a user does."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from kline_assets.defs.definitions import build_assets, build_resources
from kline_assets.defs.names import klines_key, range_tags
from kline_assets.logs import PROGRESS
from kline_assets.settings import MARKETS, DatasetSpec
from kline_assets.sim.server import SimState, kline_row
from kline_assets.store.backend import open_root
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.manifest import ChunkEntry
from kline_assets.store.paths import DatasetPaths
from kline_assets.store.schema import rows_to_table
from kline_assets.timezones import parse_zone

FUT = DatasetSpec("futures", "BTC/USDT")
SPOT = DatasetSpec("spot", "BTC/USDT")
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
M = 60_000


def expected_rows(state: SimState, spec: DatasetSpec, tz: str, day: dt.date) -> list[list]:
    """What the exchange serves for a closed local day, converted to the chunk schema."""
    start, end = parse_zone(tz).day_window_ms(day)
    symbol = spec.symbol
    first = state.listings(spec.market)[symbol]
    gaps = state.gaps(spec.market, symbol)
    out = []
    for t in range(max(start, first - first % 60_000), end, 60_000):
        if t < first or any(a <= t < b for a, b in gaps):
            continue
        r = state.row(spec.market, symbol, t, kind=spec.kind)
        out.append([r[0], *map(float, r[1:6]), r[6], float(r[7]), r[8], float(r[9]), float(r[10]), r[11]])
    return out


def stored_rows(store: DatasetStore, entry) -> list[list]:
    """The rows of a stored chunk (an entry, or a manifest.json entry dict), read from whichever backend."""
    file = entry["file"] if isinstance(entry, dict) else entry.file
    table = pq.read_table(pa.BufferReader(store.backend.get(store.paths.resolve(file))))
    return [list(row.values()) for row in table.to_pylist()]


def store_of(settings, spec: DatasetSpec = FUT) -> DatasetStore:
    """The dataset of `spec` under the settings' data root (a folder or an S3 prefix)."""
    return DatasetStore.open(settings.data_root, spec, settings.align_tz, settings.start)


def combined_table(store: DatasetStore, combined) -> pa.Table:
    """A combined file's table, by the name `combine` gave it, from whichever backend."""
    key = f"{store.paths.combined_dir}/{combined.path.rpartition('/')[2]}"
    return pq.read_table(pa.BufferReader(store.backend.get(key)))


def chunk_path(store: DatasetStore, entry) -> Path:
    """The file of a chunk in a local data root (for tests that damage it by hand)."""
    file = entry["file"] if isinstance(entry, dict) else entry.file
    return Path(store.backend.uri(store.paths.resolve(file)))


def sim_requests(state: SimState, endpoint: str = "klines") -> list[dict]:
    with state.lock:
        return [r for r in state.log if r["endpoint"] == endpoint]


def env_for(sim, tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLINE_", "DAGSTER_"))}
    env.update(KLINE_SPOT_URL=sim.url, KLINE_FUTURES_URL=sim.url, KLINE_COINM_URL=sim.url, KLINE_ARCHIVE_URL=sim.url,
               KLINE_SOURCE="rest",
               KLINE_DATA_ROOT=str(tmp_path / "data"),
               KLINE_LOG_DIR=str(tmp_path / "logs"), DAGSTER_HOME=str(tmp_path / "dagster_home"),
               KLINE_START="2021-01-01", KLINE_PAIRS="futures:BTC/USDT")
    env.update(extra)
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return env


def cli(env, *args, timeout=120):
    return subprocess.run([str(BIN / "kline-assets"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def cli_here(monkeypatch, capsys, env, *args) -> subprocess.CompletedProcess:
    """A read-only command (`status`, a plain `verify`) in this process: what `cli` returns, without the
    ~3 s of a new interpreter importing Dagster."""
    from kline_assets.cli.main import main

    for name in [n for n in os.environ if n.startswith(("KLINE_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(("KLINE_", "DAGSTER_", "AWS_")):
            monkeypatch.setenv(name, value)
    loggers = [logging.getLogger(name) for name in ("kline_assets", PROGRESS)]
    before = [list(logger.handlers) for logger in loggers]
    capsys.readouterr()
    try:
        code = main(list(args))
    finally:  # the handlers it added (its log file, this test's captured stderr) go with it
        for logger, handlers in zip(loggers, before, strict=True):
            for handler in set(logger.handlers) - set(handlers):
                logger.removeHandler(handler)
                handler.close()
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def days_ago(n: int) -> str:
    """The UTC day `n` days before today, as the command line takes it."""
    return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=n)).isoformat()


def check_days(sim, root, first, days):
    store = DatasetStore.open(root, FUT, parse_zone("UTC"), dt.date(2021, 1, 1))
    chunks = store.manifest().chunks
    for n in range(days):
        day = first + dt.timedelta(n)
        entry = chunks[store.index_of(day)]
        assert store.entry_intact(entry) and entry.complete
        assert stored_rows(store, entry) == expected_rows(sim.state, FUT, "UTC", day)


def materialized(env) -> set[str]:
    """The partitions the CLI's instance shows as materialized (its storage class reads DAGSTER_HOME)."""
    with mock.patch.dict(os.environ, {"DAGSTER_HOME": env["DAGSTER_HOME"]}), \
            dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.get_materialized_partitions(dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1m"]))


def run(settings, instance, spec, first, last, resources=None, raise_on_error=True):
    """One in-process run of klines_1m over first..last, as a range run from the UI or the CLI."""
    return dg.materialize(
        build_assets(settings), resources=resources or build_resources(settings), instance=instance,
        selection=[klines_key(spec)], tags=range_tags(first, last), raise_on_error=raise_on_error,
    )


def step_failure(result):
    """The first failed step's error (its `.message`, its metadata), from any in-process run result."""
    return next(e for e in result.all_events if e.is_step_failure).step_failure_data


def manifest(settings, spec):
    return json.loads(open_root(settings.data_root).get(DatasetPaths(spec).manifest))


def flip_byte(store: DatasetStore, entry) -> None:
    """Change one byte of a stored chunk that Parquet does not check (inside the footer's writer name), so
    it still reads and only a sha256 comparison can tell."""
    key = store.paths.resolve(entry["file"] if isinstance(entry, dict) else entry.file)
    data = bytearray(store.backend.get(key))
    at = data.rindex(b"parquet-cpp")
    data[at] ^= 0x20  # 'p' -> 'P'
    store.backend.put(key, bytes(data))


class FakeSource:
    """A kline source serving well-formed rows at the given open times; `now` is its clock."""

    market = MARKETS["futures"]

    def __init__(self, opens, now):
        self.opens, self.now, self.calls = sorted(opens), now, 0

    def klines(self, symbol, start, end, limit):
        self.calls += 1
        assert self.calls < 100, "pager does not terminate"
        rows = [t for t in self.opens if start <= t <= end][:limit]
        return [[t, "1", "1", "1", "1", "1", t + M - 1, "1", 1, "1", "1", "0"] for t in rows]

    def server_time_ms(self):
        return self.now

    def source(self, kind):
        return self


def chunk_entry(index: int, day: dt.date, complete: bool = True, gaps=(), zone: str = "UTC",
                covered_until_ms: int | None = None) -> ChunkEntry:
    """A manifest entry of `day` with no file behind it, for code that reads manifests only."""
    start_ms, end_ms = parse_zone(zone).day_window_ms(day)
    return ChunkEntry(index=index, partition=day.isoformat(), file="f", start_ms=start_ms, end_ms=end_ms, rows=0,
                      first_open_time=None, last_open_time=None, sha256="", bytes=0, complete=complete,
                      exchange_gaps=[list(g) for g in gaps], written_at="",
                      covered_until_ms=end_ms if covered_until_ms is None else covered_until_ms)


def day_table(day: dt.date, minutes: int = 1440):
    """The first `minutes` futures BTCUSDT klines of a UTC day, as a chunk table."""
    start, _ = parse_zone("UTC").day_window_ms(day)
    return rows_to_table([kline_row("futures", "BTCUSDT", start + i * 60_000) for i in range(minutes)])


def with_value(table, column: str, index: int, value):
    """`table` with one cell of `column` replaced: a row the exchange would never send."""
    values = table.column(column).to_pylist()
    values[index] = value
    return table.set_column(table.schema.get_field_index(column), column,
                            pa.array(values, table.schema.field(column).type))


class S3Server:
    """moto's S3 server in its own process on a free loopback port (what CI runs: no mocks in-process, the
    same HTTP a real S3 answers), its files in a temp folder; `bucket()` makes a fresh bucket per test."""

    def __init__(self, folder: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": self.url}
        self.log = open(folder / "moto.log", "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                        cwd=folder, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait()

    def _wait(self) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start (see {self.log.name})") from None
                time.sleep(0.1)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def bucket(self) -> str:
        import uuid

        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


class PostgresServer:
    """Debian's PostgreSQL in a temp folder on a free loopback port (as the `postgres` user when the tests
    run as root, since initdb refuses root), trust authentication; `database()` makes a fresh database."""

    def __init__(self, folder: Path, fsync: bool = False) -> None:
        """`fsync`: as a real server would (the tests turn it off: only speed depends on it)."""
        import shutil
        import socket

        bindir = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
        initdb = str(bindir / "initdb") if bindir else shutil.which("initdb")
        if initdb is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin = Path(initdb).parent
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.data = folder / "pg"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(folder, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(folder / "pg.log"), "-w", "-o",
                  f"-p {self.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}",
                  "start")
        self.count = 0

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, cwd=self.folder)

    def database(self) -> dict:
        """A fresh database; returns the `postgres_db:` fields of dagster.yaml."""
        self.count += 1
        name = f"dagster_{self.count}"
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        name], check=True, capture_output=True)
        return {"username": "postgres", "password": "", "hostname": "127.0.0.1", "db_name": name,
                "port": self.port}

    def url(self) -> str:
        """A fresh database as a libpq URL (what dagster-postgres hands its storages)."""
        db = self.database()
        return f"postgresql://{db['username']}@{db['hostname']}:{db['port']}/{db['db_name']}"

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, cwd=self.folder)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dagster_dev(env: dict) -> Iterator[str]:
    """`dagster dev` of this repository's workspace (webserver, daemon, code server) with `env`; yields the
    webserver's URL once it answers."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/server_info", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# what the UI's Materialize dialog sends for a partition range of the selected assets
LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""

# what the UI's resource view shows of a resource: each configured value, and whether a variable holds it
RESOURCE = """query($selector: ResourceSelector!) { topLevelResourceDetailsOrError(resourceSelector: $selector) {
  __typename ... on ResourceDetails { configuredValues { key value type } } ... on PythonError { message } } }"""


def graphql(url: str, query: str, variables: dict) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(url + "/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def live_datasets(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["live_update"]["config"]["datasets"]


def asset_job(defs: dg.Definitions) -> dg.JobDefinition:
    """A job of the klines assets, as the UI's runs and backfills have (they record an asset selection)."""
    return defs.resolve_implicit_global_asset_job_def()
