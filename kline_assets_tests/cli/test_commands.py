"""End-to-end runs as a user types them: the CLI, `dagster asset materialize`, kill -9 and rerun."""

import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from kline_assets_tests.helpers import BIN, FUT, check_days, cli, cli_here, env_for, materialized

pytestmark = pytest.mark.e2e


def test_backfill_then_status(sim, tmp_path, monkeypatch, capsys):
    env = env_for(sim, tmp_path)
    done = cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-04")
    assert done.returncode == 0, done.stderr
    check_days(sim, tmp_path / "data", dt.date(2021, 1, 1), 3)
    import dagster as dg

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:  # the UI lists it under our name
        assert instance.get_run_by_id(done.stdout.split("(run ")[1].rstrip(")\n")).job_name == "backfill_klines"
    status = json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)
    ds = status["datasets"][0]
    assert (ds["dataset"], ds["chunks"], ds["rows"]) == ("binanceusdm/BTCUSDT", 3, 3 * 1440)
    assert (ds["first_index"], ds["last_index"]) == (1, 3)  # what combine --from-index/--to-index take
    text = cli_here(monkeypatch, capsys, env, "status").stdout
    assert "chunks 3: 2021-01-01 .. 2021-01-03 (indexes 1 .. 3)" in text
    assert (tmp_path / "logs" / "loader.log").read_text().count("3/3 days") == 1


def test_kill_minus_nine_then_rerun_completes_exactly(sim, tmp_path):
    sim.state.config.latency_ms = 200  # 45 days must outlast a 2 s manifest commit with 8 fetch threads
    env = env_for(sim, tmp_path)
    root = tmp_path / "data"
    manifest = root / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json"
    args = [str(BIN / "kline-assets"), "backfill", "--start", "2021-01-01", "--end", "2021-02-15"]
    rng = random.Random(3)
    seen = []
    for _ in range(6):  # three kills, more if none landed mid-run (a run that had finished proves nothing)
        if len(seen) >= 3 and any(0 < n < 45 for n in seen):
            break
        before = manifest.stat().st_mtime_ns if manifest.exists() else 0
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # kill once this run has committed
            if manifest.exists() and manifest.stat().st_mtime_ns != before:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if manifest.exists():
            seen.append(len(json.loads(manifest.read_text())["chunks"]))  # never torn
        if seen and seen[-1] >= 45:  # everything was in: start again from nothing for a meaningful kill
            shutil.rmtree(root)
    assert any(0 < n < 45 for n in seen), f"no kill landed mid-run: {seen}"
    sim.state.config.latency_ms = 0
    done = cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-02-15")
    assert done.returncode == 0, done.stderr
    check_days(sim, root, dt.date(2021, 1, 1), 45)
    assert materialized(env) == {c["partition"] for c in json.loads(manifest.read_text())["chunks"]}


def test_ctrl_c_leaves_exactly_the_committed_days_materialized(sim, tmp_path):
    sim.state.config.latency_ms = 200
    env = env_for(sim, tmp_path)
    manifest = tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json"
    proc = subprocess.Popen([str(BIN / "kline-assets"), "backfill", "--start", "2021-01-01", "--end", "2021-03-01"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not manifest.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err
    stored = {c["partition"] for c in json.loads(manifest.read_text())["chunks"]}
    assert 0 < len(stored) < 59
    assert materialized(env) == stored


def test_dagster_asset_materialize_partition_range(sim, tmp_path):
    env = env_for(sim, tmp_path)
    done = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "kline_assets.definitions",
         "--select", "binanceusdm/BTCUSDT/klines_1m", "--partition-range", "2021-01-01...2021-01-03"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    check_days(sim, tmp_path / "data", dt.date(2021, 1, 1), 3)


@pytest.mark.parametrize(("args", "message"), [
    (["--market", "options", "status"], "unknown market"),
    (["--align-tz", "Mars/Base", "backfill"], "unknown time zone"),
    (["backfill", "--start", "2021-02-01", "--end", "2021-01-01"], "impossible window"),
    (["backfill", "--start", "someday"], "bad time"),
    (["backfill", "--chunk-size", "-5"], "chunk-size"),
    (["backfill", "--bogus"], "unrecognized arguments"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(sim, tmp_path, args, message):
    env = env_for(sim, tmp_path)
    done = cli(env, *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists() and not (tmp_path / "logs").exists()


def test_verify_finds_each_corruption_and_repair_restores_exact_data(sim, tmp_path, monkeypatch, capsys):
    env = env_for(sim, tmp_path)
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-08").returncode == 0
    chunks = tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "chunks"
    names = sorted(p.name for p in chunks.iterdir())
    flipped = bytearray((chunks / names[1]).read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    (chunks / names[1]).write_bytes(bytes(flipped))
    (chunks / names[2]).write_bytes((chunks / names[2]).read_bytes()[:1000])
    (chunks / names[3]).unlink()
    stray = chunks / "chunk_000900_20230618.parquet"
    stray.write_bytes(b"stray")
    young = chunks / "chunk_000901_20230619_0123abcd.parquet"  # perhaps another writer's, about to commit
    young.write_bytes(b"young")
    old = time.time() - 2 * 3600  # older than the grace period: in no manifest, and no writer's any more
    os.utime(stray, (old, old))
    found = cli_here(monkeypatch, capsys, env, "verify")
    assert found.returncode == 1
    for kind in ("2 corrupt", "1 missing_file", "1 stray_file"):
        assert kind in found.stdout, found.stdout
    assert "to fetch the bad days again: kline-assets --market futures --pair BTC/USDT verify --repair" \
        in found.stdout
    repaired = cli(env, "verify", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "after repair" in repaired.stdout and "all well" in repaired.stdout
    assert repaired.stdout.count("7 day(s) checked") == 2, repaired.stdout  # before and after: the same days
    assert cli_here(monkeypatch, capsys, env, "verify").returncode == 0
    assert not stray.exists() and young.exists()
    check_days(sim, tmp_path / "data", dt.date(2021, 1, 1), 7)
    status = json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)["datasets"][0]
    assert status["last_verify"]["ok"] is True


def test_combine_cli_and_combine_after_backfill(sim, tmp_path):
    import pyarrow.parquet as pq

    env = env_for(sim, tmp_path, BUILD_COMBINED_ON_BACKFILL="1")
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-04").returncode == 0
    combined = tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "combined"
    assert pq.read_table(combined / "BTCUSDT_1m_all.parquet").num_rows == 3 * 1440
    env.pop("BUILD_COMBINED_ON_BACKFILL")
    done = cli(env, "combine", "--from-index", "2", "--to-index", "3", "--tz", "+02:00")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "only names the file" in done.stderr and done.stdout.startswith("combined binanceusdm/BTCUSDT into")
    again = cli(env, "combine", "--from-index", "2", "--to-index", "3", "--tz", "+02:00")
    assert again.returncode == 0 and "already holds exactly the chosen chunks" in again.stdout, again.stdout
    assert pq.read_table(combined / "BTCUSDT_1m_000002-000003_UTC+0200.parquet").num_rows == 2 * 1440
    assert pq.read_table(combined / "BTCUSDT_1m_all.parquet").num_rows == 3 * 1440  # _all keeps every chunk
    empty = cli(env, "combine", "--from-index", "20", "--to-index", "30")
    assert empty.returncode == 2 and "no chunk in the index range 20..30" in empty.stderr
    assert sorted(p.name for p in combined.iterdir()) == ["BTCUSDT_1m_000002-000003_UTC+0200.parquet",
                                                          "BTCUSDT_1m_all.parquet"]


def test_cross_check_finds_a_replaced_archive_file_and_repair_takes_rest(sim, tmp_path, monkeypatch, capsys):
    env = env_for(sim, tmp_path, KLINE_SOURCE="auto")
    done = cli(env, "backfill", "--start", "2021-06-01", "--end", "2021-06-04")
    assert done.returncode == 0, done.stderr
    status = json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)["datasets"][0]
    assert status["sources"] == {"archive": 3, "rest": 0}
    assert "3 day(s) from the archive, 0 from REST" in cli_here(monkeypatch, capsys, env, "status").stdout
    assert cli(env, "verify", "--cross-check", "3").returncode == 0
    # Binance replaced a file after we stored it: plant a difference in one archived day, as a new file
    # would bring it (a valid chunk, matching the manifest, whose rows disagree with REST)
    import pyarrow.compute as pc

    from kline_assets.store.dataset import DatasetStore
    from kline_assets.timezones import parse_zone

    store = DatasetStore.open(tmp_path / "data", FUT, parse_zone("UTC"), dt.date(2021, 1, 1))
    day = dt.date(2021, 6, 2)
    table = store.read_table(store.manifest().entry_for(day))
    table = table.set_column(4, "close", pc.add(table["close"], 1.0))
    entry = store.manifest().entry_for(day)
    store.commit([store.stage(day, table, entry.exchange_gaps, entry.covered_until_ms, "archive", entry.source_sha256)])
    found = cli(env, "verify", "--cross-check", "3")
    assert found.returncode == 1
    assert "2021-06-02 differs_from_rest: row 0 differs" in found.stdout
    repaired = cli(env, "verify", "--cross-check", "3", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    after = json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)["datasets"][0]
    assert after["sources"] == {"archive": 2, "rest": 1}
    check_days(sim, tmp_path / "data", dt.date(2021, 6, 1), 3)


def test_two_first_backfills_with_different_starts_at_once(sim, tmp_path, monkeypatch, capsys):
    """Two processes start a new dataset at once, from 2021-01-01 and from 2020-12-25: whichever commits
    first fixes the start; the other's days are renumbered or refused in one line, and every stored day
    is where its index says, exact, with verify all well."""
    sim.state.config.latency_ms = 20
    env = env_for(sim, tmp_path, KLINE_START="2021-01-01")
    procs = [subprocess.Popen([str(BIN / "kline-assets"), "backfill", *args, "--end", "2021-01-05"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in ([], ["--start", "2020-12-25"])]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    assert results[0][0] == 0, results[0][1]
    code, err = results[1]
    manifest = json.loads((tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json").read_text())
    start = dt.date.fromisoformat(manifest["start"])
    if start == dt.date(2021, 1, 1):  # the late start won: the early days are refused, said in one line
        assert code == 1 and "before the dataset's first day 2021-01-01" in err.splitlines()[-1], err
    else:
        assert start == dt.date(2020, 12, 25) and code == 0, err
    partitions = [c["partition"] for c in manifest["chunks"]]
    assert len(partitions) == len(set(partitions))
    for chunk in manifest["chunks"]:
        day = dt.date.fromisoformat(chunk["partition"])
        assert chunk["index"] == (day - start).days + 1
    check_days(sim, tmp_path / "data", dt.date(2021, 1, 1), 4)
    assert cli_here(monkeypatch, capsys, env, "verify").returncode == 0
