"""Dagster's bookkeeping per day (a materialization; an evaluation only for a failing day), on each instance:
`kline-assets backfill` of futures days from the simulator (no latency, so the recording shows), with
DAGSTER_HOME holding a given dagster.yaml, and the run's own line on how long its thread spent while Dagster
stored the days' events.

    python bench/bookkeeping.py                        # sqlite and postgres, 500 days
    python bench/bookkeeping.py --days 300 --instance sqlite --instance postgres --instance default

Instances: `sqlite` (Dagster's stock SQLite storage, the file kline-assets instance-config prints), `postgres`
(Debian's PostgreSQL in a temp folder, fsync on, dagster-postgres), `default` (no dagster.yaml at all: what
the command line finds in a fresh DAGSTER_HOME), and two tried as public means to cheapen recording:
`postgres-async` (`synchronous_commit=off` through `postgres_db: params:`) and `sqlite-consolidated`
(Dagster's one-file `ConsolidatedSqliteEventLogStorage`). Prints ms a day of the run's thread and days/min;
`--batch N` sets DAGSTER_EVENT_BATCH_SIZE.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.backfill import BIN, simulator
from kline_assets_tests.helpers import PostgresServer

INSTANCES = ["sqlite", "postgres", "default", "postgres-async", "sqlite-consolidated"]
TOOK = re.compile(r"checking and recording (\d+) day\(s\) in Dagster took ([\d.]+)s")


def instance_yaml(kind: str, pg: PostgresServer | None) -> str | None:
    if kind == "default":
        return None
    text = subprocess.run([str(BIN / "kline-assets"), "instance-config", "--storage", kind.split("-")[0]],
                          check=True, capture_output=True, text=True).stdout
    config = yaml.safe_load(text)
    if kind.startswith("postgres"):
        config["storage"]["postgres"]["postgres_db"] = {k: v for k, v in pg.database().items()}
    if kind == "postgres-async":
        config["storage"]["postgres"]["postgres_db"]["params"] = {"options": "-c synchronous_commit=off"}
    if kind == "sqlite-consolidated":
        base = {"base_dir": {"env": "DAGSTER_HOME"}}
        config.pop("storage")
        config["run_storage"] = {"module": "dagster.core.storage.runs", "class": "SqliteRunStorage", "config": base}
        config["event_log_storage"] = {"module": "dagster.core.storage.event_log",
                                       "class": "ConsolidatedSqliteEventLogStorage", "config": base}
        config["schedule_storage"] = {"module": "dagster.core.storage.schedules", "class": "SqliteScheduleStorage",
                                      "config": base}
    config["telemetry"] = {"enabled": False}
    return yaml.safe_dump(config)


def one(url: str, root: Path, kind: str, days: int, pg: PostgresServer | None, batch: int) -> dict:
    home = root / "dh"
    home.mkdir(parents=True)
    text = instance_yaml(kind, pg)
    if text is not None:
        (home / "dagster.yaml").write_text(text)
    env = {**os.environ, "KLINE_SPOT_URL": url, "KLINE_FUTURES_URL": url, "KLINE_ARCHIVE_URL": url,
           "KLINE_SOURCE": "rest", "KLINE_DATA_ROOT": str(root / "data"), "KLINE_LOG_DIR": str(root / "logs"),
           "DAGSTER_HOME": str(home), "KLINE_START": "2021-01-01", "KLINE_STATE_DIR": str(root / "state")}
    if batch:
        env["DAGSTER_EVENT_BATCH_SIZE"] = str(batch)
    began = time.monotonic()
    end = (dt.date(2021, 1, 1) + dt.timedelta(days)).isoformat()
    out = subprocess.run([str(BIN / "kline-assets"), "--market", "futures", "backfill", "--start", "2021-01-01",
                          "--end", end], env=env, capture_output=True, text=True)
    wall = time.monotonic() - began
    if out.returncode:
        raise SystemExit(f"{kind}: exit {out.returncode}: {out.stderr[-2000:]}")
    found = TOOK.search(out.stderr)
    n, took = int(found[1]), float(found[2])
    return {"ms_per_day": 1000 * took / n, "days_per_min": 60 * days / wall, "wall_s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=500)
    p.add_argument("--instance", action="append", choices=INSTANCES)
    p.add_argument("--batch", type=int, default=0, help="DAGSTER_EVENT_BATCH_SIZE for the runs (0: unset)")
    a = p.parse_args()
    kinds = a.instance or ["sqlite", "postgres"]
    with simulator("--latency-ms", "0") as url, tempfile.TemporaryDirectory() as tmp:
        pg = None
        if any(k.startswith("postgres") for k in kinds):
            pg = PostgresServer(Path(tempfile.mkdtemp(prefix="kline-pg-")), fsync=True)  # not under tmp: mode 700
        try:
            print(f"{'instance':>10} {'ms/day recording':>17} {'days/min':>9} {'wall s':>7}")
            for i, kind in enumerate(kinds):
                r = one(url, Path(tmp) / f"run{i}", kind, a.days, pg, a.batch)
                print(f"{kind:>10} {r['ms_per_day']:17.1f} {r['days_per_min']:9.0f} {r['wall_s']:7.1f}", flush=True)
        finally:
            if pg:
                pg.stop()
                shutil.rmtree(pg.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
