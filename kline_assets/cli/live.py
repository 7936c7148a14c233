"""The foreground loop of `kline-assets live`: a run now, then shortly after each minute boundary."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from kline_assets.defs.live import AFTER_BOUNDARY_S

log = logging.getLogger("kline_assets")



def seconds_to_next_boundary(server_now_ms: int) -> float:
    return (60_000 - server_now_ms % 60_000) / 1000 + AFTER_BOUNDARY_S


class StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current run; a second signal stops at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        log.info("stop requested (signal %d): finishing the current cycle", signum)

    def wait(self, seconds: float) -> bool:
        """Sleep; True when a stop was requested."""
        return self.event.wait(max(0.0, seconds))


def run_loop(cycle: Callable[[], bool], server_now_ms: Callable[[], int], stop: StopFlag, cycles: int = 0) -> int:
    """Run `cycle` now and then shortly after each minute boundary; returns the number of failed cycles."""
    done = failed = 0
    while not stop.event.is_set():
        if not cycle():
            failed += 1
        done += 1
        if cycles and done >= cycles:
            break
        if stop.wait(seconds_to_next_boundary(server_now_ms())):
            break
    return failed
