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
