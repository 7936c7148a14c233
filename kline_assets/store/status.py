"""What is stored, per dataset, for `kline-assets status` and the UI's metadata."""

from __future__ import annotations

import datetime as dt
import time

from kline_assets.store.backend import Backend
from kline_assets.store.dataset import dataset_dirs, manifest_at
from kline_assets.store.paths import MANIFEST
from kline_assets.timezones import ms_to_iso


def dataset_status(backend: Backend, folder: str, now_ms: int | None = None) -> dict:
    """`folder`: the dataset's key (`binance/BTCUSDT/1m`)."""
    manifest = manifest_at(backend, f"{folder}/{MANIFEST}")
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    entries = [manifest.chunks[i] for i in sorted(manifest.chunks)]
    days = {dt.date.fromisoformat(e.partition) for e in entries}
    first, last = (min(days), max(days)) if days else (None, None)
    missing = [] if not days else [
        (first + dt.timedelta(n)).isoformat() for n in range((last - first).days + 1)
        if first + dt.timedelta(n) not in days
    ]
    last_open = max((e.last_open_time for e in entries if e.last_open_time is not None), default=None)
    disk = sum(o.size for o in backend.list(f"{folder}/"))
    return {
        "dataset": manifest.spec.name,
        "market": manifest.market,
        "pair": manifest.pair,
        "kind": manifest.kind,
        "align_tz": manifest.align_tz,
        "start": manifest.start,
        "path": backend.uri(folder),
        "chunks": len(entries),
        "first_day": first.isoformat() if first else None,
        "last_day": last.isoformat() if last else None,
        "first_index": entries[0].index if entries else None,  # what `combine --from-index/--to-index` take
        "last_index": entries[-1].index if entries else None,
        "rows": sum(e.rows for e in entries),
        "last_stored_minute": ms_to_iso(last_open),
        "lag_seconds": round((now_ms - (last_open + 59_999)) / 1000, 1) if last_open is not None else None,
        "incomplete_days": [e.partition for e in entries if not e.complete],
        "exchange_gaps": sum(len(e.exchange_gaps) for e in entries),
        "exchange_gap_minutes": sum(e.gap_minutes for e in entries),
        "sources": {src: sum(1 for e in entries if e.source == src) for src in ("archive", "rest")},
        "missing_days": missing,
        "last_verify": manifest.extra.get("last_verify"),
        "last_recheck": manifest.extra.get("last_recheck"),
        "disk_bytes": disk,
    }


def all_status(backend: Backend) -> list[dict]:
    return [dataset_status(backend, folder) for folder in dataset_dirs(backend)]


def _few(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def human_lag(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.0f} days"


def render(statuses: list[dict], data_root: str) -> str:
    if not statuses:
        return f"no datasets yet under {data_root}"
    lines = []
    for s in statuses:
        verify = s["last_verify"]
        verified = f"{'ok' if verify['ok'] else 'PROBLEMS'} at {verify['at']}" if verify else "never"
        lines += [
            f"{s['dataset']}  ({s['market']} {s['pair']}, days in {s['align_tz']}, start {s['start']})"
            + ("  no longer trading: kept, live leaves it alone" if s.get("trading") is False else ""),
            f"  chunks {s['chunks']}: {s['first_day']} .. {s['last_day']} (indexes {s['first_index']} .. "
            f"{s['last_index']}), {s['rows']:,} rows, {s['disk_bytes'] / 1e6:.1f} MB",
            f"  last stored minute {s['last_stored_minute'] or '-'}"
            + (f", lag {human_lag(s['lag_seconds'])}" if s["lag_seconds"] is not None else ""),
            f"  incomplete days: {_few(s['incomplete_days'])}",
            f"  missing days: {_few(s['missing_days'])}",
            f"  confirmed exchange gaps: {s['exchange_gaps']} ({s['exchange_gap_minutes']} minutes)",
            f"  sources: {s['sources']['archive']:,} day(s) from the archive, {s['sources']['rest']:,} from REST",
            f"  last verify: {verified}",
        ]
        recheck = s.get("last_recheck")
        if recheck:  # the recheck job's (defs.jobs): Binance replaces archive files after corrections
            lines.append(f"  archive recheck at {recheck['at']}: {recheck['checked']:,} day(s), "
                         + (f"{len(recheck['changed'])} replaced by Binance ({_few(recheck['changed'])}), "
                            f"{recheck['repaired']} loaded again" if recheck["changed"] else "none replaced"))
    return "\n".join(lines)
