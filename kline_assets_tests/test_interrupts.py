"""Ctrl-C through the relay (`kline_assets.interrupts`): the main thread gets it as the SIGINT handler of
the moment would, and the command's exit code still says "interrupted", whatever the command returned."""

import signal
import subprocess
import sys

import pytest

PROBE = """
import os, signal, time
from kline_assets.interrupts import relay_interrupts

assert relay_interrupts()  # first: threads started later (native ones of the imports below too) block SIGINT
from kline_assets.cli.main import SignalRecord

record = SignalRecord()
try:
    os.kill(os.getpid(), signal.SIGINT)  # blocked here: the relay thread takes it and signals this thread
    time.sleep(5)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted", record.exit_code(1), record.exit_code(0))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGUSR2"), reason="POSIX signals only")
def test_a_ctrl_c_through_the_relay_ends_a_failing_command_with_130():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["interrupted", "130", "0"], done.stderr
