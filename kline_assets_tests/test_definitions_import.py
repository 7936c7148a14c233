"""Loading the code location module builds nothing: no file opened for writing, no socket, no log file."""

import subprocess
import sys

PROBE = """
import sys
events = []
def hook(event, args):
    if event == "socket.connect" or (event == "open" and isinstance(args[1], str) and set(args[1]) & set("wax+")):
        events.append((event, str(args[0])))
sys.addaudithook(hook)
import kline_assets.definitions
import kline_assets
print(repr(events))
"""


def test_importing_the_code_location_opens_no_socket_and_no_file(tmp_path):
    env = {"KLINE_DATA_ROOT": str(tmp_path / "data"), "KLINE_LOG_DIR": str(tmp_path / "logs"),
           "KLINE_SPOT_URL": "http://127.0.0.1:9", "KLINE_FUTURES_URL": "http://127.0.0.1:9",
           "KLINE_COINM_URL": "http://127.0.0.1:9",
           "KLINE_ARCHIVE_URL": "http://127.0.0.1:9", "PATH": "/usr/bin",
           "PYTHONDONTWRITEBYTECODE": "1"}  # Python's own bytecode cache is not ours to count
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert not (tmp_path / "logs").exists() and not (tmp_path / "data").exists()
