"""Dagster's embedded SQLite storage with the event log's connections kept open.

Stock `SqliteEventLogStorage` builds a new SQLAlchemy engine for every statement batch, so each
event pays a fresh connection and a cold statement cache: a range run records one materialization
and three check evaluations per day, and that bookkeeping (~10 ms per event) outweighed fetching
the day. Keeping a few engines (one per recently used shard file) makes an event ~3x cheaper. The
files, tables and layout are exactly Dagster's: an instance can switch to or from this class at any
time, and the webserver, daemon and run processes may mix both.

Dagster is pinned (pyproject) because this overrides the storage's private `_connect`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import yaml
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

MAX_OPEN_SHARDS = 8  # the index shard plus the runs being written or read right now
# the `storage:` entry of dagster.yaml (and of `instance_for_test(overrides=...)`)
STORAGE = {"custom": {"module": __name__, "class": "KlineSqliteStorage", "config": {}}}


def _fewer_fsyncs(dbapi_connection, _record) -> None:
    """Write-ahead log with `synchronous=NORMAL`: a commit appends to the log without an fsync (the log is
    synced at checkpoints), so a crash loses no committed event and corrupts nothing, and a power cut may
    lose the last few; the manifest, not Dagster's event log, is the record of what is stored. WAL
    is SQLite's own multi-process mode, so the webserver and the daemon keep reading these files."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data)

    def has_table(self, table_name: str) -> bool:
        """Dagster asks this for every check evaluation and tagged materialization, each time through a
        new engine (~4 ms, half the cost of recording a day). A table, once there, stays until `wipe`."""
        if table_name in self._tables:
            return True
        found = super().has_table(table_name)
        if found:
            self._tables.add(table_name)
        return found

    def _engine(self, conn_string: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.pop(conn_string, None)
            if engine is None:
                # Dagster serialises statements per storage with `_db_lock`, so one connection
                # suffices; it may be used from the thread that next holds that lock
                engine = create_engine(conn_string, pool_size=1, max_overflow=2,
                                       connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                                                     "check_same_thread": False})
                event.listen(engine, "connect", _fewer_fsyncs)
            self._engines[conn_string] = engine
            while len(self._engines) > MAX_OPEN_SHARDS:
                self._engines.popitem(last=False)[1].dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(self.conn_string_for_shard(shard))
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _dispose_engines(self) -> None:
        with self._engines_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._dispose_engines()  # the run shard files are about to be unlinked
        self._tables.clear()
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()


class KlineSqliteStorage(DagsterSqliteStorage):
    """`storage: custom:` entry for dagster.yaml; `base_dir` defaults to DAGSTER_HOME, where Dagster's
    default keeps its SQLite files (history/, schedules/)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data)
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def config_type(cls):
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> KlineSqliteStorage:
        base_dir = config_value.get("base_dir") or os.environ["DAGSTER_HOME"]
        return cls.from_local(base_dir, inst_data=inst_data)


HEADER = "# Written by kline-assets."
# the run queue of `dagster dev` (and of the daemon): a UI backfill of every dataset is one run at a time
# beside the minute's live run, so the machine is never swamped; all share each market's weight budget
RUN_QUEUE = {"runs": {"max_concurrent_runs": 4,
                      "tag_concurrency_limits": [{"key": "dagster/backfill", "limit": 1}]}}
# Dagster's queued coordinator, looking at the queue every second instead of every 5: the minute's live
# run must be done ~20 s after the minute closed, and its launch (a process loading the code location)
# already takes ~5 s
RUN_COORDINATOR = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator",
                   "config": {"dequeue_interval_seconds": 1}}
INSTANCE_YAML = HEADER + """ Dagster's default SQLite storage (the same files: history/, schedules/)
# with the event log's connections kept open, as range runs record ~4 events per day, and a run queue
# that lets at most 4 runs go at once, one of them from a backfill, and is looked at every second.
# kline-assets keeps this file up to
# date while this header stays; delete the header to make the file yours, or empty the file to get
# Dagster's defaults back (an empty file is left alone).
""" + yaml.safe_dump({"storage": STORAGE, "concurrency": RUN_QUEUE, "run_coordinator": RUN_COORDINATOR},
                    sort_keys=False)


def written_by_us(text: str) -> bool:
    return text.startswith(HEADER)
