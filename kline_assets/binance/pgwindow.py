"""The weight count and ban memory of an origin in the Dagster instance's Postgres: every run worker of the
instance, on any number of machines (behind one IP, as Binance counts), plans from one count.

Why not Dagster's pools or concurrency keys: they limit how many steps or runs go at once, not how much
weight is spent in a clock minute, and a slow minute's requests would hold slots the next minute needs.
One row per origin (`kline_assets_weight`: the minute, its count, and until when a Retry-After runs),
updated in a short transaction under a row lock per request; the same arithmetic as the file window.
psycopg2 comes with dagster-postgres (the `postgres` extra), so nothing is added to install.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("kline_assets")

TABLE = "kline_assets_weight"
CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE} (origin TEXT PRIMARY KEY, minute BIGINT NOT NULL, "
          "used INTEGER NOT NULL, blocked_until DOUBLE PRECISION NOT NULL)")
RETRY_S = 30.0  # after Postgres failed, the machine's own count for this long before trying again


class PostgresWindow:
    """`reserve` and `remember_block` of `limiter.Window` in Postgres; when Postgres cannot be reached the
    `fallback` (the machine's file window) counts, with one warning, and Postgres is tried again later."""

    def __init__(self, url: str, origin: str, fallback: Any) -> None:
        self.url = url
        self.origin = origin
        self.fallback = fallback
        self._conn: Any = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._warned = False

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg2

            conn = psycopg2.connect(self.url, connect_timeout=5)
            with conn, conn.cursor() as cur:  # the lock makes two first workers create the table one at a time
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))
                cur.execute(CREATE)
                cur.execute(f"INSERT INTO {TABLE} VALUES (%s, -1, 0, 0) ON CONFLICT DO NOTHING", (self.origin,))
            self._conn = conn
        return self._conn

    def _in_postgres(self, work) -> Any:
        """`work(cursor)` in one transaction; None when Postgres failed (the caller falls back)."""
        if time.monotonic() < self._down_until:
            return None
        try:
            conn = self._connection()
            with conn, conn.cursor() as cur:
                return work(cur)
        except Exception as exc:  # psycopg2's errors, a missing driver: the machine's count goes on
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._down_until = time.monotonic() + RETRY_S
            if not self._warned:
                self._warned = True
                log.warning("the weight count shared through Postgres is unavailable (%s); counting on this "
                            "machine only, and trying again every %.0f s", str(exc).strip().splitlines()[0],
                            RETRY_S)
            return None

    def reserve(self, minute: int, weight: int, cap: int, floor: int = 0) -> tuple[bool, float]:
        def work(cur) -> tuple[bool, float]:
            cur.execute(f"SELECT minute, used, blocked_until FROM {TABLE} WHERE origin = %s FOR UPDATE",
                        (self.origin,))
            stored, used, blocked = cur.fetchone()
            at = max(minute, stored)  # another worker is already in the next minute (clock skew of ms)
            used = max(used if stored == at else 0, floor)
            ok = weight == 0 or (blocked <= time.time() and used + weight <= cap)
            if ok:
                used += weight
            cur.execute(f"UPDATE {TABLE} SET minute = %s, used = %s WHERE origin = %s", (at, used, self.origin))
            return ok, blocked

        with self._lock:
            answer = self._in_postgres(work)
        return self.fallback.reserve(minute, weight, cap, floor) if answer is None else answer

    def remember_block(self, until: float) -> None:
        def work(cur) -> bool:
            cur.execute(f"UPDATE {TABLE} SET blocked_until = GREATEST(blocked_until, %s) WHERE origin = %s",
                        (until, self.origin))
            return True

        with self._lock:
            self._in_postgres(work)
        self.fallback.remember_block(until)  # also the machine's, for processes without the instance
