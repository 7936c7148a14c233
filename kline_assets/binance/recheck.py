"""Which stored archive days Binance has replaced since: their files' `.CHECKSUM`s read again.

Binance re-uploads archive files after corrections (the public data README says so), and a day stored from
the archive keeps the sha256 of the zip it came from (`source_sha256`; two, comma-joined, where a local day
is cut from two UTC files). Re-reading each file's CHECKSUM is one small request, with no zip unless it
changed; a day whose published CHECKSUM differs is fetched again by the recheck job (`defs.jobs`), which
says so in its run and in the manifest (`status`).
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kline_assets.binance.archive import ArchiveClient, ArchiveUnusable, utc_files
from kline_assets.errors import ExchangeTransient
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.manifest import utc_now_iso

WORKERS = 16  # CHECKSUMs read at once: the archive has no budget, latency is the limit


@dataclass
class Recheck:
    """What rereading a dataset's CHECKSUMs found."""

    checked: int = 0  # archive days whose files' CHECKSUMs were read
    changed: list[dt.date] = field(default_factory=list)  # days whose published file is another now
    unread: list[dt.date] = field(default_factory=list)  # days with a CHECKSUM gone or unreadable: kept as stored

    def summary(self, repaired: int) -> dict:
        return {"at": utc_now_iso(), "checked": self.checked, "changed": [d.isoformat() for d in self.changed],
                "repaired": repaired, "unread": len(self.unread)}


def changed_days(store: DatasetStore, archive: ArchiveClient) -> Recheck:
    """The archive days of `store` whose published CHECKSUM no longer names the zip they were made from."""
    kind, symbol = store.spec.kind_info, store.spec.symbol
    entries = sorted((e for e in store.manifest().chunks.values() if e.source == "archive" and e.source_sha256),
                     key=lambda e: e.index)
    files = {e.index: utc_files(kind, e.start_ms, e.end_ms) for e in entries}
    wanted = sorted({f for names in files.values() for f in names})  # a month's file serves many days

    def published(utc_day: dt.date) -> str | None:
        try:
            return archive.published(symbol, utc_day, kind)
        except (ArchiveUnusable, ExchangeTransient):
            return None

    with ThreadPoolExecutor(WORKERS, thread_name_prefix="recheck") as pool:
        now = dict(zip(wanted, pool.map(published, wanted), strict=True))
    found = Recheck()
    for entry in entries:
        day = dt.date.fromisoformat(entry.partition)
        sums = [now[f] for f in files[entry.index]]
        if None in sums:
            found.unread.append(day)
            continue
        found.checked += 1
        if ",".join(sums) != entry.source_sha256:
            found.changed.append(day)
    return found
