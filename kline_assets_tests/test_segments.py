"""Long command-line backfills as several Dagster runs: the split, the fetch gate, a real segmented run."""

import datetime as dt
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from kline_assets import segments
from kline_assets.cli import main
from kline_assets.collect import DayStream, pass_turn, use_fetch_gate
from kline_assets.exchange import BinanceClient
from kline_assets.names import klines_key
from kline_assets.settings import MARKETS
from kline_assets.store import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.conftest import FUT
from kline_assets_tests.test_cli_e2e import check_days, cli, env_for

D = dt.date(2021, 1, 1)


def sizes(days: int) -> list[int]:
    parts = segments.split(D, D + dt.timedelta(days))
    assert parts[0][0] == D and parts[-1][1] == D + dt.timedelta(days - 1)
    assert all(b[0] == a[1] + dt.timedelta(1) for a, b in itertools.pairwise(parts))  # no hole, no overlap
    return [(last - first).days + 1 for first, last in parts]


def test_split_one_run_when_it_fits_then_full_runs_with_a_halving_tail():
    assert sizes(1) == [1] and sizes(200) == [200]
    assert sizes(201) == [101, 50, 25, 25]
    assert sizes(2500) == [200] * 11 + [150, 75, 38, 37]
    assert all(min(sizes(n)) >= segments.SMALLEST for n in range(201, 900))  # no run of a day or two
    assert max(sizes(5000)) == 200 and sum(sizes(5000)) == 5000


@pytest.fixture
def gated(sim, tmp_path):
    """Streams on one gate; `gated(root, turn)` makes the stream of that turn."""
    client = BinanceClient(MARKETS["futures"], sim.url)

    def make(root: str, turn: int) -> DayStream:
        use_fetch_gate(tmp_path / "fetch.lock", turn)
        store = DatasetStore(tmp_path / root, FUT, parse_zone("UTC"), D)
        return DayStream(store, client, [D, D + dt.timedelta(1)], page=499, workers=1)

    yield make
    use_fetch_gate(None)


def test_gated_streams_fetch_one_at_a_time_in_turn_order(gated):
    first, second = gated("a", 0), gated("b", 1)
    got_second = threading.Event()
    worker = threading.Thread(target=lambda: (next(iter(second)), got_second.set()))
    worker.start()  # turn 1 asks first, the gate is free, and still it waits for turn 0
    assert not got_second.wait(1.0)
    days = iter(first)
    next(days)
    next(days)  # the last day is out; the gate goes only when the stream is asked for more
    assert not got_second.wait(0.5)
    assert next(days, None) is None
    assert got_second.wait(10)
    worker.join()


def test_a_run_that_never_fetched_passes_its_turn(gated, tmp_path):
    gated("a", 0)  # made, never iterated: its run failed before fetching
    pass_turn(tmp_path / "fetch.lock", 0)
    second, got = gated("b", 1), []
    worker = threading.Thread(target=lambda: got.append(next(iter(second)).day), daemon=True)
    worker.start()
    worker.join(10)
    assert got == [D]


def test_a_long_backfill_runs_as_consecutive_runs_two_at_a_time(sim, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(segments, "SEGMENT_DAYS", 4)
    monkeypatch.setattr(segments, "SMALLEST", 2)
    for name, value in env_for(sim, tmp_path).items():
        if name.startswith(("KLINE_", "DAGSTER_")):
            monkeypatch.setenv(name, value)
    assert main(["backfill", "--start", "2021-01-01", "--end", "2021-01-11"]) == 0
    err = capsys.readouterr().err
    assert "3 Dagster runs" in err and "(3 runs)" in err
    check_days(sim, tmp_path / "data", D, 10)

    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        runs = instance.get_runs()
        assert sorted(r.tags[segments.SEGMENT_TAG] for r in runs) == ["1/3", "2/3", "3/3"]  # 4, 3, 3 days
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        key = klines_key(FUT)
        days = sorted(e.partition_key for e in instance.fetch_materializations(key, limit=100).records)
        assert days == [(D + dt.timedelta(n)).isoformat() for n in range(10)]  # each day exactly once
        checks = instance.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION))
        evaluations = [e.event_log_entry.dagster_event.event_specific_data for e in checks]
        assert len(evaluations) == 30 and all(e.passed for e in evaluations)


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.e2e
def test_killing_the_command_ends_its_workers_and_a_rerun_completes(sim, tmp_path, monkeypatch):
    sim.state.config.latency_ms = 80
    env = env_for(sim, tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # our dagster.yaml's storage reads it
    small = ("import sys; from kline_assets import segments; segments.SEGMENT_DAYS = 4; segments.SMALLEST = 2; "
             "from kline_assets.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", small, "backfill", "--start", "2021-01-01", "--end", "2021-01-21"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json"
    deadline = time.monotonic() + 60
    while not manifest.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = children_of(proc.pid)
    proc.kill()
    proc.wait()
    assert workers, "the command had no worker processes"
    assert len(json.loads(manifest.read_text())["chunks"]) < 20, "the kill came after the work was done"
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "workers outlived the killed command"
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        assert all(r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
                   for r in instance.get_runs())  # none left looking as if it still ran
    sim.state.config.latency_ms = 0
    done = cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-21")
    assert done.returncode == 0, done.stderr
    check_days(sim, tmp_path / "data", D, 20)
