"""Is the pair listed? One `exchangeInfo` request, skipped when a dataset for it already exists.

The same answer tells the weight budget in force (`rateLimits`), which can be lower than the default.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kline_assets.errors import BadInput, UnknownSymbol
from kline_assets.exchange import BinanceClient
from kline_assets.paths import DatasetPaths
from kline_assets.settings import DEFAULT_PAIR, DatasetSpec

log = logging.getLogger("kline_assets")


def apply_rate_limits(client: BinanceClient, info: dict) -> None:
    for limit in info.get("rateLimits", []):
        if (limit.get("rateLimitType"), limit.get("interval"), limit.get("intervalNum", 1)) == (
                "REQUEST_WEIGHT", "MINUTE", 1):
            client.limiter.set_budget(int(limit["limit"]))


def is_listed(client: BinanceClient, symbol: str) -> bool:
    try:
        info = client.exchange_info(symbol)
    except UnknownSymbol:
        return False
    apply_rate_limits(client, info)
    return symbol in {s.get("symbol") for s in info.get("symbols", [])}


def resolve_pair(data_root: str | Path, spec: DatasetSpec, client: BinanceClient, strict: bool = False,
                 warn=print) -> DatasetSpec:
    if DatasetPaths(Path(data_root), spec).manifest.exists() or is_listed(client, spec.symbol):
        return spec
    if strict:
        raise BadInput(f"the {spec.market} market does not list {spec.pair}")
    message = (f"warning: the {spec.market} market does not list {spec.pair}; "
               f"using {DEFAULT_PAIR} instead (data under {DEFAULT_PAIR.replace('/', '')})")
    warn(message)
    log.warning(message)
    return DatasetSpec(spec.market, DEFAULT_PAIR)
