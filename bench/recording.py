"""Days recorded in Dagster while a long range run goes on: `dagster asset materialize --partition-range`
of many futures days against the simulator (or, with `--ui`, one backfill launched through the webserver's
GraphQL under `dagster dev`, as the UI's Materialize dialog does), with the instance and the manifest polled
every few seconds; on SQLite, or on a PostgreSQL started for the bench with `--postgres`.

    python bench/recording.py                       # 2,000 futures days, 50 ms latency
    python bench/recording.py --days 300 --every 2
    python bench/recording.py --ui --postgres       # a 2,000-day UI backfill on a Postgres instance

Prints, over time, the days in the manifest and the days Dagster shows as materialized (they should
follow each other within one batch, ~2 s), then the run's own line on how long checking and recording
took, and whether both sides agree at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.backfill import simulator  # noqa: E402
from kline_assets.defs.instance import instance_yaml  # noqa: E402
from kline_assets_tests.helpers import LAUNCH, PostgresServer, dagster_dev, graphql  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=2000)
    p.add_argument("--latency-ms", type=float, default=50)
    p.add_argument("--every", type=float, default=5.0, help="seconds between polls")
    p.add_argument("--ui", action="store_true", help="launch through the webserver's GraphQL under dagster dev")
    p.add_argument("--postgres", action="store_true", help="the instance on a PostgreSQL (fsync on)")
    a = p.parse_args()
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="kline-pg-")), fsync=True) if a.postgres else None
    try:
        with simulator("--latency-ms", str(a.latency_ms)) as url, tempfile.TemporaryDirectory() as root:
            watch(url, Path(root), a.days, a.every, a.ui, pg)
    finally:
        if pg:
            pg.stop()
            shutil.rmtree(pg.folder, ignore_errors=True)


def watch(url: str, root: Path, days: int, every: float, ui: bool, pg: PostgresServer | None) -> None:
    import dagster as dg

    # the window ends yesterday: under dagster dev the live sensor writes today meanwhile, and nothing else
    last = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    start = last - dt.timedelta(days=days - 1)
    home = root / "dagster_home"
    home.mkdir()
    env = {**os.environ, "KLINE_SPOT_URL": url, "KLINE_FUTURES_URL": url, "KLINE_ARCHIVE_URL": url,
           "KLINE_SOURCE": "rest", "KLINE_DATA_ROOT": str(root / "data"),
           "KLINE_LOG_DIR": str(root / "logs"), "DAGSTER_HOME": str(home), "KLINE_START": start.isoformat(),
           "KLINE_PAIRS": "futures:BTC/USDT", "KLINE_STATE_DIR": str(root)}
    text = instance_yaml("postgres" if pg else "sqlite")
    if pg:
        db = pg.database()
        text = text.replace("port: 5432", f"port: {db['port']}")
        env.update(DAGSTER_PG_USERNAME=db["username"], DAGSTER_PG_PASSWORD=db["password"],
                   DAGSTER_PG_HOST=db["hostname"], DAGSTER_PG_DB=db["db_name"])
    (home / "dagster.yaml").write_text(text + "telemetry:\n  enabled: false\n")
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})
    manifest = root / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json"
    key = dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1m"])
    window = {(start + dt.timedelta(days=n)).isoformat() for n in range(days)}
    log = open(root / "run.log", "w+")  # noqa: SIM115 (a pipe nobody reads would stall the run when full)
    with contextlib.ExitStack() as stack:
        began = time.monotonic()
        if ui:
            web = stack.enter_context(dagster_dev(env))
            answer = graphql(web, LAUNCH, {"params": {"assetSelection": [{"path": key.path}],
                                                      "partitionNames": sorted(window), "fromFailure": False}})
            assert answer["data"]["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", answer
            print(f"launched through GraphQL {time.monotonic() - began:.1f} s after dagster dev started")
            run = None
        else:
            run = subprocess.Popen([str(BIN / "dagster"), "asset", "materialize", "-m", "kline_assets.definitions",
                                    "--select", "binanceusdm/BTCUSDT/klines_1m", "--partition-range",
                                    f"{start}...{last}"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        print(f"{'s':>6} {'in manifest':>12} {'materialized in Dagster':>24}")
        with dg.DagsterInstance.get() as instance:
            while True:
                time.sleep(every)
                stored = {c["partition"] for c in json.loads(manifest.read_text())["chunks"]} \
                    if manifest.exists() else set()
                shown = instance.get_materialized_partitions(key)
                print(f"{time.monotonic() - began:6.0f} {len(stored & window):12} {len(shown & window):24}",
                      flush=True)
                if run is not None and run.poll() is not None:
                    break
                if run is None and window <= shown and window <= stored:
                    break
            took = time.monotonic() - began
            runs = [r for r in instance.get_runs() if r.tags.get("dagster/backfill")]
            events = instance.fetch_materializations(key, limit=days * 2).records
        log.seek(0)
        output = log.read()
        log.close()
    for line in output.splitlines():
        if "checking and recording" in line or line.endswith("written)"):
            print(line.split(" - ")[-1])
    backfill = f"; {len(runs)} backfill run(s)" if ui else f"; run exit code {run.returncode}"
    print(f"end after {took:.0f} s: {len(stored & window)} days in the manifest, {len(shown & window)} "
          f"materialized, {sum(e.partition_key in window for e in events)} materialization events; "
          f"manifest == Dagster over the window: {stored & window == shown & window}{backfill}")


if __name__ == "__main__":
    main()
