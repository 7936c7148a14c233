"""`--all`: every configured dataset (selectors included) in one command, sharing each market's budget."""

import datetime as dt
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kline_assets.settings import DatasetSpec
from kline_assets.sim.server import RunningSimulator, SimConfig
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import BIN, cli, cli_here, days_ago, env_for, expected_rows, stored_rows

UTC = parse_zone("UTC")


@pytest.fixture
def market_sim():
    with RunningSimulator(SimConfig(many_symbols=3, unserved=[["futures", "C001USDT"]])) as running:
        yield running


def test_each_verb_over_every_dataset(market_sim, tmp_path, monkeypatch, capsys):
    env = env_for(market_sim, tmp_path, KLINE_PAIRS="futures:BTC/USDT,spot:*/USDT")
    bad = cli(env, "--pair", "ETH/USDT", "backfill", "--all")
    assert bad.returncode == 2 and "--all and --pair" in bad.stderr and not (tmp_path / "data").exists()
    done = cli(env, "backfill", "--all", "--start", days_ago(3), "--end", days_ago(1))
    assert done.returncode == 0, done.stderr
    assert "8 dataset(s) (1 futures, 7 spot), 2 day(s) each" in done.stdout
    # a process per market (separate budgets): spot's seven datasets report one progress line
    assert "spot: 7/7 datasets, 14/14 days" in done.stderr and "binanceusdm/BTCUSDT: 2/2 days" in done.stderr
    root = tmp_path / "data"
    for spec in (DatasetSpec("spot", "C002/USDT"), DatasetSpec("futures", "BTC/USDT")):
        store = DatasetStore.open(root, spec, UTC, dt.date(2021, 1, 1))
        for n in (3, 2):
            day = dt.date.fromisoformat(days_ago(n))
            entry = store.manifest().entry_for(day)
            assert stored_rows(store, entry) == expected_rows(market_sim.state, spec, "UTC", day)
    status = json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)["datasets"]
    assert len(status) == 8 and all(s["trading"] for s in status if s["market"] == "spot")
    live = cli(env, "--market", "spot", "live", "--all", "--cycles", "1")
    assert live.returncode == 0, live.stderr
    assert "7/7 datasets hold the minute" in live.stderr
    assert {r["symbol"] for r in market_sim.state.log if r["endpoint"] == "klines" and r["market"] == "futures"} \
        == {"BTCUSDT"}  # only the backfill asked futures: --market spot narrowed live
    verify = cli_here(monkeypatch, capsys, env, "verify", "--all")
    assert verify.returncode == 0 and "verified 8 dataset(s): all ok" in verify.stdout
    store = DatasetStore.open(root, DatasetSpec("spot", "ETH/USDT"), UTC, dt.date(2021, 1, 1))
    entry = store.manifest().entry_for(dt.date.fromisoformat(days_ago(3)))
    store.backend.delete(store.key(entry))
    broken = cli(env, "verify", "--all", "--repair")
    assert broken.returncode == 0, broken.stdout + broken.stderr
    assert "verified 8 dataset(s): all ok" in broken.stdout and "after repair" in broken.stdout


def test_a_failing_dataset_does_not_stop_the_others(market_sim, tmp_path):
    env = env_for(market_sim, tmp_path, KLINE_PAIRS="futures:*/USDT")
    done = cli(env, "backfill", "--all", "--start", days_ago(2), "--end", days_ago(1))
    assert done.returncode == 1
    assert "1 of 7 dataset(s) failed" in done.stderr and "binanceusdm/C001USDT:" in done.stderr
    root = tmp_path / "data"
    for symbol in ("BTC", "ETH", "BNB", "SOL", "C000", "C002"):
        store = DatasetStore.open(root, DatasetSpec("futures", f"{symbol}/USDT"), UTC, dt.date(2021, 1, 1))
        assert store.manifest().entry_for(dt.date.fromisoformat(days_ago(2))).complete
    assert not (root / "binanceusdm" / "C001USDT" / "1m" / "manifest.json").exists()


def running(pid: str) -> bool:
    """Alive and not a zombie (an orphan's exit may wait for a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def start_all(env, window, out=subprocess.PIPE):
    # a group of its own, as a terminal's foreground job: Ctrl-C goes to every process of the group
    proc = subprocess.Popen([str(BIN / "kline-assets"), "backfill", "--all", *window], env=env,
                            stdout=out, stderr=out, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    steps: list[str] = []
    while len(steps) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        steps = [c for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                 if "spawn_main" in cmdline(c)]
    assert len(steps) == 2, "a step process per market (Dagster's multiprocess executor)"
    time.sleep(3)  # both markets are writing
    return proc, steps


def descendants(pid: str | int) -> list[str]:
    """Every process under `pid`: the step processes, and the processes that make their archive days."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def test_kill_9_of_backfill_all_ends_its_market_process_and_a_rerun_completes(tmp_path, monkeypatch, capsys):
    """`backfill --all` runs a step process per market: they must not outlive a killed command."""
    with RunningSimulator(SimConfig(many_symbols=2, latency_ms=50)) as market:
        env = env_for(market, tmp_path, KLINE_PAIRS="futures:*/USDT,spot:*/USDT")
        window = ("--start", "2021-01-01", "--end", "2021-01-26")
        # output to a file: a pipe nobody reads any more would fill up and hold the step processes in a write
        with open(tmp_path / "killed.log", "w+") as out:
            proc, steps = start_all(env, window, out)
            children = descendants(proc.pid)
            assert len(children) > len(steps), "the steps make their archive days in processes of their own"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + 30
        while any(map(running, children)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(map(running, children)), "a step process or one of its own outlived the command"
        done = cli(env, "backfill", "--all", *window, timeout=300)
        assert done.returncode == 0, done.stderr
        verify = cli_here(monkeypatch, capsys, env, "verify", "--all")
        assert verify.returncode == 0 and "verified 12 dataset(s): all ok" in verify.stdout


def test_a_failing_market_fails_the_command(tmp_path):
    with RunningSimulator(SimConfig(unserved=[["spot", "BTCUSDT"]])) as market:
        env = env_for(market, tmp_path, KLINE_PAIRS="futures:BTC/USDT,spot:BTC/USDT")
        done = cli(env, "backfill", "--all", "--start", days_ago(2), "--end", days_ago(1))
    assert done.returncode == 1, done.stderr
    assert "spot market does not list BTCUSDT" in done.stderr.splitlines()[-1], done.stderr
    assert "a rerun fails the same way until the cause above is mended" in done.stderr  # not "a rerun completes"


def test_a_market_process_that_dies_or_a_ctrl_c_never_ends_in_success(tmp_path):
    """The spot step's process killed: the command fails naming it. Ctrl-C (SIGINT to the process group, as a
    terminal sends it): both steps end within seconds, and the user reads one line, no traceback (Dagster's
    log-mirroring helpers in the group print one each unless they never see the signal)."""
    # a small spot budget: the spot step is still busy when the signals come
    with RunningSimulator(SimConfig(latency_ms=50, spot_budget=200)) as market:
        env = env_for(market, tmp_path, KLINE_PAIRS="futures:BTC/USDT,spot:BTC/USDT")
        window = ("--start", "2021-01-01", "--end", "2021-03-01")
        proc, children = start_all(env, window)
        os.kill(int(children[-1]), signal.SIGKILL)  # Dagster starts the futures step first
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 1 and "the klines_1m_spot step process ended early" in err, err
        assert "Traceback" not in err and "a rerun completes the rest" in err
        # output to a file, not a pipe: the step processes hold the pipe too, and waiting for the pipe to
        # close would wait for it; the command must have ended it by the time it exits itself
        with open(tmp_path / "ctrl-c.log", "w+") as out:
            proc, steps = start_all(env, window, out)
            children = descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGINT)
            sent = time.monotonic()
            proc.wait(timeout=60)
            left = [c for c in steps if running(c)]
            deadline = time.monotonic() + 5  # a step's archive-day processes end with it, or just after
            while any(map(running, children)) and time.monotonic() < deadline:
                time.sleep(0.2)
            left += [c for c in children if running(c)]
            out.seek(0)
            err = out.read()
        assert proc.returncode == 130 and time.monotonic() - sent < 10, err
        assert not left, "Ctrl-C left a step process, or one of its own, running"
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        assert err.strip().splitlines()[-1].startswith("kline-assets: backfill failed after"), err


def test_a_kline_pairs_typo_is_said_on_stderr_and_refused_with_strict(sim, tmp_path):
    env = env_for(sim, tmp_path, KLINE_PAIRS="futures:ETH/USTD")
    window = ("--start", days_ago(3), "--end", days_ago(2))
    strict = cli(env, "backfill", "--all", "--strict", *window)
    assert strict.returncode == 2 and not list((tmp_path / "data").glob("binance*"))  # only the listing cache
    assert strict.stderr.strip() == ("kline-assets: error: KLINE_PAIRS: the futures market does not list ETH/USTD "
                                     "(--strict)")
    done = cli(env, "backfill", "--all", *window)
    assert done.returncode == 0, done.stderr
    assert "KLINE_PAIRS: warning: the futures market does not list ETH/USTD; using BTC/USDT" in done.stderr
    # without --all the command works on --market/--pair (BTC/USDT by default) and says so
    single = cli(env, "backfill", *window)
    assert single.returncode == 0 and "KLINE_PAIRS is for --all" in single.stderr
