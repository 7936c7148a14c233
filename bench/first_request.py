"""How long a command-line backfill of a long range takes from its start to its first kline request: what it
pays before any data moves (start-up, the Dagster run's creation and anything it writes per partition).
Not a test.

    python bench/first_request.py                       # 1,460 days, 3 runs, stock SQLite
    python bench/first_request.py --days 365 --postgres

Each run: a fresh DAGSTER_HOME (and data root), `kline-assets --market futures backfill --source rest` of
`--days` days against the simulator; the clock runs from spawning the command to the simulator's log of the
first `klines` request, then the command is stopped (SIGINT: it commits what it staged and ends). Prints each
run and the median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.backfill import BIN, sim_call, simulator
from kline_assets_tests.helpers import PostgresServer


def first_request_s(url: str, root: Path, start: dt.date, days: int, storage: dict | None) -> float:
    home = root / "dagster_home"
    home.mkdir(parents=True)
    if storage is not None:
        (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": storage, "telemetry": {"enabled": False}}))
    env = {**os.environ, "KLINE_SPOT_URL": url, "KLINE_FUTURES_URL": url, "KLINE_ARCHIVE_URL": url,
           "KLINE_DATA_ROOT": str(root / "data"), "KLINE_LOG_DIR": str(root / "logs"), "DAGSTER_HOME": str(home),
           "KLINE_STATE_DIR": str(root / "state"), "KLINE_START": start.isoformat(), "KLINE_PAIRS": "futures:BTC/USDT"}
    sim_call(url, "/_sim/reset", {})
    began = time.time()
    proc = subprocess.Popen([str(BIN / "kline-assets"), "--market", "futures", "backfill", "--source", "rest",
                             "--start", start.isoformat(), "--end", (start + dt.timedelta(days)).isoformat()],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            first = [r["t"] for r in sim_call(url, "/_sim/stats")["requests"] if r["endpoint"] == "klines"]
            if first:
                return min(first) - began
            time.sleep(0.05)
        raise SystemExit(f"the command ended ({proc.returncode}) before any kline request")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=1460)
    p.add_argument("--start", default="2021-01-01")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--postgres", action="store_true", help="a PostgreSQL instance (fsync on) instead of SQLite")
    a = p.parse_args()
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="kline-pg-")), fsync=True) if a.postgres else None
    try:
        with simulator("--latency-ms", "50") as url:
            took = []
            for i in range(a.runs):
                storage = {"postgres": {"postgres_db": pg.database()}} if pg else None
                with tempfile.TemporaryDirectory(prefix="kline-first-") as tmp:
                    took.append(first_request_s(url, Path(tmp), dt.date.fromisoformat(a.start), a.days, storage))
                print(f"run {i + 1}: first kline request {took[-1]:.2f} s after the command started", flush=True)
    finally:
        if pg is not None:
            pg.stop()
    print(f"{a.days:,} days on {'Postgres' if pg else 'stock SQLite'}: median {statistics.median(took):.2f} s "
          f"from the command's start to its first kline request")


if __name__ == "__main__":
    main()
