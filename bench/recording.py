"""Days recorded in Dagster while a long range run goes on: `dagster asset materialize --partition-range`
of many futures days against the simulator, with the instance and the manifest polled every few seconds.

    python bench/recording.py                       # 2,000 futures days, 50 ms latency
    python bench/recording.py --days 300 --every 2

Prints, over time, the days in the manifest and the days Dagster shows as materialized (they should
follow each other within one batch, ~2 s), then the run's own line on how long checking and recording
took, and whether both sides agree at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.backfill import simulator  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=2000)
    p.add_argument("--latency-ms", type=float, default=50)
    p.add_argument("--every", type=float, default=5.0, help="seconds between polls")
    a = p.parse_args()
    with simulator("--latency-ms", str(a.latency_ms)) as url, tempfile.TemporaryDirectory() as root:
        watch(url, Path(root), a.days, a.every)


def watch(url: str, root: Path, days: int, every: float) -> None:
    import dagster as dg

    start = dt.date(2019, 10, 1)
    last = start + dt.timedelta(days=days - 1)
    home = root / "dagster_home"
    home.mkdir()
    from kline_assets.defs.instance import instance_yaml

    (home / "dagster.yaml").write_text(instance_yaml("sqlite") + "telemetry:\n  enabled: false\n")
    env = {**os.environ, "KLINE_SPOT_URL": url, "KLINE_FUTURES_URL": url, "KLINE_ARCHIVE_URL": url,
           "KLINE_SOURCE": "rest", "KLINE_DATA_ROOT": str(root / "data"),
           "KLINE_LOG_DIR": str(root / "logs"), "DAGSTER_HOME": str(home), "KLINE_START": start.isoformat(),
           "KLINE_PAIRS": "futures:BTC/USDT", "KLINE_STATE_DIR": str(root)}
    manifest = root / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json"
    began = time.monotonic()
    log = open(root / "run.log", "w+")  # noqa: SIM115 (a pipe nobody reads would stall the run when full)
    run = subprocess.Popen([str(BIN / "dagster"), "asset", "materialize", "-m", "kline_assets.definitions",
                            "--select", "binanceusdm/BTCUSDT/klines_1m",
                            "--partition-range", f"{start}...{last}"], env=env, stdout=log,
                           stderr=subprocess.STDOUT, text=True)
    os.environ["DAGSTER_HOME"] = str(home)
    key = dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1m"])
    print(f"{'s':>6} {'in manifest':>12} {'materialized in Dagster':>24}")
    with dg.DagsterInstance.get() as instance:
        while run.poll() is None:
            time.sleep(every)
            stored = len(json.loads(manifest.read_text())["chunks"]) if manifest.exists() else 0
            shown = len(instance.get_materialized_partitions(key))
            print(f"{time.monotonic() - began:6.0f} {stored:12} {shown:24}", flush=True)
        log.seek(0)
        output = log.read()
        log.close()
        stored = {c["partition"] for c in json.loads(manifest.read_text())["chunks"]}
        shown = instance.get_materialized_partitions(key)
        events = instance.fetch_materializations(key, limit=days * 2).records
    for line in output.splitlines():
        if "checking and recording" in line or line.endswith("written)"):
            print(line.split(" - ")[-1])
    print(f"end: {len(stored)} days in the manifest, {len(shown)} materialized, {len(events)} materialization "
          f"events; manifest == Dagster: {stored == shown}; run exit code {run.returncode}")


if __name__ == "__main__":
    main()
