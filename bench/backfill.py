"""Backfill throughput against the weight budget, through the real CLI (Dagster path), and a plain
sequential ccxt loop as the reference. Not a test: it takes minutes.

    python bench/backfill.py                          # 50 ms latency, real budgets
    python bench/backfill.py --latency-ms 0 --futures-days 300 --spot-days 0   # local CPU per day
    python bench/backfill.py --futures-budget 120 --futures-days 30 --spot-days 0 --no-reference

Prints days/min, requests, 429/418 counts, requests inside a Retry-After window, peak RSS, CPU ms per
day, and the ratio to the budget limit (futures: 2400/6 = 400 days/min; spot: 6000/4 = 1500 days/min).
The clock runs from the first kline request to the end of the command (Dagster's bookkeeping included),
and the run starts at a clock minute, as Binance counts weight per clock minute. A run that ends early in
its last minute needed only part of that minute's budget, so days/min can pass the limit; the weight
used in each full minute (all but the last) is the steady figure, the peak shows the budget held.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import ccxt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/backfill.py` from anywhere
from kline_assets_tests.helpers import free_port

BIN = Path(sys.executable).parent
WEIGHT_PER_DAY = {"futures": 3 * 2, "spot": 2 * 2}  # pages of 499 (weight 2) and 1000 (weight 2)


def sim_call(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url + path, data=data, method="POST" if data else "GET")) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def simulator(*args: str) -> Iterator[str]:
    """The bundled simulator in a process of its own (as a real exchange would be); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sim = subprocess.Popen([sys.executable, "-m", "kline_assets.sim.server", "--port", str(port), *args],
                           stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                sim_call(url, "/_sim/stats")
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        sim.terminate()


def summarise(log: list[dict], market: str) -> dict:
    log = sorted((r for r in log if r["market"] == market), key=lambda r: r["t"])
    limited = [r for r in log if r["status"] in (429, 418)]
    inside = sum(1 for hit in limited for r in log if hit["t"] < r["t"] < hit["t"] + (hit["retry_after"] or 0) - 0.05)
    per_minute: dict[int, int] = {}
    for r in log:  # the simulator's weight windows are clock minutes (its clock runs at real speed here)
        if r["status"] == 200:
            per_minute[int(r["t"] // 60)] = per_minute.get(int(r["t"] // 60), 0) + r["weight"]
    # the last minute is partial, and so is the first when the run's start-up took less than foreseen
    minutes = [w for _, w in sorted(per_minute.items())]
    full = minutes[1:-1] if len(minutes) >= 3 else minutes[:-1]
    return {"requests": len(log), "429": sum(r["status"] == 429 for r in log),
            "418": sum(r["status"] == 418 for r in log), "inside_retry_after": inside,
            "peak_minute_weight": max(per_minute.values(), default=0),
            "weight": sum(r["weight"] for r in log if r["status"] == 200),
            "full_minute_weight": sum(full) / len(full) if full else 0}


def run_cli(url: str, market: str, days: int, root: str, source: str = "rest", data_root: str | None = None) -> dict:
    """One `kline-assets backfill`; its clock runs from its first kline request (start-up is Python and
    Dagster importing, not fetching) to the end of the command, Dagster's bookkeeping included. `root`
    holds the logs and Dagster's home, and the data unless `data_root` (an S3 prefix, say) is given."""
    start = dt.date(2021, 1, 1) if market == "futures" else dt.date(2018, 1, 1)
    env = {**os.environ, "KLINE_SPOT_URL": url, "KLINE_FUTURES_URL": url, "KLINE_ARCHIVE_URL": url,
           "KLINE_SOURCE": source, "KLINE_DATA_ROOT": data_root or root,
           "KLINE_LOG_DIR": os.path.join(root, "logs"), "DAGSTER_HOME": os.path.join(root, "dh"),
           "KLINE_START": start.isoformat(), "KLINE_STATE_DIR": os.path.join(root, "state")}
    os.makedirs(env["DAGSTER_HOME"], exist_ok=True)
    os.makedirs(env["KLINE_STATE_DIR"], exist_ok=True)
    sim_call(url, "/_sim/reset", {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.time()
    subprocess.run([str(BIN / "kline-assets"), "--market", market, "backfill", "--start", start.isoformat(),
                    "--end", (start + dt.timedelta(days=days)).isoformat()], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    log = sim_call(url, "/_sim/stats")["requests"]
    first = min(r["t"] for r in log if (r["market"] == market and r["endpoint"] == "klines")
                or r["market"] == "archive")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": ended - first, "startup_s": first - began, "cpu_s": cpu, "log": log,
            "peak_rss_mb": after.ru_maxrss / 1024}


def warm(url: str, market: str, days: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    start = dt.date(2021, 1, 1) if market == "futures" else dt.date(2018, 1, 1)
    folder = "futures/um" if market == "futures" else "spot"

    def get(n: int) -> None:
        day = start + dt.timedelta(days=n)
        urllib.request.urlopen(f"{url}/data/{folder}/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{day}.zip.CHECKSUM").read()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(get, range(days)))
    sim_call(url, "/_sim/reset", {})


def wait_for_minute(lead_s: float) -> None:
    """Start so the first request opens a clock minute: Binance counts weight per clock minute, and a
    run that starts late in one gets that minute's unused budget as a bonus."""
    time.sleep((60 - (time.time() + lead_s) % 60) % 60)


def reference_loop(url: str, market: str, days: int) -> float:
    """One day at a time, pages of 1500/1000, ccxt's own rate limiter: what a hand-written script does."""
    cls = ccxt.binanceusdm if market == "futures" else ccxt.binance
    ex = cls({"enableRateLimit": True, "urls": {"api": {"public": f"{url}/api/v3", "fapiPublic": f"{url}/fapi/v1"}}})
    call = ex.fapiPublicGetKlines if market == "futures" else ex.publicGetKlines
    limit = 1500 if market == "futures" else 1000
    start = int(dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    t = time.perf_counter()
    for n in range(days):
        cur, end = start + n * 86_400_000, start + (n + 1) * 86_400_000
        while cur < end:
            rows = call({"symbol": "BTCUSDT", "interval": "1m", "startTime": cur, "endTime": end - 1, "limit": limit})
            if not rows:
                break
            cur = rows[-1][0] + 60_000
    return days / (time.perf_counter() - t) * 60


def local_cost(url: str, days: int) -> dict:
    """Our own work per day without Dagster's event recording: fetch (ccxt HTTP + JSON), table build,
    zstd Parquet, sha256, pending file + fsync (in the stream's workers), batched manifest commits."""
    from kline_assets.binance.client import BinanceClient
    from kline_assets.binance.days import DayStream
    from kline_assets.binance.limiter import WeightLimiter
    from kline_assets.settings import MARKETS, DatasetSpec
    from kline_assets.store.dataset import DatasetStore
    from kline_assets.timezones import parse_zone

    with tempfile.TemporaryDirectory() as root:
        store = DatasetStore.open(root, DatasetSpec("futures", "BTC/USDT"), parse_zone("UTC"), dt.date(2021, 1, 1))
        client = BinanceClient(MARKETS["futures"], url, limiter=WeightLimiter(10**9))
        day_list = [dt.date(2021, 1, 1) + dt.timedelta(n) for n in range(days)]
        cpu, wall = time.process_time(), time.perf_counter()
        batch, committing = [], 0.0
        for data in DayStream(store, client, day_list, page=499, workers=4):
            if data is None or data.staged is None:  # still waiting for the next day, or nothing new
                continue
            batch.append(data.staged)
            if len(batch) == 64:
                t = time.process_time()
                store.commit(batch)
                committing += time.process_time() - t
                batch = []
        store.commit(batch)
        return {"cpu_ms": (time.process_time() - cpu) / days * 1000, "commit_ms": committing / days * 1000,
                "wall_ms": (time.perf_counter() - wall) / days * 1000}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency-ms", type=float, default=50)
    p.add_argument("--futures-budget", type=int, default=2400)
    p.add_argument("--spot-budget", type=int, default=6000)
    p.add_argument("--futures-days", type=int, default=800)
    p.add_argument("--spot-days", type=int, default=2500)
    p.add_argument("--reference-days", type=int, default=60)
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--source", default="rest", choices=["rest", "auto"],
                   help="auto: closed days from the (simulated) public archive, REST for the rest")
    p.add_argument("--warm-archive", action="store_true",
                   help="have the simulator build every archive file before the timed run, so the figure is "
                        "the client's (building a day costs the simulator ~20 ms of CPU on this machine)")
    p.add_argument("--local-days", type=int, default=0,
                   help="also measure our own CPU per day without Dagster (zero budget limit)")
    a = p.parse_args()
    with simulator("--latency-ms", str(a.latency_ms), "--futures-budget", str(a.futures_budget),
                   "--spot-budget", str(a.spot_budget)) as url:
        budgets = {"futures": a.futures_budget, "spot": a.spot_budget}
        if a.local_days:
            cost = local_cost(url, a.local_days)
            print(f"local cost, no Dagster, {a.local_days} futures days: {cost['cpu_ms']:.1f} ms CPU per day in all "
                  f"threads (fetch, parse, zstd Parquet, sha256, fsync included), of which {cost['commit_ms']:.1f} ms "
                  f"committing the manifest; {cost['wall_ms']:.1f} ms wall per day")
        print(f"latency {a.latency_ms} ms, budgets {budgets}")
        for market, days in (("futures", a.futures_days), ("spot", a.spot_days)):
            if not days:
                continue
            limit = budgets[market] / WEIGHT_PER_DAY[market]
            with tempfile.TemporaryDirectory() as root:
                base = run_cli(url, market, 1, root + "/base")  # start-up CPU, subtracted from CPU per day
                if a.warm_archive:
                    warm(url, market, days)
                wait_for_minute(base["startup_s"])
                got = run_cli(url, market, days, root + "/run", a.source)
                stats = summarise(got["log"], market)
            rate = days / got["wall_s"] * 60
            cpu_ms = (got["cpu_s"] - base["cpu_s"]) / max(1, days - 1) * 1000
            print(f"{market:8} {days:5} days: {rate:7.0f} days/min (limit {limit:.0f}, {rate / limit:5.1%}), "
                  f"{stats['requests']} requests, 429s {stats['429']}, 418s {stats['418']}, "
                  f"inside Retry-After {stats['inside_retry_after']}, "
                  f"peak weight in one minute {stats['peak_minute_weight']}/{budgets[market]}, "
                  f"mean weight of the full minutes {stats['full_minute_weight']:.0f} "
                  f"({stats['full_minute_weight'] / budgets[market]:.1%} of the budget), "
                  f"peak RSS {got['peak_rss_mb']:.0f} MB, "
                  f"CPU {cpu_ms:.1f} ms/day (start-up {got['startup_s']:.1f}s excluded)")
            if a.source != "rest":
                files = sum(1 for r in got["log"] if r["market"] == "archive")
                print(f"{'':8} source {a.source}: {files} archive requests, REST weight used "
                      f"{stats['weight']} (a REST-only backfill of these days: {days * WEIGHT_PER_DAY[market]})")
            if not a.no_reference:
                sim_call(url, "/_sim/reset", {})
                ref = reference_loop(url, market, a.reference_days)
                print(f"{'':8} reference sequential ccxt loop: {ref:7.0f} days/min "
                      f"-> kline-assets is {rate / ref:.1f}x")


if __name__ == "__main__":
    main()
