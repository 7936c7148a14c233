"""Each deliberate break listed in issue #12 (section 3), made one at a time: the named tests must fail.

Run from the repository root with the venv: `.venv/bin/python scripts/check_breaks.py [name ...]`. Every
break is undone after its tests ran (also when they are interrupted); exit 1 names any break no test caught.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

T = "kline_assets_tests/"
MUTANTS = [  # (what breaks, file, text, replacement, tests that must fail)
    ("corrupt manifest read as none", "kline_assets/archive/manifest.py",
     'raise BadInput(f"{where} is not a kline-assets manifest ({exc})") from None', "return None",
     [T + "archive/test_store.py"]),
    ("verify misses missing days", "kline_assets/archive/verify.py",
     'report.problems.append(Problem("missing_day",', "(print(", [T + "archive/test_verify.py"]),
    ("verify misses incomplete days", "kline_assets/archive/verify.py",
     'report.problems.append(Problem("incomplete",', "(print(", [T + "archive/test_verify.py"]),
    ("corrupt complete chunk skipped", "kline_assets/binance/days.py",
     "intact = entry is not None and self.store.entry_intact(entry)", "intact = entry is not None",
     [T + "defs/test_assets.py::test_a_corrupt_complete_chunk_is_fetched_again_on_a_rerun"]),
    ("gaps dropped on extension", "kline_assets/binance/days.py",
     "gaps = [list(g) for g in entry.exchange_gaps]", "gaps = []", [T + "binance/test_days.py"]),
    ("no guard on extension", "kline_assets/binance/days.py",
     'table = table.filter(pc.greater(table["open_time"], old["open_time"][-1]))', "pass",
     [T + "binance/test_days.py"]),
    ("sensor ignores CLI runs", "kline_assets/defs/sensors.py",
     'for name in tags.get(TAG_DATASET, "").split(",") if name in by_name', "for name in []",
     [T + "defs/test_sensors.py::test_sensor_skips_a_dataset_that_a_command_line_run_is_writing"]),
    ("long Retry-After waited out", "kline_assets/binance/client.py",
     "if wait > MAX_RETRY_AFTER_S:", "if False:",
     [T + "binance/test_client.py::test_a_retry_after_beyond_the_cap_fails_at_once_and_blocks_this_origin"]),
    ("today from the exchange clock alone", "kline_assets/defs/live.py",
     "today = min(zone.local_date(now_ms), zone.local_date(int(time.time() * 1000)))",
     "today = zone.local_date(now_ms)",
     [T + "defs/test_sensors.py::test_today_is_never_ahead_of_this_machines_date"]),
    ("no closed horizon", "kline_assets/binance/paging.py",
     "stop = min(end_ms, closed_horizon(now_ms))", "stop = end_ms", [T + "binance/test_paging.py"]),
    ("no close_time filter", "kline_assets/binance/paging.py",
     "unclosed = [r[0] for r in raw if r[6] >= now_ms]", "unclosed = []", [T + "binance/test_paging.py"]),
    ("no sha256 check", "kline_assets/archive/checks.py", "if sha != entry.sha256:", "if False:",
     [T + "defs/test_assets.py::test_verify_job_fails_on_one_flipped_byte"]),
    ("failure commits nothing staged", "kline_assets/defs/io_manager.py",
     "except BaseException:  # a day failed", "except ZeroDivisionError:  # a day failed",
     [T + "defs/test_assets.py::test_a_range_failing_on_day_k_keeps_and_records_exactly_the_days_before"]),
    ("no commit on time", "kline_assets/defs/io_manager.py",
     "or time.monotonic() - self.opened >= COMMIT_EVERY_S)", ")",
     [T + "defs/test_assets.py::test_days_are_recorded_while_the_run_goes_on"]),
]


def main(wanted: list[str]) -> int:
    missed = []
    for name, path, old, new, tests in MUTANTS:
        if wanted and not any(w in name for w in wanted):
            continue
        if not caught(path, old, new, tests, name):
            missed.append(name)
    return 1 if missed else 0


def caught(path: str, old: str, new: str, tests: list[str], name: str) -> bool:
    p = Path(path)
    src = p.read_text()
    assert src.count(old) == 1, (name, old)
    p.write_text(src.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                           capture_output=True, text=True)
    finally:
        p.write_text(src)
    last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"{'caught' if r.returncode else 'MISSED'} {name}: {last}", flush=True)
    return r.returncode != 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
