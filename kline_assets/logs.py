"""`loader.log`: the loader's own records, one line per event with UTC time, rotating; and the progress
of runs on the command line's stderr: plain lines, or redrawn bars on a terminal.

Rotation: 10 MiB per file, 5 old files kept (loader.log.1 .. loader.log.5).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path

from kline_assets.store.paths import log_file

# progress lines of runs (days, rows, requests, days/min): into loader.log like every record of ours, and
# on stderr where the command line asks for them (`show_progress`)
PROGRESS = "kline_assets.progress"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(process)d %(message)s"


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime


def setup_logging(log_dir: str | Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> Path:
    """Idempotent: a second call for the same file adds no second handler."""
    path = log_file(log_dir).resolve()
    logger = logging.getLogger("kline_assets")
    logger.setLevel(logging.INFO)
    for handler in logger.handlers:
        if isinstance(handler, RotatingFileHandler) and Path(handler.baseFilename) == path:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(_UTCFormatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
    logger.addHandler(handler)
    return path


@dataclass(frozen=True)
class Tally:
    """Where a run's days stand, as data: its progress line in every log (`str`), and on a terminal the
    numbers of a redrawn bar (`ProgressBars`)."""

    name: str  # a dataset, or the market ("all markets") of a run of several datasets
    days: int
    total_days: int
    rows: int
    per_min: float  # days a minute so far
    datasets: tuple[int, int] | None = None  # done, of; a run of several datasets
    note: str = ""  # said after the numbers (the days written, at the end)

    def __str__(self) -> str:
        several = f"{self.datasets[0]}/{self.datasets[1]} datasets, " if self.datasets else ""
        return (f"{self.name}: {several}{self.days}/{self.total_days} days, {self.rows:,} rows, "
                f"{self.per_min:.0f} days/min{self.note}")


def show_progress(stream, bars: bool = False) -> None:
    """Progress lines also go to `stream` (the command line's stderr): as redrawn bars with `bars` (a
    terminal, in the process that runs the steps), else as plain lines (a pipe, CI, a step process of
    several sharing the terminal)."""
    logger = logging.getLogger(PROGRESS)
    if not any(getattr(h, "stream", None) is stream for h in logger.handlers):
        handler = ProgressBars(stream) if bars else logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


class ProgressBars(logging.Handler):
    """One bar per dataset (or per market's datasets) on a terminal, redrawn in place by `rich` (a Dagster
    dependency): days done of the run's, rows, rate, time left, datasets done. Records without a `Tally`
    print above the bars as lines."""

    def __init__(self, stream) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.stream = stream
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("days, {task.fields[detail]}"), TimeRemainingColumn(),
                             console=Console(file=stream), auto_refresh=False, redirect_stdout=False,
                             redirect_stderr=False)
        self.tasks: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        tally = getattr(record, "tally", None)
        if not isinstance(tally, Tally):
            self.bars.console.print(self.format(record), markup=False, highlight=False)
            return
        if tally.name not in self.tasks:
            self.tasks[tally.name] = self.bars.add_task(tally.name, total=tally.total_days, detail="")
        self.bars.start()  # once: later calls do nothing
        several = f", {tally.datasets[0]}/{tally.datasets[1]} datasets" if tally.datasets else ""
        self.bars.update(self.tasks[tally.name], completed=tally.days, total=tally.total_days,
                         detail=f"{tally.rows:,} rows, {tally.per_min:.0f} days/min{several}{tally.note}")
        self.bars.refresh()

    def end(self) -> None:
        """The bars stay where they stand; what is printed next goes below them, and a later run's tallies
        get bars of their own."""
        self.bars.stop()
        for task in self.tasks.values():
            self.bars.remove_task(task)
        self.tasks.clear()

    def close(self) -> None:
        self.end()
        super().close()


def end_progress() -> None:
    """The run is over: its bars end (`ProgressBars.end`)."""
    for handler in logging.getLogger(PROGRESS).handlers:
        if isinstance(handler, ProgressBars):
            handler.end()
