"""What Dagster's stock storages charge per recorded day, with nothing of ours in the way. Not a test.

    python bench/events.py                       # 300 days, SQLite and Postgres
    python bench/events.py --days 500 --instance sqlite

A partitioned asset with three checks whose body only yields, for each day of a 300-day range run: one
`AssetMaterialization` (kline-assets' ten metadata entries) and three `AssetCheckEvaluation`s (`all`, what
kline-assets recorded per day until issue #33), or only one kind of the two (`materializations`, `checks`), or
what kline-assets records now (`ours`: the materializations, then one `AssetCheckResult` per check for the
run). It prints ms per day of the step's thread (wall and CPU; Dagster's own log lines go to stderr). This is
the floor of recording a day through the public API on that instance: each event is one `store_event` call of
Dagster's storage (a new SQLAlchemy engine and connection per statement on SQLite, a new connection per
statement on Postgres); only materializations that Dagster derives from an asset's outputs are ever written in
batches (`DAGSTER_EVENT_BATCH_SIZE`), and SQLite writes even those one by one.
"""

# no `from __future__ import annotations`: Dagster reads the context annotation at run time
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kline_assets_tests.helpers import PostgresServer

CHECKS = ("continuity", "integrity", "sanity")


def build(kind: str, took: dict) -> dg.AssetsDefinition:
    partitions = dg.DailyPartitionsDefinition("2020-01-01")
    key = dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1m"])

    @dg.multi_asset(specs=[dg.AssetSpec(key, partitions_def=partitions)], partitions_def=partitions, can_subset=True,
                    check_specs=[dg.AssetCheckSpec(name, asset=key, blocking=True) for name in CHECKS])
    def klines(context: dg.AssetExecutionContext):
        began, cpu = time.monotonic(), time.thread_time()
        for day in context.partition_keys:
            if kind in ("all", "materializations", "ours"):
                yield dg.AssetMaterialization(key, partition=day, metadata={
                    "rows": 1440, "first_open_time": dg.MetadataValue.timestamp(1.6e9),
                    "last_open_time": dg.MetadataValue.timestamp(1.6e9), "sha256": "ab" * 32, "bytes": 60_000,
                    "complete": True, "exchange_gap_minutes": 0, "exchange_gaps": dg.MetadataValue.json([]),
                    "path": dg.MetadataValue.path(f"/data/binanceusdm/BTCUSDT/1m/chunks/{day}.parquet"),
                    "source": "archive"})
            if kind in ("all", "checks"):
                for name in CHECKS:
                    yield dg.AssetCheckEvaluation(asset_key=key, check_name=name, passed=True, partition=day,
                                                  metadata={"rows": 1440}, blocking=True)
        if kind == "ours":  # a failing day would add its evaluation: none fails here
            for name in CHECKS:
                yield dg.AssetCheckResult(asset_key=key, check_name=name, passed=True, metadata={"days": len(
                    context.partition_keys)})
        took["wall"], took["cpu"], took["days"] = time.monotonic() - began, time.thread_time() - cpu, \
            len(context.partition_keys)

    return klines


def one(home: Path, storage: dict, kind: str, days: int) -> dict:
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": storage, "telemetry": {"enabled": False}}))
    took: dict = {}
    keys = dg.DailyPartitionsDefinition("2020-01-01").get_partition_keys()[:days]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dg.materialize([build(kind, took)], instance=instance, tags={
            "dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
    return {"wall_ms": 1000 * took["wall"] / took["days"], "cpu_ms": 1000 * took["cpu"] / took["days"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=300)
    p.add_argument("--instance", action="append", choices=["sqlite", "postgres"])
    p.add_argument("--kind", action="append", choices=["all", "materializations", "checks", "ours"])
    a = p.parse_args()
    print(f"{'instance':>9} {'events':>16} {'ms/day (wall)':>14} {'ms/day (CPU)':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for instance in a.instance or ["sqlite", "postgres"]:
            pg = PostgresServer(Path(tempfile.mkdtemp(prefix="kline-pg-")), fsync=True) \
                if instance == "postgres" else None
            try:
                for i, kind in enumerate(a.kind or ["all", "materializations", "checks", "ours"]):
                    home = Path(tmp) / f"{instance}{i}"
                    storage = {"sqlite": {"base_dir": str(home)}} if pg is None else \
                        {"postgres": {"postgres_db": pg.database()}}
                    r = one(home, storage, kind, a.days)
                    print(f"{instance:>9} {kind:>16} {r['wall_ms']:14.1f} {r['cpu_ms']:13.1f}", flush=True)
            finally:
                if pg is not None:
                    pg.stop()
                    shutil.rmtree(pg.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
