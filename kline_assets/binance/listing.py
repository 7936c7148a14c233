"""Which symbols a market trades, from `exchangeInfo`, remembered in the data root.

Two uses: KLINE_PAIRS selectors (`futures:*/USDT` = every TRADING USD-M perpetual quoted in USDT) and
telling the datasets whose symbol stopped trading (delisted, settled), which keep their dataset and
history but are left out of live updates.

Loading the code location never asks the exchange (`ask=False`): it reads the listing stored under the
data root or in a `KlineArchive` component's state, whichever is newer. The command line asks (`ask=True`)
when its listing is older than `MAX_AGE_S`, and so does refreshing a component's state; when the exchange
does not answer, the stale listing still serves (said in the log). With no listing at all a selector
selects only the datasets already on disk, and the log says how to get one.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from kline_assets.binance.client import BinanceClient
from kline_assets.errors import BadInput, ExchangeFinal, ExchangeTransient
from kline_assets.settings import MARKETS, MAX_SYMBOL, DatasetSpec, Selector, Settings, plain_name
from kline_assets.store.backend import Backend
from kline_assets.store.caches import read_listing, write_listing
from kline_assets.store.dataset import dataset_dirs, manifest_at
from kline_assets.store.paths import KIND_OF_FOLDER, MANIFEST, DatasetPaths

log = logging.getLogger("kline_assets")

MAX_AGE_S = 3600
TRADING = "TRADING"


@dataclass(frozen=True)
class Listing:
    """One market's symbols as exchangeInfo stated them: symbol -> [base, quote, status, perpetual]."""

    market: str
    fetched_at_ms: int
    symbols: dict[str, tuple[str, str, str, bool]]

    @classmethod
    def from_exchange_info(cls, market: str, info: dict, now_ms: int) -> Listing:
        symbols = {}
        for item in info.get("symbols", []) if isinstance(info, dict) else []:
            if not isinstance(item, dict) or not item.get("symbol"):
                continue
            # spot symbols have no contractType; a USD-M one without it is taken for a perpetual
            perpetual = market == "spot" or item.get("contractType", "PERPETUAL") == "PERPETUAL"
            symbols[str(item["symbol"])] = (str(item.get("baseAsset", "")), str(item.get("quoteAsset", "")),
                                            # COIN-M states `contractStatus` instead
                                            str(item.get("status") or item.get("contractStatus") or ""), perpetual)
        return cls(market, now_ms, symbols)

    def age_s(self, now_ms: int) -> float:
        return (now_ms - self.fetched_at_ms) / 1000

    def stale(self, now_ms: int, max_age_s: float = MAX_AGE_S) -> bool:
        """Old, or dated in the future (a clock that was wrong when it was written): asked for again."""
        return not -60 <= self.age_s(now_ms) <= max_age_s

    def trading(self, symbol: str) -> bool:
        info = self.symbols.get(symbol)
        return bool(info and info[2] == TRADING)

    def select(self, quote: str) -> list[DatasetSpec]:
        """Trading perpetuals (futures) or symbols (spot) quoted in `quote`. A base that is not plain
        ASCII letters and digits cannot name a dataset folder everywhere, so it is skipped (logged)."""
        out, skipped = [], []
        for symbol, (base, q, status, perpetual) in sorted(self.symbols.items()):
            if q != quote or status != TRADING or not perpetual:
                continue
            if not plain_name(base) or not plain_name(base + quote):
                skipped.append(symbol[:60] + ("..." if len(symbol) > 60 else ""))
                continue
            out.append(DatasetSpec(self.market, f"{base.upper()}/{quote}"))
        if skipped:
            log.warning("selector %s:*/%s leaves out %d listed symbol(s) whose name cannot name a dataset "
                        "(ASCII letters and digits, %d characters at most): %s", self.market, quote, len(skipped),
                        MAX_SYMBOL, ", ".join(skipped[:5]))
        return out

    def to_json(self) -> dict:
        return {"market": self.market, "fetched_at_ms": self.fetched_at_ms,
                "symbols": {s: list(v) for s, v in sorted(self.symbols.items())}}

    @classmethod
    def from_json(cls, market: str, body: dict) -> Listing:
        return cls(market, int(body["fetched_at_ms"]),
                   {str(s): (str(v[0]), str(v[1]), str(v[2]), bool(v[3])) for s, v in body["symbols"].items()})

    def save(self, root: Backend) -> None:
        write_listing(root, self.market, self.to_json())

    @classmethod
    def load(cls, root: Backend, market: str) -> Listing | None:
        body = read_listing(root, market)
        try:
            return None if body is None else cls.from_json(market, body)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None  # a cache that is not ours: asked for again


def fetch_listing(client: BinanceClient) -> Listing:
    info = client.exchange_info()
    client.apply_rate_limits(info)
    return Listing.from_exchange_info(client.market.name, info, int(time.time() * 1000))


def stored_listing(root: Backend, market: str, known: dict[str, Listing] | None) -> Listing | None:
    """The newer of the data root's listing and `known`'s (a component's state), or None."""
    found = [x for x in (Listing.load(root, market), (known or {}).get(market)) if x is not None]
    return max(found, key=lambda x: x.fetched_at_ms, default=None)


def listings(root: Backend, clients: dict[str, BinanceClient] | None, markets: set[str],
             max_age_s: float = MAX_AGE_S, known: dict[str, Listing] | None = None) -> dict[str, Listing | None]:
    """The listing of each market in `markets`: the newest of the data root's and `known`'s (a component's
    state); with `clients`, one older than `max_age_s` is asked for again (all markets at once) and stored;
    a stale one serves when the exchange does not answer; None when there is none."""
    now_ms = int(time.time() * 1000)
    cached = {m: stored_listing(root, m, known) for m in markets}
    stale = [m for m in sorted(markets) if clients is not None and (cached[m] is None or cached[m].stale(now_ms,
                                                                                                       max_age_s))]

    def ask(market: str) -> Listing | None:
        try:
            listing = fetch_listing(clients[market])
        except (ExchangeFinal, ExchangeTransient, OSError) as exc:
            old = cached[market]
            when = f"the listing from {old.age_s(now_ms) / 3600:.1f} h ago" if old else "no listing"
            log.warning("exchangeInfo of %s unavailable (%s): using %s", market, exc, when)
            return old
        if not listing.symbols:
            log.warning("exchangeInfo of %s lists no symbol: keeping the cached listing", market)
            return cached[market]
        listing.save(root)
        return listing

    if stale:
        with ThreadPoolExecutor(len(stale)) as pool:
            cached.update(zip(stale, pool.map(ask, stale), strict=True))
    return cached


NO_LISTING = ("no exchangeInfo stored yet: it selects only the datasets already under {root}. The job "
              "refresh_listing stores it (launch it in the UI), as do `kline-assets verify --all` and, in a dg "
              "project, `dg utils refresh-defs-state`; then reload the code location")


def resolve_selectors(settings: Settings, clients: dict[str, BinanceClient] | None, root: Backend,
                      known: dict[str, Listing] | None = None) -> Settings:
    """`settings` with its selectors' datasets added to `pairs` (after the explicit pairs), and `retired`
    set to the datasets whose symbol a known listing shows as no longer trading. `clients`: ask the exchange
    when a listing is stale (`listings`); None: stored listings only (the data root's, `known`).

    A selector selects the trading symbols of its quote plus every dataset of its market and quote already
    on disk, so a delisted symbol keeps its asset, history and checks."""
    markets = {s.market for s in settings.selectors}
    found = listings(root, clients, markets, known=known)
    for market in set(MARKETS) - markets:  # explicit pairs of other markets: a stored listing, if any
        found[market] = stored_listing(root, market, known)
    pairs = list(settings.pairs)
    for selector in settings.selectors:
        listing = found[selector.market]
        chosen = listing.select(selector.quote) if listing else []
        if listing is None:
            log.warning("KLINE_PAIRS %s: %s", selector, NO_LISTING.format(root=settings.data_root))
        chosen = [replace(spec, kind=kind) for spec in chosen for kind in selector.kinds]
        for spec in chosen + local_datasets(root, selector):
            if spec not in pairs:
                pairs.append(spec)
    retired = frozenset(spec for spec in pairs
                        if found.get(spec.market) is not None and not found[spec.market].trading(spec.symbol))
    return replace(settings, pairs=tuple(pairs), retired=retired)


def with_stored(settings: Settings, root: Backend, known: dict[str, Listing] | None = None) -> Settings:
    """`settings` with every dataset under the data root it does not define added as `stored_only`: a
    dataset made by `kline-assets --pair` shows in Dagster with its history and checks, not as a bare key.
    Its pair comes from a stored listing, else from its manifest (read only for such datasets)."""
    defined = {DatasetPaths(spec).dir for spec in settings.pairs}
    extra = []
    for market, info in MARKETS.items():
        listing = stored_listing(root, market, known)
        for folder in dataset_dirs(root, info.exchange_id):
            if folder in defined:
                continue
            _, symbol, kind_folder = folder.split("/")
            named = listing.symbols.get(symbol) if listing else None
            if named and plain_name(named[0]) and plain_name(named[1]) and named[0] + named[1] + info.suffix == symbol:
                extra.append(DatasetSpec(market, f"{named[0]}/{named[1]}", KIND_OF_FOLDER[kind_folder]))
                continue
            try:
                manifest = manifest_at(root, f"{folder}/{MANIFEST}")
            except (OSError, BadInput) as exc:
                log.warning("%s: left out of the code location, its manifest cannot be read (%s)", folder, exc)
                continue
            extra.append(manifest.spec)
    return replace(settings, pairs=settings.pairs + tuple(extra), stored_only=frozenset(extra))


def local_datasets(root: Backend, selector: Selector) -> list[DatasetSpec]:
    """Datasets of the selector's market and quote already stored (found by their manifests, none read)."""
    market = MARKETS[selector.market]
    quote = selector.quote + market.suffix  # the token's tail: USDT, or USD_PERP on COIN-M
    return [DatasetSpec(selector.market, f"{symbol[:-len(quote)]}/{selector.quote}", KIND_OF_FOLDER[folder])
            for _, symbol, folder in (found.split("/") for found in dataset_dirs(root, market.exchange_id))
            if symbol.endswith(quote) and len(symbol) > len(quote) and symbol[:-len(quote)].isalnum()
            and KIND_OF_FOLDER[folder] in selector.kinds]
