"""Configuration from the environment (docs/contract.md, "Configuration"); CLI flags override it.

Everything user-facing that can be wrong is validated here, once, so that a bad value is reported as
one clear line before anything touches the disk or the network.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

from kline_assets.errors import BadInput
from kline_assets.timezones import AlignZone, parse_zone


@dataclass(frozen=True)
class Market:
    name: str  # "spot" | "futures"
    exchange_id: str  # ccxt id
    default_origin: str
    max_limit: int  # rows a klines request may ask for
    default_budget: int  # REQUEST_WEIGHT per minute


MARKETS: dict[str, Market] = {
    "spot": Market("spot", "binance", "https://api.binance.com", 1000, 6000),
    "futures": Market("futures", "binanceusdm", "https://fapi.binance.com", 1500, 2400),
}

DEFAULT_PAIR = "BTC/USDT"


def get_market(name: str) -> Market:
    try:
        return MARKETS[name.strip().lower()]
    except KeyError:
        raise BadInput(f"unknown market {name!r}: use spot or futures") from None


MAX_SYMBOL = 40  # Binance's symbols are up to ~20 characters; a longer name cannot be a dataset folder everywhere


def plain_name(text: str) -> bool:
    """ASCII letters and digits only, and not too long: what a symbol needs to name a dataset folder on
    every system (a Greek capital beta looks like a B and is not one)."""
    return 0 < len(text) <= MAX_SYMBOL and text.isascii() and text.isalnum()


def normalise_pair(pair: str) -> str:
    """`btcusdt`-style input is ambiguous, so a pair must be written BASE/QUOTE."""
    text = pair.strip().upper()
    base, sep, quote = text.partition("/")
    if not sep or not plain_name(base) or not plain_name(quote) or not plain_name(base + quote):
        raise BadInput(f"bad pair {pair!r}: write it as BASE/QUOTE in ASCII letters and digits, e.g. BTC/USDT")
    return f"{base}/{quote}"


@dataclass(frozen=True)
class DatasetSpec:
    """One (market, pair) archive; its identity on disk and in Dagster."""

    market: str
    pair: str

    @property
    def market_info(self) -> Market:
        return MARKETS[self.market]

    @property
    def exchange_id(self) -> str:
        return self.market_info.exchange_id

    @property
    def symbol(self) -> str:
        return self.pair.replace("/", "")

    @property
    def name(self) -> str:
        return f"{self.exchange_id}/{self.symbol}"


@dataclass(frozen=True)
class Selector:
    """`market:*/QUOTE`: every symbol of the market quoted in QUOTE whose status is TRADING (futures:
    perpetuals only), resolved from exchangeInfo by `binance.listing`."""

    market: str
    quote: str

    def __str__(self) -> str:
        return f"{self.market}:*/{self.quote}"


def parse_pairs(text: str) -> tuple[list[DatasetSpec], list[Selector]]:
    """KLINE_PAIRS: explicit `market:BASE/QUOTE` pairs and `market:*/QUOTE` selectors, mixed."""
    specs: list[DatasetSpec] = []
    selectors: list[Selector] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        market, sep, pair = item.partition(":")
        if not sep:
            raise BadInput(f"bad KLINE_PAIRS entry {item!r}: write market:BASE/QUOTE (e.g. futures:BTC/USDT) or "
                           "market:*/QUOTE (e.g. futures:*/USDT)")
        name = get_market(market).name
        if pair.strip().startswith("*"):
            base, slash, quote = pair.strip().partition("/")
            if base != "*" or not slash or not plain_name(quote.strip()):
                raise BadInput(f"bad KLINE_PAIRS selector {item!r}: write market:*/QUOTE, e.g. spot:*/USDT")
            selector = Selector(name, quote.strip().upper())
            if selector not in selectors:
                selectors.append(selector)
            continue
        spec = DatasetSpec(name, normalise_pair(pair))
        if spec not in specs:
            specs.append(spec)
    if not specs and not selectors:
        raise BadInput("KLINE_PAIRS names no dataset")
    return specs, selectors


SOURCES = ("auto", "rest", "archive")


def parse_source(text: str) -> str:
    value = text.strip().lower()
    if value not in SOURCES:
        raise BadInput(f"unknown source {text!r}: use auto (archive for closed days, REST for the rest), rest or "
                       "archive")
    return value


def parse_start_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"bad start date {text!r}: use YYYY-MM-DD") from None


@dataclass(frozen=True)
class Settings:
    data_root: str = "data"
    log_dir: str = "logs"
    pairs: tuple[DatasetSpec, ...] = field(
        default=(DatasetSpec("futures", DEFAULT_PAIR), DatasetSpec("spot", DEFAULT_PAIR))
    )
    align_tz: AlignZone = field(default_factory=lambda: parse_zone("UTC"))
    start: dt.date = dt.date(2020, 1, 1)
    spot_url: str = "https://api.binance.com"
    futures_url: str = "https://fapi.binance.com"
    build_combined_on_backfill: bool = False
    hourly: bool = False  # the example downstream asset klines_1h
    live_sensor: bool = True  # the sensor keeping today current (a `KlineArchive` may leave it out)
    source: str = "auto"  # auto | rest | archive: where closed days come from
    archive_url: str = "https://data.binance.vision"
    # `market:*/QUOTE` entries of KLINE_PAIRS; `binance.listing.resolve_settings` turns them into `pairs`
    selectors: tuple[Selector, ...] = ()
    # datasets kept for their history whose symbol no longer trades: live leaves them alone
    retired: frozenset[DatasetSpec] = frozenset()
    # datasets under the data root that KLINE_PAIRS does not name (made by `--pair`): the code location
    # defines them for their history and checks; live leaves them alone
    stored_only: frozenset[DatasetSpec] = frozenset()
    # a `KlineArchive` component's: the first part of its asset keys and of its job, sensor and resource
    # names (`defs.names.prefixed`); never set from the environment
    key_prefix: str = ""
    # read from the process's environment (`load_settings()`): the code location's resources then name the
    # variables their values come from (`defs.resources.settings_fields`)
    from_environment: bool = False

    def origin(self, market: str) -> str:
        """The REST origin of `market` (the runs read theirs from the exchange resource)."""
        return (self.spot_url if market == "spot" else self.futures_url).rstrip("/")

    @property
    def live_pairs(self) -> tuple[DatasetSpec, ...]:
        """The datasets live keeps current: all but those whose symbol stopped trading or that only the data
        root holds."""
        return tuple(spec for spec in self.pairs if spec not in self.retired and spec not in self.stored_only)


# The settings a run reads from its resources (`defs.resources`), by field, and the variable each comes from.
RESOURCE_VARIABLES = {
    "data_root": "KLINE_DATA_ROOT", "log_dir": "KLINE_LOG_DIR", "align_tz": "KLINE_ALIGN_TZ", "start": "KLINE_START",
    "spot_url": "KLINE_SPOT_URL", "futures_url": "KLINE_FUTURES_URL", "source": "KLINE_SOURCE",
    "archive_url": "KLINE_ARCHIVE_URL",
}


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """The settings of `env`, by default the process's environment (then `from_environment`)."""
    from_environment, env = env is None, dict(os.environ if env is None else env)

    def get(name: str, default: str) -> str:
        value = env.get(name, "").strip()
        return value or default

    pairs, selectors = parse_pairs(get("KLINE_PAIRS", "futures:BTC/USDT,spot:BTC/USDT"))
    return Settings(
        data_root=get("KLINE_DATA_ROOT", "data"),
        log_dir=get("KLINE_LOG_DIR", "logs"),
        pairs=tuple(pairs),
        selectors=tuple(selectors),
        align_tz=parse_zone(get("KLINE_ALIGN_TZ", "UTC")),
        start=parse_start_date(get("KLINE_START", "2020-01-01")),
        spot_url=get("KLINE_SPOT_URL", MARKETS["spot"].default_origin),
        futures_url=get("KLINE_FUTURES_URL", MARKETS["futures"].default_origin),
        build_combined_on_backfill=get("BUILD_COMBINED_ON_BACKFILL", "") == "1",
        hourly=get("KLINE_HOURLY", "") == "1",
        source=parse_source(get("KLINE_SOURCE", "auto")),
        archive_url=get("KLINE_ARCHIVE_URL", "https://data.binance.vision"),
        from_environment=from_environment,
    )


def resource_values(settings: Settings) -> dict[str, str]:
    """The settings a run reads from its resources, as their fields hold them (by field; see
    `RESOURCE_VARIABLES`)."""
    return {
        "data_root": settings.data_root, "log_dir": settings.log_dir, "align_tz": settings.align_tz.name,
        "start": settings.start.isoformat(), "spot_url": settings.spot_url, "futures_url": settings.futures_url,
        "source": settings.source, "archive_url": settings.archive_url,
    }


def settings_env(settings: Settings) -> dict[str, str]:
    """The variables `load_settings` reads back as `settings` (selectors as their resolved pairs): how a
    command hands what it resolved to the step processes Dagster starts for its run."""
    return {
        **{RESOURCE_VARIABLES[name]: value for name, value in resource_values(settings).items()},
        "KLINE_PAIRS": ",".join(f"{s.market}:{s.pair}" for s in settings.pairs),
        "BUILD_COMBINED_ON_BACKFILL": "1" if settings.build_combined_on_backfill else "",
        "KLINE_HOURLY": "1" if settings.hourly else "",
    }
