"""What the data root remembers of the exchange beside the datasets, under `<data root>/.kline_assets/`:
each market's listing (`binance.listing`: the symbols `exchangeInfo` lists) and which pairs the exchange
lists (`binance.symbols`). Under the data root (on S3: under the prefix), so every machine and run worker
sharing the archive shares them, and the exchange is asked once, not once per worker.

Every object under the data root is read and written in `store/`; what the answers mean stays in
`binance/`. Neither cache is part of the commit protocol: a lost or damaged one is only asked for again.
"""

from __future__ import annotations

import json

from kline_assets.store.backend import Backend
from kline_assets.store.paths import listing_cache, symbols_cache


def read_listing(root: Backend, market: str) -> dict | None:
    """The stored listing of `market` as `write_listing` wrote it; None when there is none or it is not
    a JSON object (then it is asked for again)."""
    try:
        body = json.loads(root.get(listing_cache(market)))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def write_listing(root: Backend, market: str, body: dict) -> None:
    root.put(listing_cache(market), json.dumps(body, separators=(",", ":")).encode())


def read_symbols(root: Backend) -> dict[str, bool]:
    """`market:SYMBOL` -> listed, as `remember_symbol` wrote them; anything else (missing, damaged, not an
    object) is empty."""
    try:
        known = json.loads(root.get(symbols_cache()))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in known.items() if isinstance(v, bool)} if isinstance(known, dict) else {}


def remember_symbol(root: Backend, key: str, listed: bool) -> None:
    """Read, add, write: two writers at once may lose one answer, which is only asked for again."""
    known = read_symbols(root)
    known[key] = listed
    root.put(symbols_cache(), json.dumps(known, indent=1, sort_keys=True).encode())
