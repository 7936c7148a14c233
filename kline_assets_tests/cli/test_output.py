"""What a user sees: one line per failure and no traceback (the trace is in loader.log), results on
stdout and progress on stderr, an honest line when nothing was needed, filters and file names as asked."""

import json
import os
import signal
import subprocess
import time

import pytest

from kline_assets_tests.helpers import BIN, cli, cli_here, env_for, sim_requests

pytestmark = pytest.mark.e2e


def loader_log(tmp_path) -> str:
    return (tmp_path / "logs" / "loader.log").read_text()


def test_results_on_stdout_progress_on_stderr_and_nothing_needed_said_so(sim, tmp_path):
    env = env_for(sim, tmp_path)
    done = cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-03")
    assert done.returncode == 0
    assert done.stdout.startswith("done in ") and "2 day(s)" in done.stdout and len(done.stdout.splitlines()) == 1
    assert "2/2 days" in done.stderr and "dagster - " not in done.stderr
    again = cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-03")
    assert "nothing new to fetch, the 2 day(s) already hold every closed minute" in again.stderr
    assert "days/min" not in again.stderr


def test_a_terminal_gets_a_redrawn_bar_and_a_pipe_plain_lines(sim, tmp_path):
    """stderr a terminal (a pseudo-terminal here): the dataset's bar, drawn in place; stdout stays plain."""
    import pty
    import threading

    env = {**env_for(sim, tmp_path), "COLUMNS": "160", "TERM": "xterm"}
    leader, follower = pty.openpty()
    seen = bytearray()

    def drain():
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    done = subprocess.run([str(BIN / "kline-assets"), "backfill", "--start", "2021-01-01", "--end", "2021-01-05"],
                          env=env, stdout=subprocess.PIPE, stderr=follower, text=True, timeout=120)
    os.close(follower)
    reader.join(5)
    os.close(leader)
    shown = seen.decode("utf-8", "replace")
    assert done.returncode == 0 and done.stdout.startswith("done in "), shown
    assert "\x1b[" in shown and "━" in shown and "4/4" in shown and "days, 5,760 rows" in shown, shown


def test_http_451_is_one_line_and_the_trace_is_in_the_log(sim, tmp_path):
    env = env_for(sim, tmp_path)
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-02").returncode == 0  # pair known
    sim.state.config.restricted = True
    done = cli(env, "backfill", "--start", "2021-01-02", "--end", "2021-01-03")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 3
    assert "HTTP 451" in done.stderr.splitlines()[-1] and "loader.log" in done.stderr
    assert "binance/client.py" in loader_log(tmp_path) and "HTTP 451" in loader_log(tmp_path)  # the stack


def test_a_corrupted_chunk_on_combine_is_one_line(sim, tmp_path):
    env = env_for(sim, tmp_path)
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-03").returncode == 0
    chunk = next((tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "chunks").glob("*20210102*"))
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"!")
    done = cli(env, "combine")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert "2021-01-02" in line and "verify --repair" in line
    assert "ChunkUnavailable" in loader_log(tmp_path)


def test_ctrl_c_is_one_line(sim, tmp_path):
    """As a terminal sends it: SIGINT to the whole process group, where Dagster's log-mirroring helpers
    (`tail -F`, `watch_orphans.py`) run beside the command and would each print a traceback."""
    sim.state.config.latency_ms = 200
    env = env_for(sim, tmp_path)
    proc = subprocess.Popen([str(BIN / "kline-assets"), "backfill", "--start", "2021-01-01", "--end", "2021-03-01"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not sim_requests(sim.state) and time.monotonic() < deadline:  # the run is fetching: not before
        time.sleep(0.05)
    time.sleep(1)  # the helpers are up
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.splitlines()[-1].startswith("kline-assets: backfill failed") and "interrupted" in err
    assert out == ""


def test_status_filters_and_plot_names(sim, tmp_path, monkeypatch, capsys):
    env = env_for(sim, tmp_path)

    def here(*args):
        return cli_here(monkeypatch, capsys, *args)

    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-02").returncode == 0
    assert cli(env, "--market", "spot", "backfill", "--start", "2021-01-01", "--end", "2021-01-02").returncode == 0
    everything = json.loads(here(env, "status", "--json").stdout)["datasets"]
    assert {d["dataset"] for d in everything} == {"binance/BTCUSDT", "binanceusdm/BTCUSDT"}
    spot = json.loads(here(env, "--market", "spot", "status", "--json").stdout)["datasets"]
    assert [d["dataset"] for d in spot] == ["binance/BTCUSDT"]
    none = json.loads(here(env, "--market", "spot", "--pair", "ETH/USDT", "status", "--json").stdout)["datasets"]
    assert none == []
    one = here(env, "--market", "spot", "status", "--plot", str(tmp_path / "cov.png"))
    assert one.returncode == 0 and (tmp_path / "cov.png").exists()
    both = here(env, "status", "--plot", str(tmp_path / "all.png"))
    assert "all_binance_BTCUSDT.png" in both.stderr and "all_binanceusdm_BTCUSDT.png" in both.stderr
    assert not (tmp_path / "all.png").exists() and (tmp_path / "all_binance_BTCUSDT.png").exists()


def test_a_missing_state_dir_is_created(sim, tmp_path):
    env = env_for(sim, tmp_path, KLINE_STATE_DIR=str(tmp_path / "no" / "such" / "dir"))
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-02").returncode == 0
    assert any((tmp_path / "no" / "such" / "dir").glob("kline_assets_weight_*"))
