"""Helpers shared by the tests: what the simulated exchange serves, what is stored, how to run the CLI
and Dagster the way a user does."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlencode, urlparse

import dagster as dg
import pyarrow.parquet as pq

from kline_assets.archive.paths import DatasetPaths
from kline_assets.archive.schema import rows_to_table
from kline_assets.archive.store import DatasetStore
from kline_assets.defs.definitions import build_assets, build_resources
from kline_assets.defs.names import klines_key, range_tags
from kline_assets.settings import MARKETS, DatasetSpec
from kline_assets.sim.server import SimState, kline_row
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
        r = state.row(spec.market, symbol, t)
        out.append([r[0], *map(float, r[1:6]), r[6], float(r[7]), r[8], float(r[9]), float(r[10]), r[11]])
    return out


def stored_rows(path: Path) -> list[list]:
    return [list(row.values()) for row in pq.read_table(path).to_pylist()]


def sim_requests(state: SimState, endpoint: str = "klines") -> list[dict]:
    with state.lock:
        return [r for r in state.log if r["endpoint"] == endpoint]


def env_for(sim, tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLINE_", "DAGSTER_"))}
    env.update(KLINE_SPOT_URL=sim.url, KLINE_FUTURES_URL=sim.url, KLINE_ARCHIVE_URL=sim.url, KLINE_SOURCE="rest",
               KLINE_DATA_ROOT=str(tmp_path / "data"),
               KLINE_LOG_DIR=str(tmp_path / "logs"), DAGSTER_HOME=str(tmp_path / "dagster_home"),
               KLINE_START="2021-01-01", KLINE_PAIRS="futures:BTC/USDT")
    env.update(extra)
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return env


def cli(env, *args, timeout=120):
    return subprocess.run([str(BIN / "kline-assets"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def check_days(sim, root, first, days):
    store = DatasetStore(root, FUT, parse_zone("UTC"), dt.date(2021, 1, 1))
    store.recover()
    chunks = store.manifest().chunks
    for n in range(days):
        day = first + dt.timedelta(n)
        entry = chunks[store.index_of(day)]
        assert store.entry_intact(entry) and entry.complete
        assert stored_rows(store.paths.resolve(entry.file)) == expected_rows(sim.state, FUT, "UTC", day)


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
    return json.loads(DatasetPaths(Path(settings.data_root), spec).manifest.read_text())


def flip_byte(path: Path) -> None:
    """Change one byte that Parquet does not check (inside the footer's writer name), so the file still
    reads and only a sha256 comparison can tell."""
    data = bytearray(path.read_bytes())
    at = data.rindex(b"parquet-cpp")
    data[at] ^= 0x20  # 'p' -> 'P'
    path.write_bytes(bytes(data))


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


def day_table(day: dt.date, minutes: int = 1440):
    """The first `minutes` futures BTCUSDT klines of a UTC day, as a chunk table."""
    start, _ = parse_zone("UTC").day_window_ms(day)
    return rows_to_table([kline_row("futures", "BTCUSDT", start + i * 60_000) for i in range(minutes)])


class Hostile:
    """A Binance-compatible origin (REST and archive) that answers with the simulator's genuine answers
    spoilt as `mode` says, for the hostile-server tests. `drip_s`: the body (and for `drip_headers` the
    status line too) goes out one byte at a time, this far apart, for paths containing `target`."""

    def __init__(self, sim, mode: str, target: str = "klines", drip_s: float = 3.0, from_ms: int = 0) -> None:
        """`from_ms`: spoil only kline requests starting there or later (the earlier days are served well)."""
        self.sim, self.mode, self.target, self.drip_s, self.from_ms = sim, mode, target, drip_s, from_ms
        self.zips: dict[str, bytes] = {}
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with contextlib.suppress(OSError):  # the client gave up: that is the point
                    hostile.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def upstream(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.sim.url + path, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def answer(self, handler) -> None:
        path = handler.path
        start = parse_qs(urlparse(path).query).get("startTime", ["0"])[-1]
        hit = self.target in path and int(start) >= self.from_ms
        if hit and self.mode == "drip_headers":
            for byte in b"HTTP/1.1 200 OK\r\n":
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(self.drip_s)
            return
        if hit and self.mode == "huge":  # an endless body: no length, closed only by the client
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(b"[")
            for _ in range(200):  # 200 MB
                handler.wfile.write(b" " * (1 << 20))
            handler.wfile.write(b"]")
            handler.close_connection = True
            return
        if hit and self.mode in ("bomb", "dupes", "empty", "empty_checksum"):
            status, body = self.spoilt_archive(path)
        else:
            status, body = self.upstream(path)
            if hit and status == 200 and self.mode == "no_symbols":  # exchangeInfo listing nothing
                body = json.dumps({**json.loads(body), "symbols": []}).encode()
            if hit and status == 200 and "klines" in path:
                rows = json.loads(body)
                query = {k: v[-1] for k, v in parse_qs(urlparse(path).query).items()}
                rows = self.spoil(rows, query, path)
                body = json.dumps(rows).encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if hit and self.mode == "drip":
            for byte in body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(self.drip_s)
            return
        handler.wfile.write(body)

    def spoil(self, rows: list, query: dict, path: str) -> list:
        if self.mode == "beyond" and "endTime" in query:  # rows of the days after the window
            later = {k: v for k, v in query.items() if k != "endTime"}
            later["startTime"] = str(int(query["endTime"]) + 1)
            _, extra = self.upstream(path.split("?")[0] + "?" + urlencode(later))
            return rows + json.loads(extra)
        if self.mode == "descending":
            return rows[::-1]
        if self.mode == "error200":  # an error object where rows were due, with HTTP 200
            return {"code": -1001, "msg": "Internal error; unable to process your request."}
        if self.mode == "duplicates":
            return [r for r in rows for _ in (0, 1)]
        if self.mode in ("nan", "inf", "negative") and rows:
            bad = {"nan": "NaN", "inf": "Infinity", "negative": "-5.0"}[self.mode]
            rows[len(rows) // 2][1 if self.mode != "negative" else 5] = bad
        return rows

    def spoilt_archive(self, path: str) -> tuple[int, bytes]:
        zip_path = path.removesuffix(".CHECKSUM")
        if zip_path not in self.zips:
            status, genuine = self.upstream(zip_path)
            if status != 200:
                return status, genuine
            with zipfile.ZipFile(io.BytesIO(genuine)) as zf:
                name = zf.namelist()[0]
                text = zf.read(name)
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
                if self.mode == "bomb":  # a valid start, then 300 MB of zeros
                    with zf.open(name, "w", force_zip64=True) as member:
                        member.write(text)
                        for _ in range(300):
                            member.write(b"0" * (1 << 20))
                elif self.mode == "dupes":
                    lines = text.splitlines(keepends=True)
                    zf.writestr(name, b"".join(lines[:10] + lines[5:]))
                else:
                    zf.writestr(name, b"" if self.mode == "empty" else text)
            self.zips[zip_path] = out.getvalue()
        data = self.zips[zip_path]
        if path.endswith(".CHECKSUM"):
            digest = "" if self.mode == "empty_checksum" else hashlib.sha256(data).hexdigest()
            return 200, f"{digest}  {zip_path.rsplit('/', 1)[-1]}\n".encode()
        return 200, data
