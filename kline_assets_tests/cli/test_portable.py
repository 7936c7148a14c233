"""Without what only POSIX has, as on Windows: the commands still import and work.

There is no Windows machine here, so every process of the commands (the CLI, Dagster's step processes,
the processes making archive days) starts with a `sitecustomize` that takes away what Windows lacks and
our code used: `fcntl`, `SIGUSR2` and POSIX signal masks, `os.pread`/`os.pwrite`, `O_DIRECTORY`, and
`prctl` (Linux's, through `ctypes`).
filelock, the lock between processes, keeps the system's own lock, as it has msvcrt's on Windows."""

import datetime as dt
import os

import pytest

from kline_assets_tests.helpers import check_days, cli, days_ago, env_for, materialized

pytestmark = pytest.mark.e2e

WITHOUT_POSIX = '''
import ctypes, os, signal, sys

import filelock  # first: it keeps the platform's own lock, as it has msvcrt's on Windows

sys.modules["fcntl"] = None  # `import fcntl` raises ImportError, as on Windows
for name in ("SIGUSR2", "pthread_sigmask", "pthread_kill", "sigwait"):
    if hasattr(signal, name):
        delattr(signal, name)
for name in ("pread", "pwrite", "O_DIRECTORY"):
    if hasattr(os, name):
        delattr(os, name)


class CDLL(ctypes.CDLL):
    def __getattr__(self, name):
        if name == "prctl":  # Linux's alone
            raise AttributeError(name)
        return super().__getattr__(name)


ctypes.CDLL = CDLL
'''


def test_backfill_verify_and_live_without_posix_only_modules(sim, tmp_path):
    hide = tmp_path / "without_posix"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(WITHOUT_POSIX)
    env = env_for(sim, tmp_path, KLINE_START=days_ago(5),
                  PYTHONPATH=os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")])))
    probe = cli(env, "--help")
    assert probe.returncode == 0, probe.stderr
    # closed days from the archive (their chunks made in a process pool), then live brings the rest up to now
    done = cli(env, "backfill", "--source", "auto", "--start", days_ago(5), "--end", days_ago(2), timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    check_days(sim, tmp_path / "data", dt.date.fromisoformat(days_ago(5)), 3)
    assert materialized(env) == {days_ago(5), days_ago(4), days_ago(3)}
    verify = cli(env, "verify")
    assert verify.returncode == 0 and "all well" in verify.stdout, verify.stdout + verify.stderr
    live = cli(env, "live", "--cycles", "1", timeout=300)
    assert live.returncode == 0 and "Traceback" not in live.stderr, live.stderr
    assert days_ago(0) in materialized(env)
