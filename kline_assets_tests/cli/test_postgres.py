"""The CLI on a Dagster instance whose storage is Postgres, configured as Dagster documents it
(`storage: postgres: postgres_db: ...` in the user's dagster.yaml, which kline-assets leaves alone):
a backfill killed with kill -9, a rerun, and Dagster's record equal to the manifest."""

import datetime as dt
import json
import signal
import subprocess
import time

import yaml

from kline_assets_tests.helpers import BIN, check_days, cli, env_for, materialized


def test_kill_minus_nine_then_rerun_on_a_postgres_instance(sim, tmp_path, pg_storage):
    sim.state.config.latency_ms = 150
    env = env_for(sim, tmp_path)
    instance_yaml = tmp_path / "dagster_home" / "dagster.yaml"
    instance_yaml.write_text(yaml.safe_dump({"storage": pg_storage}))
    manifest = tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json"
    args = [str(BIN / "kline-assets"), "backfill", "--start", "2021-01-01", "--end", "2021-02-10"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline and not manifest.exists():
        time.sleep(0.05)
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(json.loads(manifest.read_text())["chunks"]) < 40, "the kill did not land mid-run"
    sim.state.config.latency_ms = 0
    done = cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-02-10")
    assert done.returncode == 0, done.stderr
    check_days(sim, tmp_path / "data", dt.date(2021, 1, 1), 40)
    assert materialized(env) == {c["partition"] for c in json.loads(manifest.read_text())["chunks"]}
    assert yaml.safe_load(instance_yaml.read_text()) == {"storage": pg_storage}  # the user's file, untouched


def test_two_machines_behind_one_ip_share_the_weight_budget_through_postgres(sim, tmp_path, pg_storage):
    """Two workers that share nothing but the Postgres instance and the exchange: each in a PID namespace of
    its own (the same PIDs), with its own temp, state, Dagster home and data folders, as two machines behind
    one NAT would be. Together they need about twice a minute's budget; neither may be refused."""
    import shutil

    if shutil.which("unshare") is None or subprocess.run(["unshare", "--pid", "--fork", "true"]).returncode:
        import pytest

        pytest.skip("unshare --pid is not available here")
    sim.state.config.futures_budget = 100
    procs = []
    for n, pair in enumerate(["BTC/USDT", "ETH/USDT"]):
        machine = tmp_path / f"machine{n}"
        machine.mkdir()
        env = env_for(sim, machine, TMPDIR=str(machine / "tmp"), KLINE_STATE_DIR=str(machine / "state"))
        (machine / "tmp").mkdir()
        (machine / "dagster_home" / "dagster.yaml").write_text(yaml.safe_dump({"storage": pg_storage}))
        procs.append(subprocess.Popen(
            ["unshare", "--pid", "--fork", str(BIN / "kline-assets"), "--pair", pair, "backfill", "--start",
             "2021-01-01", "--end", "2021-01-11"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
    with sim.state.lock:
        futures = [r for r in sim.state.log if r["market"] == "futures"]
        per_minute = {m: w for (market, m), w in sim.state.weights.items() if market == "futures"}
    assert [r for r in futures if r["status"] in (429, 418)] == []
    assert len(per_minute) >= 2 and max(per_minute.values()) <= 100  # it took more than one minute's budget
    for n, symbol in enumerate(["BTCUSDT", "ETHUSDT"]):
        manifest = tmp_path / f"machine{n}" / "data" / "binanceusdm" / symbol / "1m" / "manifest.json"
        assert len(json.loads(manifest.read_text())["chunks"]) == 10
