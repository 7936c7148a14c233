"""Peak memory and speed of `combine` for a small and a large dataset (no network).

    python bench/combine.py [--days 30 600]

Chunks are made locally (one simulated day, shifted), committed through the real store, then each
combine runs in a fresh child process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile

import pyarrow.compute as pc

from kline_assets.settings import DatasetSpec
from kline_assets.sim.server import kline_row
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.schema import rows_to_table
from kline_assets.timezones import parse_zone

SPEC = DatasetSpec("futures", "BTC/USDT")
UTC = parse_zone("UTC")
START = dt.date(2021, 1, 1)


def make_dataset(root: str, days: int) -> None:
    store = DatasetStore.open(root, SPEC, UTC, START)
    s0, _ = UTC.day_window_ms(START)
    base = rows_to_table([kline_row("futures", "BTCUSDT", s0 + i * 60_000) for i in range(1440)])
    batch = []
    for n in range(days):
        day = START + dt.timedelta(n)
        shift = n * 86_400_000
        table = base.set_column(0, "open_time", pc.add(base["open_time"], shift))
        table = table.set_column(6, "close_time", pc.add(base["close_time"], shift))
        batch.append(store.stage(day, table, [], UTC.day_window_ms(day)[1]))
        if len(batch) == 64:
            store.commit(batch)
            batch = []
    store.commit(batch)


CHILD = """
import json, resource, sys, time, datetime as dt
from kline_assets.store.combine import combine
from kline_assets.settings import DatasetSpec
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
store = DatasetStore.open(sys.argv[1], DatasetSpec("futures", "BTC/USDT"), parse_zone("UTC"), dt.date(2021, 1, 1))
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
got = combine(store)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": got.rows, "bytes": got.bytes,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": rss0 / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[30, 600])
    args = parser.parse_args()
    print(f"{'days':>6} {'rows':>10} {'file MB':>8} {'peak RSS MB':>12} {'(before)':>9} {'rows/s':>12}")
    for days in args.days:
        with tempfile.TemporaryDirectory() as root:
            make_dataset(root, days)
            out = subprocess.run([sys.executable, "-c", CHILD, root], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout)
            print(f"{days:>6} {r['rows']:>10,} {r['bytes'] / 1e6:>8.1f} {r['peak_rss_mb']:>12.1f} "
                  f"{r['rss_before_mb']:>9.1f} {r['rows'] / r['seconds']:>12,.0f}")


if __name__ == "__main__":
    main()
