"""Time and peak memory of the Python API's reads over one year of one dataset (no network).

    python bench/read.py [--days 365]

The dataset is made locally through the real store (see bench/combine.py); each read runs in a fresh
child process, so its peak RSS is its own: `read_klines` of the whole year into pandas, of one month,
and a DuckDB aggregate over `open_dataset` (which checks every chunk's sha256 first).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.combine import make_dataset

CHILD = """
import json, resource, sys, time
import kline_assets
root, what = sys.argv[1], sys.argv[2]
from kline_assets import api  # imports are not the read
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if what == "year":
    rows = len(kline_assets.read_klines("futures", "BTC/USDT", data_root=root))
elif what == "month":
    rows = len(kline_assets.read_klines("futures", "BTC/USDT", "2021-06-01", "2021-07-01", data_root=root))
else:
    import duckdb
    con = duckdb.connect()
    con.register("k", kline_assets.open_dataset("futures", "BTC/USDT", data_root=root))
    rows = con.execute("select count(*), avg(close) from k").fetchone()[0]
print(json.dumps({"seconds": time.perf_counter() - t, "rows": rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "before_mb": rss0 / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        make_dataset(root, args.days)
        print(f"{args.days} days of futures BTC/USDT")
        print(f"{'read':>32} {'rows':>10} {'seconds':>8} {'peak RSS MB':>12} {'(before)':>9}")
        for what, label in (("year", "read_klines, every day"), ("month", "read_klines, one month"),
                            ("duckdb", "DuckDB over open_dataset")):
            out = subprocess.run([sys.executable, "-c", CHILD, root, what], capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout)
            print(f"{label:>32} {r['rows']:>10,} {r['seconds']:>8.2f} {r['peak_rss_mb']:>12.0f} {r['before_mb']:>9.0f}")


if __name__ == "__main__":
    main()
