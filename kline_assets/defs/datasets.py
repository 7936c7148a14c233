"""Which datasets settings define: explicit pairs (an unlisted one replaced by BTC/USDT), the selectors'
symbols from the stored listing, and, for the code location, every other dataset under the data root."""

from __future__ import annotations

from dataclasses import replace

from kline_assets.binance import shared
from kline_assets.binance.listing import Listing, resolve_selectors, with_stored
from kline_assets.binance.symbols import resolve_for_definitions
from kline_assets.settings import MARKETS, Settings
from kline_assets.store.backend import open_root

# asking which symbols are listed never holds a command long: a stored answer, however old, serves instead
PROBE = {"timeout_ms": 2000, "max_attempts": 1}


def resolve_datasets(settings: Settings, ask: bool = True, known: dict[str, Listing] | None = None,
                     stored: bool = False) -> Settings:
    """The datasets `settings` define: explicit pairs the exchange does not list replaced by BTC/USDT, and
    the selectors' symbols added (`binance.listing`). `ask`: ask the exchange (`PROBE`: 2 s, once) where what is
    stored is stale or missing (the command line, refreshing a component's state); otherwise only the data root's stored
    answers and `known` (a component's state) decide, and nothing is written. `stored`: also every other
    dataset under the data root (the code location's, `with_stored`)."""
    clients = {m: shared.client_of(settings, m, **PROBE) for m in MARKETS} if ask else None
    root = open_root(settings.data_root)
    settings = replace(settings, pairs=resolve_for_definitions(root, settings.pairs, clients))
    settings = resolve_selectors(settings, clients, root, known)
    return with_stored(settings, root, known) if stored else settings
