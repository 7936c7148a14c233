"""What hostile or broken servers cost a user, through the real command line: seconds, peak memory, the
exit code and the last line. Not a test: it takes a few minutes.

    python bench/hostile.py                  # every scenario, simulator at 50 ms
    python bench/hostile.py unreachable      # the scenarios whose name contains the word

Scenarios: a REST-only backfill (the reference); the same with `--source auto` and an archive origin that
refuses connections; an archive serving zip bombs whose CHECKSUM matches; a kline origin sending an
endless 200 MB body; SIGINT and SIGTERM while the kline origin drips a byte every 3 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.backfill import simulator
from kline_assets.sim.hostile import Hostile

BIN = Path(sys.executable).parent
# runs the command and prints the peak RSS of it (its children included) in MB as its last line
MEASURED = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, file=sys.stderr); "
            "sys.exit(code)")


def env_for(root: Path, url: str, archive: str, source: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLINE_", "DAGSTER_"))}
    env.update(KLINE_FUTURES_URL=url, KLINE_SPOT_URL=url, KLINE_ARCHIVE_URL=archive, KLINE_SOURCE=source,
               KLINE_DATA_ROOT=str(root / "data"), KLINE_LOG_DIR=str(root / "logs"),
               DAGSTER_HOME=str(root / "home"), KLINE_STATE_DIR=str(root / "state"), KLINE_PAIRS="futures:BTC/USDT")
    return env


def backfill(env: dict, days: int, stop: int | None = None, after_s: float = 0.0) -> tuple[int, float, int, str]:
    """Exit code, seconds, peak MB and the last stderr line of `backfill` over `days` days ending 400 days ago
    (closed days the archive has); with `stop`, that signal is sent `after_s` seconds in."""
    end = dt.date.today() - dt.timedelta(days=400)
    args = [sys.executable, "-c", MEASURED, str(BIN / "kline-assets"), "backfill", "--start",
            (end - dt.timedelta(days=days)).isoformat(), "--end", end.isoformat()]
    began = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if stop is not None:
        time.sleep(after_s)
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            os.kill(int(child), stop)  # the command, not the measuring wrapper
        sent = time.monotonic()
    _, err = proc.communicate()
    took = time.monotonic() - (sent if stop is not None else began)
    lines = err.strip().splitlines()
    return proc.returncode, took, int(lines[-1]), next((x for x in reversed(lines[:-1]) if x), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="scenarios whose name contains one of these words")
    parser.add_argument("--days", type=int, default=100)
    args = parser.parse_args()
    with simulator("--latency-ms", "50") as url:
        scenarios = {
            "rest only (reference)": lambda root: backfill(env_for(root, url, url, "rest"), args.days),
            "auto, archive unreachable": lambda root: backfill(env_for(root, url, "http://127.0.0.1:9", "auto"),
                                                               args.days),
        }
        hostile = {"auto, zip bombs in the archive": ("bomb", ".zip", "archive", 10),
                   "endless 200 MB kline body": ("huge", "klines", "rest", 1)}
        for name, (mode, target, where, days) in hostile.items():
            def run(root, mode=mode, target=target, where=where, days=days):
                with Hostile(url, mode, target=target) as bad:
                    env = env_for(root, bad.url if where == "rest" else url, bad.url if where == "archive" else url,
                                  "auto" if where == "archive" else "rest")
                    return backfill(env, days)
            scenarios[name] = run
        for sig in (signal.SIGINT, signal.SIGTERM):
            def stopped(root, sig=sig):
                with Hostile(url, "drip", drip_s=3.0) as bad:
                    return backfill(env_for(root, bad.url, url, "rest"), 4, stop=sig, after_s=8.0)
            scenarios[f"{sig.name} while the server drips"] = stopped
        for name, scenario in scenarios.items():
            if args.only and not any(word in name for word in args.only):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                code, took, peak, last = scenario(Path(tmp))
            rate = f", {args.days / took * 60:.0f} days/min" if name.startswith(("rest", "auto, archive")) else ""
            print(f"{name}: exit {code}, {took:.1f}s{rate}, peak {peak} MB\n    {last[:200]}", flush=True)


if __name__ == "__main__":
    main()
