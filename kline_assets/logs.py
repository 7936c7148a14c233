"""`loader.log`: the loader's own records, one line per event with UTC time, rotating.

Rotation: 10 MiB per file, 5 old files kept (loader.log.1 .. loader.log.5).
"""

from __future__ import annotations

import logging
import time
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


def show_progress(stream) -> None:
    """Progress lines also go to `stream` (the command line's stderr), as plain lines."""
    logger = logging.getLogger(PROGRESS)
    if not any(getattr(h, "stream", None) is stream for h in logger.handlers):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
