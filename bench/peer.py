"""kline-assets beside freqtrade's Binance archive fast path, on the same local archive. Not a test.

    python bench/peer.py                     # 1,460 days of BTCUSDT futures, 50 ms latency, 3 runs each
    python bench/peer.py --days 365 --runs 1

freqtrade is what many users would otherwise run. Its `download_archive_ohlcv`
(`freqtrade/exchange/binance_public_data.py`) fetches daily zips over up to 100 kept-open connections and
parses them in memory: no CHECKSUM, nothing written, nothing recorded. kline-assets' `backfill --source auto`
verifies each file against its CHECKSUM, checks every row, writes and fsyncs zstd Parquet, commits the
manifest and records each day's materialization and checks in Dagster (a fresh DAGSTER_HOME each run, as a
first backfill has).

freqtrade is installed from PyPI (a pinned version) into a venv of its own under the temp folder when missing:
a bench tool, never a dependency of ours. Its archive URL is pointed at the simulator by wrapping its URL
function in the driver below; its files are not edited. The simulator runs in a process of its own with
`--latency-ms`, and every zip is made once before the first run (as published files are). Both tools must
return every row.

Prints, per tool, the whole process (spawn to exit) and the call (freqtrade's `download_archive_ohlcv`) or
the run (kline-assets' own "done in" figure), as seconds and days/min, the median of the runs and each run,
then the ratio of the whole-process medians.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.backfill import BIN, simulator

FREQTRADE = "2026.9"
DRIVER = r'''
import asyncio, sys, time
import freqtrade.exchange.binance_public_data as bpd
from freqtrade.enums import CandleType
origin, since_ms, until_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
official = bpd.binance_vision_ohlcv_zip_url
bpd.binance_vision_ohlcv_zip_url = lambda *a, **k: official(*a, **k).replace("https://data.binance.vision", origin)
began = time.monotonic()
df = asyncio.run(bpd.download_archive_ohlcv(CandleType.FUTURES, "BTC/USDT:USDT", "1m", since_ms=since_ms,
                                            until_ms=until_ms, markets={"BTC/USDT:USDT": {"id": "BTCUSDT"}}))
print(f"call_s={time.monotonic() - began:.3f} rows={len(df)}")
'''


def freqtrade_python(folder: Path) -> Path:
    """The freqtrade venv's interpreter, installed first when missing."""
    python = folder / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import freqtrade"],
                                             capture_output=True).returncode:
        print(f"installing freqtrade=={FREQTRADE} into {folder} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"freqtrade=={FREQTRADE}"], check=True)
    return python


def warm(url: str, start: dt.date, days: int) -> None:
    """Every zip (and CHECKSUM) asked for once, so both tools fetch published files, not the simulator's work."""
    months = sorted({(start + dt.timedelta(i)).replace(day=1) for i in range(days)})
    paths = [f"/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{start + dt.timedelta(i)}.zip"
             for i in range(days)]
    paths += [f"/data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-{m:%Y-%m}.zip" for m in months]

    def get(path: str) -> None:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + path).read()

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(get, [path + suffix for path in paths for suffix in ("", ".CHECKSUM")]))


def run_freqtrade(python: Path, url: str, start: dt.date, days: int) -> dict:
    since = int(dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp() * 1000)
    until = since + days * 86_400_000
    began = time.monotonic()
    out = subprocess.run([str(python), "-c", DRIVER, url, str(since), str(until)], capture_output=True, text=True)
    whole = time.monotonic() - began
    found = re.search(r"call_s=([\d.]+) rows=(\d+)", out.stdout)
    if out.returncode or not found:
        raise SystemExit(f"freqtrade failed ({out.returncode}): {out.stderr[-2000:]}")
    return {"whole_s": whole, "inner_s": float(found[1]), "rows": int(found[2])}


def run_ours(url: str, start: dt.date, days: int, root: Path) -> dict:
    env = {**os.environ, "KLINE_SPOT_URL": url, "KLINE_FUTURES_URL": url, "KLINE_ARCHIVE_URL": url,
           "KLINE_DATA_ROOT": str(root / "data"), "KLINE_LOG_DIR": str(root / "logs"),
           "DAGSTER_HOME": str(root / "dagster_home"), "KLINE_STATE_DIR": str(root / "state"),
           "KLINE_START": start.isoformat(), "KLINE_PAIRS": "futures:BTC/USDT"}
    began = time.monotonic()
    out = subprocess.run([str(BIN / "kline-assets"), "--market", "futures", "backfill", "--source", "auto",
                          "--start", start.isoformat(), "--end", (start + dt.timedelta(days)).isoformat()],
                         env=env, capture_output=True, text=True)
    whole = time.monotonic() - began
    text = out.stdout + out.stderr
    done = re.search(r"done in ([\d.]+)s: .* / ([\d,]+) rows", text)
    if out.returncode or not done:
        raise SystemExit(f"kline-assets failed ({out.returncode}): {out.stderr[-3000:]}")
    recording = re.search(r"in Dagster took ([\d.]+)s", text)
    stream = re.search(r"(\d+) days/min, \d+ requests \(\d+ written\)", text)  # fetched, verified, written, committed
    return {"whole_s": whole, "inner_s": float(done[1]), "rows": int(done[2].replace(",", "")),
            "recording_s": float(recording[1]) if recording else None,
            "stream_days_min": int(stream[1]) if stream else None}


def row(name: str, runs: list[dict], days: int) -> str:
    whole = statistics.median(r["whole_s"] for r in runs)
    inner = statistics.median(r["inner_s"] for r in runs)
    each = ", ".join(f"{r['whole_s']:.1f}" for r in runs)
    return (f"| {name} | {whole:.1f} s, {days / whole * 60:,.0f} days/min | {inner:.1f} s, "
            f"{days / inner * 60:,.0f} days/min | {each} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=1460)
    p.add_argument("--start", default="2021-01-01")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--latency-ms", default="50")
    p.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / f"kline-bench-freqtrade-{FREQTRADE}")
    a = p.parse_args()
    start = dt.date.fromisoformat(a.start)
    python = freqtrade_python(a.venv)
    expected = a.days * 1440
    with simulator("--latency-ms", a.latency_ms) as url:
        warm(url, start, a.days)
        theirs, ours = [], []
        for i in range(a.runs):  # alternated, so both see the same machine
            theirs.append(run_freqtrade(python, url, start, a.days))
            with tempfile.TemporaryDirectory(prefix="kline-peer-") as tmp:
                ours.append(run_ours(url, start, a.days, Path(tmp)))
            print(f"run {i + 1}: freqtrade {theirs[-1]['whole_s']:.1f} s ({theirs[-1]['rows']:,} rows), "
                  f"kline-assets {ours[-1]['whole_s']:.1f} s ({ours[-1]['rows']:,} rows; days fetched, verified, "
                  f"written and committed at {ours[-1]['stream_days_min']} days/min; recording in Dagster "
                  f"{ours[-1]['recording_s']} s)", flush=True)
    for name, runs in (("freqtrade", theirs), ("kline-assets", ours)):
        short = [r["rows"] for r in runs if r["rows"] != expected]
        if short:
            raise SystemExit(f"{name} returned {short} rows, not {expected:,}")
    print(f"\n{a.days:,} days of BTCUSDT 1m USD-M futures, {a.latency_ms} ms latency, median of {a.runs} run(s):")
    print("| tool | whole process | in the call / the run | each run, whole s |")
    print("| --- | --- | --- | --- |")
    print(row(f"freqtrade {FREQTRADE} `download_archive_ohlcv`", theirs, a.days))
    print(row("kline-assets `backfill --source auto`", ours, a.days))
    ratio = statistics.median(r["whole_s"] for r in theirs) / statistics.median(r["whole_s"] for r in ours)
    print(f"kline-assets / freqtrade, whole-process days/min: {ratio:.2f}x")


if __name__ == "__main__":
    main()
