"""The archive on S3 (moto's server) end to end, as a team runs it: the CLI and `dagster asset materialize`
with `KLINE_DATA_ROOT=s3://...` and the standard AWS variables, kill -9 and rerun, and two first
backfills with different starts committing into one prefix at once."""

import datetime as dt
import json
import signal
import subprocess
import time

import pytest

from kline_assets.store import dataset as store_module
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.verify import quarantine, verify
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import BIN, FUT, check_days, cli, cli_here, env_for, materialized

UTC = parse_zone("UTC")


def dataset(root, start=dt.date(2021, 1, 1)) -> DatasetStore:
    return DatasetStore.open(root, FUT, UTC, start)


def test_every_verb_works_on_s3(sim, tmp_path, s3_root, monkeypatch, capsys):
    env = env_for(sim, tmp_path, KLINE_DATA_ROOT=s3_root, KLINE_SOURCE="auto")
    done = cli(env, "backfill", "--start", "2021-06-01", "--end", "2021-06-05")
    assert done.returncode == 0, done.stderr
    assert f"data in {s3_root}/binanceusdm/BTCUSDT/1m" in done.stderr
    check_days(sim, s3_root, dt.date(2021, 6, 1), 4)
    store = dataset(s3_root, dt.date(2021, 6, 1))
    manifest = store.manifest()
    assert sorted(e.source for e in manifest.chunks.values()) == ["archive"] * 4
    assert all(store.entry_intact(e) for e in manifest.chunks.values())
    combined = cli(env, "combine")
    assert combined.returncode == 0, combined.stderr
    assert store.backend.exists(store.paths.combined_file(None))
    # a damaged chunk is found and repaired from the exchange, on S3 too
    key = store.key(manifest.chunks[sorted(manifest.chunks)[1]])
    store.backend.put(key, store.backend.get(key)[:-5])
    assert cli_here(monkeypatch, capsys, env, "verify").returncode == 1
    repaired = cli(env, "verify", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "1 corrupt" in repaired.stdout and "after repair" in repaired.stdout
    assert materialized(env) == {f"2021-06-0{n}" for n in range(1, 5)}
    crossed = cli(env, "verify", "--cross-check", "2")
    assert crossed.returncode == 0, crossed.stdout + crossed.stderr
    # the whole configured set up to yesterday, then live with today's closed minutes, in another prefix
    yesterday = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(1)).isoformat()
    env.update(KLINE_PAIRS="futures:BTC/USDT,spot:ETH/USDT", KLINE_START=yesterday, KLINE_SOURCE="rest",
               KLINE_DATA_ROOT=s3_root.rpartition("/")[0] + "/recent")
    both = cli(env, "backfill", "--all", "--start", yesterday)
    assert both.returncode == 0, both.stderr
    live = cli(env, "live", "--all", "--cycles", "1")
    assert live.returncode == 0, live.stderr
    statuses = json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)["datasets"]
    assert [(s["dataset"], s["path"]) for s in statuses] == [
        (name, f"{env['KLINE_DATA_ROOT']}/{name}/1m") for name in ("binance/ETHUSDT", "binanceusdm/BTCUSDT")]
    assert all(s["last_stored_minute"] and s["chunks"] == 2 for s in statuses)


def test_dagster_asset_materialize_into_s3(sim, tmp_path, s3_root):
    env = env_for(sim, tmp_path, KLINE_DATA_ROOT=s3_root)
    done = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "kline_assets.definitions",
         "--select", "binanceusdm/BTCUSDT/klines_1m", "--partition-range", "2021-01-01...2021-01-03"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    check_days(sim, s3_root, dt.date(2021, 1, 1), 3)


def test_kill_minus_nine_on_s3_then_rerun_completes_and_young_objects_survive_repair(sim, tmp_path, s3_root):
    sim.state.config.latency_ms = 150
    env = env_for(sim, tmp_path, KLINE_DATA_ROOT=s3_root)
    store = dataset(s3_root)
    args = [str(BIN / "kline-assets"), "backfill", "--start", "2021-01-01", "--end", "2021-02-10"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline and store.read_manifest() is None:
        time.sleep(0.05)
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = store.manifest()
    assert 0 < len(killed.chunks) < 40, "the kill did not land mid-run"
    assert all(store.entry_intact(e) for e in killed.chunks.values())  # never torn
    sim.state.config.latency_ms = 0
    done = cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-02-10")
    assert done.returncode == 0, done.stderr
    check_days(sim, s3_root, dt.date(2021, 1, 1), 40)
    assert materialized(env) == {e.partition for e in store.manifest().chunks.values()}
    young = {o.key for o in store.unlisted(store.manifest())}  # the killed run's staged days, if any
    repaired = cli(env, "verify", "--repair")
    assert repaired.returncode == 0 and "all well" in repaired.stdout, repaired.stdout + repaired.stderr
    assert {o.key for o in store.unlisted(store.manifest())} == young  # within the grace period: kept
    later = time.time() + store_module.GRACE_S + 60  # an hour on: a repair removes what no manifest lists
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: later)
        report = verify(store, None, None, dt.date(2021, 2, 10))
        assert {p.kind for p in report.problems} <= {"stray_file"}
        quarantine(store, report)
    assert store.unlisted(store.manifest()) == []
    assert verify(store, None, None, dt.date(2021, 2, 10)).ok


def test_two_first_backfills_with_different_starts_into_one_prefix(sim, tmp_path, s3_root):
    """Two machines start the same dataset at once from different days: one start wins (its first commit),
    every day from it is stored once, the other says which of its days were not stored."""
    sim.state.config.latency_ms = 30
    env = env_for(sim, tmp_path, KLINE_DATA_ROOT=s3_root)
    runs = [subprocess.Popen([str(BIN / "kline-assets"), "backfill", "--start", start, "--end", "2021-01-25"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for start in ("2021-01-01", "2021-01-08")]
    outs = [p.communicate(timeout=300) for p in runs]
    codes = [p.returncode for p in runs]
    manifest = dataset(s3_root).manifest()
    first = manifest.start_date
    assert first in (dt.date(2021, 1, 1), dt.date(2021, 1, 8))
    days = sorted(dt.date.fromisoformat(e.partition) for e in manifest.chunks.values())
    assert days == [first + dt.timedelta(n) for n in range((dt.date(2021, 1, 25) - first).days)]
    check_days(sim, s3_root, first, len(days))
    store = DatasetStore.open(s3_root, FUT, UTC, first)
    assert verify(store, None, None, dt.date(2021, 2, 1)).ok
    if first == dt.date(2021, 1, 8):  # the early writer lost its first week: said, exit 1
        assert codes[0] == 1 and "were not stored" in outs[0][1], outs[0][1]
    else:
        assert codes == [0, 0], outs


def test_a_bucket_that_does_not_exist_is_one_line(sim, tmp_path, s3_root):
    env = env_for(sim, tmp_path, KLINE_DATA_ROOT="s3://no-such-bucket-here/archive")
    for args in (["status"], ["backfill", "--start", "2021-01-01", "--end", "2021-01-02"]):
        done = cli(env, *args)
        assert done.returncode == 2 and "NoSuchBucket" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
