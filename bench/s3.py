"""The archive on S3 (moto's server on loopback) against a local folder: an archive-source backfill of
futures days through the CLI (days/min, and requests to the store per committed day), then `read_klines`
of one year from each. Not a test: it takes minutes.

    python bench/s3.py                 # 1,000 days
    python bench/s3.py --days 200

moto keeps objects in memory and answers in Python, so S3 figures here are an upper bound on our own
cost per request, not a real bucket's latency.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.backfill import run_cli, simulator, warm
from kline_assets_tests.helpers import S3Server

REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP')

READ = """
import json, sys, time
import kline_assets
t = time.perf_counter()
rows = len(kline_assets.read_klines("futures", "BTC/USDT", "2021-01-01", "2022-01-01", data_root=sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - t, "rows": rows}))
"""


def kinds(log_text: str) -> Counter:
    """Requests to the store by what they touched (werkzeug's access log of moto's server)."""
    out: Counter = Counter()
    for method, path in REQUEST.findall(log_text):
        if "list-type" in path or ("prefix=" in path and method == "GET"):
            out["LIST"] += 1
        elif "/chunks/" in path:
            out[f"{method} chunk"] += 1
        elif path.split("?")[0].endswith("manifest.json"):
            out[f"{method} manifest"] += 1
        else:
            out[f"{method} other"] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, simulator("--latency-ms", "0") as url:
        server = S3Server(Path(tmp))
        try:
            os.environ.update(server.env)
            warm(url, "futures", args.days)
            for label, data_root in (("local folder", None), ("S3 (moto)", f"s3://{server.bucket()}/archive")):
                work = os.path.join(tmp, label.split()[0])
                mark = Path(server.log.name).stat().st_size
                began = time.perf_counter()
                result = run_cli(url, "futures", args.days, work, source="auto", data_root=data_root)
                whole = time.perf_counter() - began
                with open(server.log.name, errors="replace") as fh:
                    fh.seek(mark)
                    requests = kinds(fh.read())
                read = json.loads(subprocess.run([sys.executable, "-c", READ, data_root or work], capture_output=True,
                                                 text=True, check=True).stdout)
                rows.append((label, result, whole, requests, read))
        finally:
            server.stop()
    print(f"archive-source backfill of {args.days} futures days (CLI), then read_klines of 2021 (365 days)")
    for label, result, whole, requests, read in rows:
        per_day = ", ".join(f"{k} {v / args.days:.3f}" for k, v in sorted(requests.items())) or "-"
        print(f"{label:>13}: {args.days / result['wall_s'] * 60:,.0f} days/min from the first request "
              f"({whole:.1f} s whole command), peak RSS {result['peak_rss_mb']:.0f} MB\n"
              f"{'':>15}store requests per day: {per_day}\n"
              f"{'':>15}read one year: {read['rows']:,} rows in {read['seconds']:.2f} s")


if __name__ == "__main__":
    main()
