"""The archive of a whole market: live and backfill figures for hundreds of datasets (issue #13). Not a
test: it takes minutes. The simulator runs in a process of its own with `--many-symbols` more USDT
symbols per market (96 gives 100 futures + 100 spot datasets) and 50 ms latency.

    python bench/scale.py live --minutes 10            # kline-assets live --all, no daemon
    python bench/scale.py dagster --minutes 10         # dagster dev with the live sensor on
    python bench/scale.py backfill --days 10           # kline-assets backfill --all --source rest
    python bench/scale.py backfill --archive --days 30 # the futures datasets from the archive
    python bench/scale.py load --many 296              # code location load with 600 datasets
    python bench/scale.py ui --days 5                  # dagster dev: one UI backfill of every klines_1m
    python bench/scale.py catalog --many 296           # the asset catalog of 600 datasets in Chromium

Live: 20 s after each minute boundary the share of datasets whose chunk of today holds the minute that
just closed; the longest live run (Dagster's run records); whether two runs ever wrote one dataset at
once; the CPU of every process of ours (the simulator excluded) over the whole time.
Backfill: days/min, weight per full minute against each budget, 429/418, and every stored row compared
with what the simulator serves.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/scale.py` from anywhere
from bench.backfill import BIN, free_port, sim_call, simulator, summarise
from kline_assets.defs.instance import instance_yaml
from kline_assets.settings import KINDS
from kline_assets.sim.market import SimConfig, SimState, funding_events
from kline_assets.store.backend import open_root
from kline_assets.store.checks import holds_latest
from kline_assets.store.dataset import dataset_dirs, manifest_at
from kline_assets.store.paths import MANIFEST
from kline_assets.store.schema import funding_table, rows_to_table
from kline_assets.timezones import UTC
from kline_assets_tests.helpers import LAUNCH, dagster_dev, graphql

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its descendants, living or already reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = sum(int(x) for x in fields[11:15]) / CLK_TCK  # utime, stime, cutime, cstime
    return own + sum(tree_cpu_s(int(c)) for c in children)


def cpu_of_command_line(fragment: str) -> float:
    """CPU seconds so far of the process whose command line contains `fragment` (the simulator)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if fragment in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    return tree_cpu_s(int(proc.name))
            except OSError:
                continue
    return 0.0


def environment(url: str, root: Path, days_back: int, **extra: str) -> dict:
    """The variables of every process of the bench; the instance is SQLite, or Postgres with `--postgres`
    (a PostgreSQL started for the bench, `POSTGRES` below)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLINE_", "DAGSTER_"))}
    start = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=days_back)
    env.update(KLINE_SPOT_URL=url, KLINE_FUTURES_URL=url, KLINE_ARCHIVE_URL=url, KLINE_SOURCE="rest",
               KLINE_PAIRS="futures:*/USDT,spot:*/USDT", KLINE_DATA_ROOT=str(root / "data"),
               KLINE_LOG_DIR=str(root / "logs"), DAGSTER_HOME=str(root / "dagster_home"),
               KLINE_STATE_DIR=str(root / "state"), KLINE_START=start.isoformat())
    env.update(extra)
    for name in ("dagster_home", "state"):
        (root / name).mkdir(parents=True, exist_ok=True)
    storage = "postgres" if POSTGRES else "sqlite"
    if POSTGRES:
        db = POSTGRES[0].database()
        pg = {"DAGSTER_PG_USERNAME": db["username"], "DAGSTER_PG_PASSWORD": db["password"],
              "DAGSTER_PG_HOST": db["hostname"], "DAGSTER_PG_DB": db["db_name"]}
        env.update(pg)
        os.environ.update(pg)  # this process reads the instance too (live_runs, measure_ui)
    text = instance_yaml(storage).replace("port: 5432", f"port: {POSTGRES[0].port}") if POSTGRES else \
        instance_yaml(storage)
    (root / "dagster_home" / "dagster.yaml").write_text(text + "telemetry:\n  enabled: false\n")
    return env


POSTGRES: list = []  # the bench's PostgreSQL when run with --postgres (set once by main)


def holding(data_root: Path, closed_open_ms: int) -> tuple[int, int]:
    """(datasets whose chunk of the closed minute's day covers it, datasets)."""
    day = UTC.local_date(closed_open_ms)
    folders = manifests(data_root)
    held = 0
    for folder in folders:
        try:
            manifest = folders[folder]()
            entry = manifest.entry_for(day)
        except (OSError, ValueError):
            continue
        # funding: every event due, not every minute
        held += entry is not None and holds_latest(KINDS[manifest.kind], entry.covered_until_ms,
                                                   closed_open_ms + 60_000)
    return held, len(folders)


def live_runs(home: Path) -> list[dict]:
    """Start, end and datasets of every live run in the instance at `home`."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    from kline_assets.defs.names import SOURCE_LIVE, TAG_SOURCE, tagged_datasets

    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(dg.RunsFilter(tags={TAG_SOURCE: SOURCE_LIVE}))
        print(f"  {len(records)} live runs in the instance ({type(instance.run_storage).__name__})", flush=True)
        return [{"start": r.start_time, "end": r.end_time, "status": r.dagster_run.status.value,
                 # the minute boundary the sensor requested the run for (its key: live:<minute>:...)
                 "boundary": int(r.dagster_run.tags.get("dagster/run_key", "live:0").split(":")[1]) * 60.0,
                 "datasets": set(tagged_datasets(r.dagster_run.tags))} for r in records]


def overlapping_writers(runs: list[dict]) -> int:
    """Pairs of runs that were going at the same time and wrote a dataset in common."""
    done = [r for r in runs if r["start"] and r["end"]]
    return sum(1 for i, a in enumerate(done) for b in done[i + 1:]
               if a["start"] < b["end"] and b["start"] < a["end"] and a["datasets"] & b["datasets"])


def measure_live(args: argparse.Namespace, command: list[str]) -> dict:
    with simulator("--many-symbols", str(args.many), "--latency-ms", str(args.latency_ms)) as url, \
            tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        env = environment(url, root, 1, KLINE_KINDS=args.kinds, KLINE_PAIRS=args.pairs)
        with open(root / "stderr.txt", "w") as stderr:
            proc = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parents[1],
                                    stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            # start-up and catching up today (hundreds of datasets: a backfill of ~1,000 minutes each, minutes
            # of weight): until every dataset held a minute at 20 s twice, at most 6 minutes
            began, before = time.time(), -1
            for _ in range(6):  # until all held, and no dataset was added since (the listing is in)
                held, total = held_at_20s(root / "data")
                if total and held == total == before:
                    break
                before = total
            print(f"  warm after {time.time() - began:.0f} s", flush=True)
            cpu0, t0 = our_cpu_s(proc.pid), time.time()
            shares = []
            for _ in range(args.minutes):
                held, total = held_at_20s(root / "data")
                shares.append((held, total))
            cpu = (our_cpu_s(proc.pid) - cpu0) / (time.time() - t0)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            runs = live_runs(root / "dagster_home")
        measured = [r for r in runs if r["start"] and r["end"] and r["end"] >= t0]
        log = sim_call(url, "/_sim/stats")["requests"]
    worst = min(h / t for h, t in shares) if shares else 0
    return {"datasets": shares[-1][1] if shares else 0, "worst_share_held_at_20s": round(worst, 4),
            "mean_share_held_at_20s": round(sum(h / t for h, t in shares) / len(shares), 4),
            "live_runs": len(measured), "longest_run_s": round(max((r["end"] - r["start"] for r in measured),
                                                                   default=0), 1),
            # a run requested ahead waits for its boundary: how long it then took to bring every dataset current
            "longest_after_boundary_s": round(max((r["end"] - max(r["start"], r["boundary"]) for r in measured),
                                                  default=0), 1),
            "failed_runs": sum(r["status"] != "SUCCESS" for r in measured),
            "overlapping_writers": overlapping_writers(runs), "cpu_cores": round(cpu, 3),
            "429": sum(r["status"] == 429 for r in log), "418": sum(r["status"] == 418 for r in log),
            **funding_requests(log, t0)}


def held_at_20s(data_root: Path) -> tuple[int, int]:
    """Sleeps until 20 s after the next minute boundary, then (datasets holding the minute that closed at
    that boundary, datasets)."""
    time.sleep(60 - time.time() % 60 + 20)
    closed = int(time.time() // 60 * 60_000) - 60_000
    held, total = holding(data_root, closed)
    print(f"  {dt.datetime.now(dt.timezone.utc):%H:%M:%S} {held}/{total} datasets hold "
          f"{dt.datetime.fromtimestamp(closed / 1000, dt.timezone.utc):%H:%M}", flush=True)
    return held, total


def our_cpu_s(pid: int) -> float:
    """CPU seconds of the command's process tree and, with --postgres, of the PostgreSQL server's."""
    postgres = sum(tree_cpu_s(int((s.data / "postmaster.pid").read_text().split()[0])) for s in POSTGRES)
    return tree_cpu_s(pid) + postgres


def manifests(data_root: Path) -> dict:
    """Dataset folder (key under the data root) -> a function reading its manifest now."""
    backend = open_root(str(data_root))

    def reader(folder: str):
        return lambda: manifest_at(backend, f"{folder}/{MANIFEST}")

    return {folder: reader(folder) for folder in dataset_dirs(backend)}


EXACT_SAMPLE = 3000  # closed days compared at most: the simulator's rows cost ~30 ms a day to make again


def exact(data_root: Path, state: SimState) -> tuple[int, int]:
    """(closed days equal to the simulator's rows, closed days checked), over every day of every dataset,
    or over a fixed random sample of `EXACT_SAMPLE` days when there are more (1,350 datasets of 30 days
    would take 20 minutes)."""
    good = checked = 0
    today = dt.datetime.now(dt.timezone.utc).date()
    days = [(folder, manifest, entry) for folder, read in manifests(data_root).items() for manifest in (read(),)
            for entry in manifest.chunks.values() if dt.date.fromisoformat(entry.partition) < today]
    if len(days) > EXACT_SAMPLE:
        days = random.Random(7).sample(days, EXACT_SAMPLE)
    for folder, manifest, entry in days:
        market = manifest.market
        day = dt.date.fromisoformat(entry.partition)
        start, end = UTC.day_window_ms(day)
        if manifest.kind == "funding":  # the archive states intervals and no mark price, REST the opposite
            events = funding_events(market, manifest.symbol, state.listings(market)[manifest.symbol], start,
                                    end - 1)
            want = funding_table([(t, r, None, h) if entry.source == "archive" else (t, r, m, None)
                                  for t, r, m, h in events])
        else:
            want = rows_to_table([r for r in state.klines(market, manifest.symbol, start, end - 1, 1440,
                                                          manifest.kind) if r[0] < end])
        checked += 1
        good += pq.read_table(data_root / folder / entry.file).equals(want)
    return good, checked


def measure_backfill(args: argparse.Namespace) -> dict:
    with simulator("--many-symbols", str(args.many), "--latency-ms", str(args.latency_ms)) as url, \
            tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # --archive: futures only, from the archive, whose newest day is two days old
        back = 2 if args.archive else 0
        extra = {"KLINE_SOURCE": "auto", "KLINE_PAIRS": "futures:*/USDT"} if args.archive else {}
        env = environment(url, root, args.days + back, KLINE_KINDS=args.kinds, **extra)
        start = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=args.days + back)).isoformat()
        end = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=back)).isoformat()
        if args.archive:  # every zip made once before the run, as published files are
            warm_archive(url, args.many, dt.date.fromisoformat(start), args.days)
        port = url.rsplit(":", 1)[1]
        sim_cpu = cpu_of_command_line(f"--port {port}")
        ours = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.time()
        done = subprocess.run([str(BIN / "kline-assets"), "backfill", "--all", "--start", start, "--end", end],
                              env=env, capture_output=True, text=True)
        ended = time.time()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent = after.ru_utime + after.ru_stime - ours.ru_utime - ours.ru_stime
        cpu = {"ours_cores": round(spent / (ended - began), 2),
               "simulator_cores": round((cpu_of_command_line(f"--port {port}") - sim_cpu) / (ended - began), 2)}
        log = sim_call(url, "/_sim/stats")["requests"]
        good, checked = exact(root / "data", SimState(SimConfig(many_symbols=args.many)))
    klines = [r for r in log if (r["endpoint"] == "klines" or r["market"] == "archive") and r["t"] >= began]
    first = min(r["t"] for r in klines)
    out = {"exit": done.returncode, "last_line": done.stdout.strip().splitlines()[-1:] or done.stderr[-300:],
           "wall_s_from_first_request": round(ended - first, 1), "startup_s": round(first - began, 1),
           "days": checked, "days_per_min": round(checked / (ended - first) * 60),
           "exact_days": f"{good}/{checked}", "cpu": cpu,
           "largest_process_max_rss_mb": round(after.ru_maxrss / 1024)}
    out.update(funding_requests(log, began))
    for market, budget in (("futures", 2400), ("spot", 6000)):
        times = [r["t"] for r in klines if r["market"] == market]
        if not times:
            continue
        s = summarise(log, market)
        active = max(times) - min(times)  # the markets finish apart: each is measured over its own time
        out[market] = {"requests": s["requests"], "429": s["429"], "418": s["418"], "active_s": round(active, 1),
                       "peak_minute_weight": s["peak_minute_weight"],
                       "share_of_budget_while_active": round(s["weight"] / (budget * active / 60), 3),
                       "full_minute_share_of_budget": round(s["full_minute_weight"] / budget, 3)}
    return out


def funding_requests(log: list[dict], since: float) -> dict:
    """fundingRate requests since `since` against their own budget, 500 per 5 minutes (the simulator's
    windows are 5-minute clock windows)."""
    asked = [r for r in log if r["endpoint"] == "fundingRate" and r["t"] >= since]
    if not asked:
        return {}
    windows = Counter(int(r["t"] // 300) for r in asked)
    return {"funding": {"requests": len(asked), "429": sum(r["status"] == 429 for r in asked),
                        "peak_per_5_min": max(windows.values()), "budget_per_5_min": 500}}


def warm_archive(url: str, many: int, start: dt.date, days: int) -> None:
    symbols = [s for s in SimState(SimConfig(many_symbols=many))._listings["futures"] if s.endswith("USDT")]

    def get(path: str) -> None:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + path).read()

    paths = [f"/data/futures/um/daily/klines/{symbol}/1m/{symbol}-1m-{start + dt.timedelta(i)}.zip{suffix}"
             for symbol in symbols for i in range(days) for suffix in ("", ".CHECKSUM")]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(get, paths))


def measure_load(args: argparse.Namespace) -> dict:
    with simulator("--many-symbols", str(args.many)) as url, tempfile.TemporaryDirectory() as tmp:
        env = environment(url, Path(tmp), 1)
        code = ("import time; t = time.time(); from kline_assets.definitions import defs; d = defs(); "
                "n = len([k for k in d.resolve_all_asset_keys() if k.path[-1] == 'klines_1m']); "
                "d.get_repository_def().get_all_jobs(); print(n, round(time.time() - t, 2))")
        figures = []
        for _ in range(2):  # the first asks exchangeInfo, the second uses the cached listing
            began = time.time()
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            datasets, inside = out.stdout.split()
            figures.append({"datasets": int(datasets), "definitions_s": float(inside),
                            "process_s": round(time.time() - began, 2)})
    return {"cold_listing": figures[0], "cached_listing": figures[1]}


def klines_keys(data_root_env: dict) -> list[list[str]]:
    code = ("import json; from kline_assets.definitions import defs; "
            "print(json.dumps([k.path for k in defs().resolve_all_asset_keys() if k.path[-1] == 'klines_1m']))")
    out = subprocess.run([sys.executable, "-c", code], env=data_root_env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def measure_ui(args: argparse.Namespace) -> dict:
    """One backfill of every klines_1m asset over `--days` closed days, launched as the UI does (GraphQL)."""
    with simulator("--many-symbols", str(args.many), "--latency-ms", str(args.latency_ms)) as url, \
            tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = environment(url, root, args.days + 1)
        keys = klines_keys(env)
        today = dt.datetime.now(dt.timezone.utc).date()
        days = [(today - dt.timedelta(days=n)).isoformat() for n in range(args.days, 0, -1)]
        with dagster_dev(env) as web:
            began = time.time()
            answer = graphql(web, LAUNCH, {"params": {"assetSelection": [{"path": k} for k in keys],
                                                       "partitionNames": days, "fromFailure": False}})
            assert answer["data"]["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", answer
            os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
            import dagster as dg

            with dg.DagsterInstance.get() as instance:
                most = 0
                while time.time() - began < 1800:
                    running = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
                    most = max(most, running)
                    held = sum(1 for read in manifests(root / "data").values() for e in read().chunks.values()
                               if e.partition in days)
                    if held >= len(keys) * len(days):
                        break
                    time.sleep(5)
                filled = time.time() - began
                while instance.get_runs_count(dg.RunsFilter(tags={"dagster/backfill": answer["data"][
                        "launchPartitionBackfill"]["backfillId"]}, statuses=[dg.DagsterRunStatus.STARTED])):
                    time.sleep(2)
                recorded = sum(len(instance.get_materialized_partitions(dg.AssetKey(k)) & set(days)) for k in keys)
                runs = instance.get_runs_count(dg.RunsFilter(tags={"dagster/backfill": answer["data"][
                    "launchPartitionBackfill"]["backfillId"]}))
        good, checked = exact(root / "data", SimState(SimConfig(many_symbols=args.many)))
    return {"datasets": len(keys), "days": len(days), "backfill_runs": runs, "most_runs_at_once": most,
            "filled_s": round(filled, 1), "days_per_min": round(len(keys) * len(days) / filled * 60),
            "partitions_recorded": f"{recorded}/{len(keys) * len(days)}", "exact_days": f"{good}/{checked}"}


def measure_catalog(args: argparse.Namespace) -> dict:
    """Open the asset catalog of `2 * (many + 4)` datasets in headless Chromium; a screenshot goes to artifacts/."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    shots = Path(__file__).resolve().parents[1] / "artifacts" / "scale"
    shots.mkdir(parents=True, exist_ok=True)
    with simulator("--many-symbols", str(args.many)) as url, tempfile.TemporaryDirectory() as tmp:
        env = environment(url, Path(tmp), 1)
        with dagster_dev(env) as web, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            began = time.time()
            page.goto(web + "/assets")  # rows show truncated keys: wait until a page of them is on screen
            while page.inner_text("body").count("klines_1m") < 20 and time.time() - began < 120:
                page.wait_for_timeout(200)
            opened = time.time() - began
            page.screenshot(path=str(shots / "catalog.png"))
            began = time.time()
            page.goto(web + "/assets/binanceusdm/C100USDT/klines_1m")
            page.get_by_text("Materialize").first.wait_for(timeout=120_000)
            asset_page = time.time() - began
            browser.close()
    return {"datasets": 2 * (args.many + 4), "catalog_open_s": round(opened, 1), "asset_page_s": round(asset_page, 1),
            "screenshot": str(shots / "catalog.png")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["live", "dagster", "backfill", "load", "ui", "catalog"])
    parser.add_argument("--many", type=int, default=96, help="extra symbols per market (96: 100 + 100 datasets)")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--archive", action="store_true", help="backfill: the futures market's days from the "
                                                              "archive (KLINE_SOURCE=auto), not REST")
    parser.add_argument("--pairs", default="futures:*/USDT,spot:*/USDT", help="KLINE_PAIRS of live and dagster")
    parser.add_argument("--kinds", default="klines", help="KLINE_KINDS of the selectors: klines+mark+funding for "
                                                           "the futures trader's datasets (spot keeps klines)")
    parser.add_argument("--postgres", action="store_true", help="the Dagster instance on a PostgreSQL started "
                                                               "for the bench (fsync on), not SQLite")
    args = parser.parse_args()
    if args.postgres:
        from kline_assets_tests.helpers import PostgresServer

        POSTGRES.append(PostgresServer(Path(tempfile.mkdtemp(prefix="kline-pg-")), fsync=True))
    try:
        run_mode(args)
    finally:
        for server in POSTGRES:
            server.stop()
            shutil.rmtree(server.folder, ignore_errors=True)


def run_mode(args: argparse.Namespace) -> None:
    if args.mode == "live":
        result = measure_live(args, [str(BIN / "kline-assets"), "live", "--all"])
    elif args.mode == "dagster":
        result = measure_live(args, [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(free_port())])
    elif args.mode == "backfill":
        result = measure_backfill(args)
    elif args.mode == "ui":
        result = measure_ui(args)
    elif args.mode == "catalog":
        result = measure_catalog(args)
    else:
        result = measure_load(args)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
