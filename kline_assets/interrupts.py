"""Ctrl-C for our processes only.

A terminal sends SIGINT to its whole foreground process group, and that includes the helper processes
Dagster starts for a run: its compute-log mirroring runs `tail -F` and a `watch_orphans.py` Python process
per stream, and each of those prints a `KeyboardInterrupt` traceback into the user's terminal. Nothing in
Dagster's public API turns them off. So a `kline-assets` process (and each step process it starts) blocks
SIGINT: a blocked signal stays blocked in every process started afterwards, so the helpers never see it.
One thread of ours takes each SIGINT (`sigwait`) and hands it to the main thread as `RELAY`, whose handler
does what the SIGINT handler of the moment (Python's, Dagster's, the live loop's) would have done.
"""

from __future__ import annotations

import signal
import threading

RELAY = signal.SIGUSR2 if hasattr(signal, "SIGUSR2") else None


def relay_interrupts() -> bool:
    """From the main thread, before other threads start (they inherit its signal mask); False where it
    cannot be done (not the main thread, no POSIX signal masks), leaving SIGINT as it was."""
    if RELAY is None or not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not \
            threading.main_thread():
        return False
    signal.signal(RELAY, _as_sigint)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    main = threading.main_thread().ident

    def relay() -> None:
        while True:
            signal.sigwait({signal.SIGINT})
            signal.pthread_kill(main, RELAY)  # a signal to the main thread ends a system call it waits in

    threading.Thread(target=relay, name="sigint-relay", daemon=True).start()
    return True


def _as_sigint(signum: int, frame: object) -> None:
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    elif handler != signal.SIG_IGN:
        raise KeyboardInterrupt
