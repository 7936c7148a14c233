"""Is the pair listed? One `exchangeInfo` request per (market, symbol), remembered in the data root.

The CLI falls back to BTC/USDT for an unlisted pair (docs/contract.md), and so does the code location from
what is remembered (it never asks the exchange while loading): a pair nobody asked about yet keeps its
name (a run then fails on an unknown symbol, before anything is written). The answer also tells the
weight budget in force (`rateLimits`), which can be lower than the default.
"""

from __future__ import annotations

import logging

from kline_assets.binance.client import BinanceClient
from kline_assets.errors import BadInput, ExchangeFinal, ExchangeTransient, UnknownSymbol
from kline_assets.settings import DatasetSpec
from kline_assets.store.backend import Backend
from kline_assets.store.caches import read_symbols, remember_symbol
from kline_assets.store.paths import DatasetPaths

log = logging.getLogger("kline_assets")


def _key(spec: DatasetSpec) -> str:
    return f"{spec.market}:{spec.symbol}"


def is_listed(client: BinanceClient, symbol: str) -> bool:
    """exchangeInfo first; where an origin does not serve it, one one-row klines request decides."""
    try:
        info = client.exchange_info(symbol)
    except UnknownSymbol:
        return False
    except ExchangeFinal as exc:
        log.warning("exchangeInfo unavailable at %s (%s): asking klines instead", client.origin, exc)
        return _klines_know(client, symbol)
    client.apply_rate_limits(info)
    symbols = {s.get("symbol") for s in info.get("symbols", []) if isinstance(s, dict)}
    if symbols:
        return symbol in symbols
    return _klines_know(client, symbol)  # an answer that lists nothing decides nothing


def _klines_know(client: BinanceClient, symbol: str) -> bool:
    try:
        client.klines(symbol, 0, 2**41, 1)
    except UnknownSymbol:
        return False
    return True


def listed(root: Backend, spec: DatasetSpec, client: BinanceClient) -> bool:
    """From an existing dataset, the cache, or one request (whose answer is cached)."""
    if root.exists(DatasetPaths(spec).manifest):
        return True
    cached = read_symbols(root).get(_key(spec))
    if cached is not None:
        return cached
    answer = is_listed(client, spec.symbol)
    remember_symbol(root, _key(spec), answer)
    return answer


def fallback(spec: DatasetSpec) -> DatasetSpec:
    """The dataset a pair the market does not list falls back to: its market's BTC pair, same kind."""
    return DatasetSpec(spec.market, spec.market_info.default_pair, spec.kind)


def fallback_message(spec: DatasetSpec) -> str:
    instead = fallback(spec)
    return (f"warning: the {spec.market} market does not list {spec.pair}; "
            f"using {instead.pair} instead (data under {instead.symbol})")


def resolve_pair(root: Backend, spec: DatasetSpec, client: BinanceClient, strict: bool = False,
                 warn=print) -> DatasetSpec:
    if listed(root, spec, client):
        return spec
    if strict:
        raise BadInput(f"the {spec.market} market does not list {spec.pair}")
    warn(fallback_message(spec))
    log.warning(fallback_message(spec))
    return fallback(spec)


def resolve_for_definitions(root: Backend, specs: tuple[DatasetSpec, ...],
                            clients: dict[str, BinanceClient] | None) -> tuple[DatasetSpec, ...]:
    """The pairs with unlisted ones replaced, asking the exchange only with `clients` (else from what the
    data root remembers); never failing."""
    out: list[DatasetSpec] = []
    for spec in specs:
        try:
            if spec.pair == spec.market_info.default_pair:
                ok = True
            elif clients is not None:
                ok = listed(root, spec, clients[spec.market])
            else:
                ok = root.exists(DatasetPaths(spec).manifest) or read_symbols(root).get(_key(spec)) is not False
        except (ExchangeFinal, ExchangeTransient, OSError):
            ok = True  # unknown for now: the run will say so if the exchange does not list it
        chosen = spec if ok else fallback(spec)
        if not ok:
            log.warning("KLINE_PAIRS: %s", fallback_message(spec))
        if chosen not in out:
            out.append(chosen)
    return tuple(out)
