"""Configuration from the environment (docs/contract.md, "Configuration"); CLI flags override it.

Everything user-facing that can be wrong is validated here, once, so that a bad value is reported as
one clear line before anything touches the disk or the network.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kline_assets.errors import BadInput
from kline_assets.timezones import AlignZone, parse_zone


@dataclass(frozen=True)
class Kind:
    """One kind of a symbol's 1-minute data (docs/binance-kinds.md): where the exchange serves it (its
    REST endpoint, also its folder in the public archive), its asset key's last part and its folder. A kind
    is a description, not a pipeline: every kind goes through the same fetch, store, checks and verbs."""

    name: str  # klines | mark | index | premium | funding
    asset: str  # the asset key's last part
    folder: str  # under <exchange_id>/<PAIR_TOKEN>/
    endpoint: str  # REST `<api>/<endpoint>`, archive `daily/<endpoint>/` (funding: `monthly/<endpoint>/`)
    what: str  # in words, for descriptions
    by_pair: bool = False  # asked by `pair` rather than `symbol` (index klines)
    signed: bool = False  # prices may be negative (the premium index); volumes and counts never are
    # events on the symbol's schedule (funding), not one row a minute: the funding schema and checks,
    # monthly archive files, and a request budget of their own (`store.schema`, `store.checks`,
    # `binance.client`; docs/binance-kinds.md)
    events: bool = False

    @property
    def time_column(self) -> str:
        """The column rows are ordered, windowed and named by."""
        return "funding_time" if self.events else "open_time"


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("klines", "klines_1m", "1m", "klines", "klines"),
    Kind("mark", "mark_klines_1m", "mark_1m", "markPriceKlines", "mark price klines"),
    Kind("index", "index_klines_1m", "index_1m", "indexPriceKlines", "index price klines", by_pair=True),
    Kind("premium", "premium_klines_1m", "premium_1m", "premiumIndexKlines", "premium index klines", signed=True),
    Kind("funding", "funding_rate", "funding", "fundingRate", "funding rates", events=True),
)}


@dataclass(frozen=True)
class Market:
    """One of Binance's APIs, as a description: where it answers, what it lists and how it pages."""

    name: str  # "spot" | "futures" | "coinm"
    exchange_id: str  # ccxt id
    default_origin: str
    api: str  # the REST path under the origin
    ccxt_api: str  # ccxt's name of that API (its methods are `<ccxt_api>Get<Endpoint>`)
    archive: str  # the public archive's folder under data/
    max_limit: int  # rows a klines request may ask for
    default_budget: int  # REQUEST_WEIGHT per minute
    kinds: tuple[str, ...] = ("klines",)  # the kinds of data its symbols have
    suffix: str = ""  # after BASE+QUOTE in a perpetual's symbol (COIN-M: BTCUSD_PERP)
    # a window larger than `limit` answers its *last* rows (COIN-M), not its first: pages ask windows of
    # at most `limit` minutes there
    pages_from_end: bool = False
    default_pair: str = "BTC/USDT"  # the pair a command works on unless told, and falls back to


FUTURES_KINDS = ("klines", "mark", "index", "premium", "funding")
MARKETS: dict[str, Market] = {m.name: m for m in (
    Market("spot", "binance", "https://api.binance.com", "/api/v3", "public", "spot", 1000, 6000),
    Market("futures", "binanceusdm", "https://fapi.binance.com", "/fapi/v1", "fapiPublic", "futures/um", 1500, 2400,
           FUTURES_KINDS),
    Market("coinm", "binancecoinm", "https://dapi.binance.com", "/dapi/v1", "dapiPublic", "futures/cm", 1500, 2400,
           FUTURES_KINDS, suffix="_PERP", pages_from_end=True, default_pair="BTC/USD"),
)}


def get_market(name: str) -> Market:
    try:
        return MARKETS[name.strip().lower()]
    except KeyError:
        raise BadInput(f"unknown market {name!r}: use {', '.join(MARKETS)}") from None


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


def parse_kinds(text: str, market: str | None = None) -> tuple[str, ...]:
    """`klines+mark` (a KLINE_PAIRS entry's tail, `--kind`): kinds (that `market` has), in order, once each."""
    kinds: list[str] = []
    for name in (k.strip().lower() for k in text.split("+") if k.strip()):
        if name not in KINDS:
            raise BadInput(f"unknown kind {name!r}: use {', '.join(KINDS)}")
        if market is not None and name not in MARKETS[market].kinds:
            raise BadInput(f"the {market} market has no {KINDS[name].what}: use {', '.join(MARKETS[market].kinds)}")
        if name not in kinds:
            kinds.append(name)
    return tuple(kinds)


@dataclass(frozen=True)
class DatasetSpec:
    """One (market, pair, kind) archive; its identity on disk and in Dagster."""

    market: str
    pair: str
    kind: str = "klines"

    @property
    def kind_info(self) -> Kind:
        return KINDS[self.kind]

    @property
    def market_info(self) -> Market:
        return MARKETS[self.market]

    @property
    def exchange_id(self) -> str:
        return self.market_info.exchange_id

    @property
    def symbol(self) -> str:
        """The exchange's symbol, also the dataset's PAIR_TOKEN: `BTCUSDT`, COIN-M's perpetual `BTCUSD_PERP`."""
        return self.pair.replace("/", "") + self.market_info.suffix

    @property
    def flags(self) -> str:
        """The command line's words for this dataset: `--market futures --pair BTC/USDT [--kind mark]`."""
        return f"--market {self.market} --pair {self.pair}" + ("" if self.kind == "klines" else f" --kind {self.kind}")

    @property
    def name(self) -> str:
        """`binanceusdm/BTCUSDT`, and `binanceusdm/BTCUSDT/mark` for another kind than trade klines."""
        return f"{self.exchange_id}/{self.symbol}" + ("" if self.kind == "klines" else f"/{self.kind}")


@dataclass(frozen=True)
class Selector:
    """`market:*/QUOTE[:kinds]`: every symbol of the market quoted in QUOTE whose status is TRADING
    (futures: perpetuals only), resolved from exchangeInfo by `binance.listing`, a dataset per kind."""

    market: str
    quote: str
    kinds: tuple[str, ...] = ("klines",)

    def __str__(self) -> str:
        return f"{self.market}:*/{self.quote}" + ("" if self.kinds == ("klines",) else f":{'+'.join(self.kinds)}")


def parse_pairs(text: str, default_kinds: tuple[str, ...] = ("klines",)) -> tuple[list[DatasetSpec], list[Selector]]:
    """KLINE_PAIRS: explicit `market:BASE/QUOTE` pairs and `market:*/QUOTE` selectors, mixed; an entry that
    names no kinds has those of `default_kinds` (KLINE_KINDS) its market has, trade klines at least."""
    specs: list[DatasetSpec] = []
    selectors: list[Selector] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        market, sep, rest = item.partition(":")
        if not sep:
            raise BadInput(f"bad KLINE_PAIRS entry {item!r}: write market:BASE/QUOTE (e.g. futures:BTC/USDT) or "
                           "market:*/QUOTE (e.g. futures:*/USDT), optionally :kind+kind (futures:BTC/USDT:klines+mark)")
        name = get_market(market).name
        pair, _, named = rest.partition(":")
        kinds = (parse_kinds(named, name) if named.strip()
                 else tuple(k for k in default_kinds if k in MARKETS[name].kinds) or ("klines",))
        if pair.strip().startswith("*"):
            base, slash, quote = pair.strip().partition("/")
            if base != "*" or not slash or not plain_name(quote.strip()):
                raise BadInput(f"bad KLINE_PAIRS selector {item!r}: write market:*/QUOTE, e.g. spot:*/USDT")
            selector = Selector(name, quote.strip().upper(), kinds)
            if selector not in selectors:
                selectors.append(selector)
            continue
        for kind in kinds:
            spec = DatasetSpec(name, normalise_pair(pair), kind)
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


def parse_flag(value: str | bool) -> bool:
    """`1` (a variable) or true (an attribute): on; unset, empty or anything else: off."""
    return value is True or (isinstance(value, str) and value.strip() == "1")


def parse_key_prefix(text: str | None) -> str:
    prefix = (text or "").strip()
    if prefix and not prefix.replace("_", "").isalnum():
        raise BadInput(f"bad key_prefix {prefix!r}: use letters, digits and underscores")
    return prefix


def _pairs(value: str | list[str]) -> str:
    """The entries as one text: `settings_from` parses them once the default kinds are known."""
    return value if isinstance(value, str) else ",".join(value)


def _kind_names(value: str | list[str]) -> tuple[str, ...]:
    kinds = parse_kinds(value if isinstance(value, str) else "+".join(value))
    if not kinds:
        raise BadInput("KLINE_KINDS names no kind: use klines, or e.g. klines+mark+funding")
    return kinds


def _text(value: str) -> str:
    return value.strip()


@dataclass(frozen=True)
class Setting:
    """One setting, declared once. Everything else is derived from `SETTINGS`: the variables
    `load_settings` reads and `settings_env` writes, the `KlineArchive` attributes and its scaffolded
    `defs.yaml`, the resources' fields and their descriptions, and `run_resource`'s check.

    `home` says who reads it: "definitions" when it only shapes what the code location defines (datasets,
    downstream assets, sensors, key prefix), "store" or "exchange" when runs read it from that resource
    (the definitions also close over the store's: where datasets are and how days are cut)."""

    name: str  # the `Settings` field, the `KlineArchive` attribute, the resource field
    variable: str | None  # the environment variable (None: a `KlineArchive` attribute only)
    default: str  # as the variable (or the attribute) spells it
    description: str
    parse: Callable
    home: str = "definitions"


SETTINGS: tuple[Setting, ...] = (
    Setting("pairs", "KLINE_PAIRS", f"futures:{MARKETS['futures'].default_pair},spot:{MARKETS['spot'].default_pair}",
            "market:BASE/QUOTE, or market:*/QUOTE for every TRADING symbol of a quote (futures: perpetuals)", _pairs),
    Setting("kinds", "KLINE_KINDS", "klines", "The kinds of data of KLINE_PAIRS entries that name none "
            "(klines, mark, index, premium, funding, joined by +); each market keeps those it has", _kind_names),
    Setting("data_root", "KLINE_DATA_ROOT", "data", "A folder, or s3://bucket/prefix", _text, "store"),
    Setting("log_dir", "KLINE_LOG_DIR", "logs", "Folder of loader.log", _text, "store"),
    Setting("align_tz", "KLINE_ALIGN_TZ", "UTC", "The IANA zone (or fixed offset, +02:00) whose local days are the "
            "partitions", parse_zone, "store"),
    Setting("start", "KLINE_START", "2020-01-01", "First local day of a new dataset", parse_start_date, "store"),
    Setting("source", "KLINE_SOURCE", "auto", "Where closed days come from: auto (the public archive, REST for the "
            "rest), rest or archive", parse_source, "exchange"),
    Setting("spot_url", "KLINE_SPOT_URL", MARKETS["spot"].default_origin, "Spot REST origin", _text, "exchange"),
    Setting("futures_url", "KLINE_FUTURES_URL", MARKETS["futures"].default_origin, "USD-M futures REST origin", _text,
            "exchange"),
    Setting("coinm_url", "KLINE_COINM_URL", MARKETS["coinm"].default_origin, "COIN-M futures REST origin", _text,
            "exchange"),
    Setting("archive_url", "KLINE_ARCHIVE_URL", "https://data.binance.vision", "Binance's public archive", _text,
            "exchange"),
    Setting("hourly", "KLINE_HOURLY", "", "The example downstream asset klines_1h", parse_flag),
    Setting("combine_after_backfill", "BUILD_COMBINED_ON_BACKFILL", "", "Rebuild the combined file after a "
            "backfill", parse_flag),
    Setting("live_sensor", None, "1", "Keep today's partition current every minute", parse_flag),
    Setting("key_prefix", None, "", "First part of every asset key, job, sensor and resource name (two "
            "components in one project need different ones)", parse_key_prefix),
)
BY_NAME = {s.name: s for s in SETTINGS}


def default_value(name: str) -> str | bool | list[str]:
    """A setting's default as a `KlineArchive` attribute holds it: text, a flag, or a list of pairs."""
    setting = BY_NAME[name]
    if setting.parse is parse_flag:
        return parse_flag(setting.default)
    return setting.default.split(",") if name == "pairs" else setting.default


@dataclass(frozen=True)
class Settings:
    """What a code location is built from and its runs read, checked (`SETTINGS` declares each setting;
    `settings_from` is the one way to make them). The fields after `key_prefix` are not settings: what
    resolving the datasets found, and where the settings came from."""

    pairs: tuple[DatasetSpec, ...]
    kinds: tuple[str, ...]
    data_root: str
    log_dir: str
    align_tz: AlignZone
    start: dt.date
    source: str
    spot_url: str
    futures_url: str
    coinm_url: str
    archive_url: str
    hourly: bool
    combine_after_backfill: bool
    live_sensor: bool
    key_prefix: str
    # `market:*/QUOTE` entries of KLINE_PAIRS; `defs.datasets.resolve_datasets` turns them into `pairs`
    selectors: tuple[Selector, ...] = ()
    # datasets kept for their history whose symbol no longer trades: live leaves them alone
    retired: frozenset[DatasetSpec] = frozenset()
    # datasets under the data root that KLINE_PAIRS does not name (made by `--pair`): the code location
    # defines them for their history and checks; live leaves them alone
    stored_only: frozenset[DatasetSpec] = frozenset()
    # read from the process's environment (`load_settings()`): the code location's resources then name the
    # variables their values come from (`defs.resources.settings_fields`)
    from_environment: bool = False

    def origin(self, market: str) -> str:
        """The REST origin of `market` (the runs read theirs from the exchange resource)."""
        return getattr(self, f"{market}_url").rstrip("/")

    @property
    def hourly_pairs(self) -> tuple[DatasetSpec, ...]:
        """The datasets with the example `klines_1h` (with `hourly`): those of trade klines."""
        return tuple(spec for spec in self.pairs if spec.kind == "klines") if self.hourly else ()

    @property
    def live_pairs(self) -> tuple[DatasetSpec, ...]:
        """The datasets live keeps current: all but those whose symbol stopped trading or that only the data
        root holds."""
        return tuple(spec for spec in self.pairs if spec not in self.retired and spec not in self.stored_only)


def settings_from(values: Mapping[str, object], from_environment: bool = False) -> Settings:
    """The settings of `values` (by setting name; a setting absent, None or blank takes its default), each
    checked by its parser: a bad one is one `BadInput` line."""
    parsed = {}
    for setting in SETTINGS:
        value = values.get(setting.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            value = setting.default
        parsed[setting.name] = setting.parse(value)
    specs, selectors = parse_pairs(parsed.pop("pairs"), parsed["kinds"])
    return Settings(pairs=tuple(specs), selectors=tuple(selectors), from_environment=from_environment, **parsed)


def load_settings(env: Mapping[str, str] | None = None, **overrides: str | None) -> Settings:
    """The settings of `env`, by default the process's environment (then `from_environment`); `overrides`
    (a command's flags, by setting name, None: not given) win over the variables."""
    source = os.environ if env is None else env
    values = {s.name: source.get(s.variable) for s in SETTINGS if s.variable}
    return settings_from({**values, **{k: v for k, v in overrides.items() if v is not None}}, env is None)


def env_setting(name: str):
    """One setting from the process's environment (its default when unset), the others left alone: what the
    Python API needs of the environment (`data_root`)."""
    setting = BY_NAME[name]
    return setting.parse(os.environ.get(setting.variable, "").strip() or setting.default)


def spelled(settings: Settings, name: str) -> str:
    """A setting's value as its variable spells it (what `load_settings` reads back as that value)."""
    value = getattr(settings, name)
    if name == "pairs":  # kinds named wherever KLINE_KINDS would read them otherwise
        plain = settings.kinds == ("klines",)
        return ",".join([f"{s.market}:{s.pair}" + ("" if s.kind == "klines" and plain else f":{s.kind}")
                         for s in settings.pairs]
                        + [str(s) if plain else f"{s.market}:*/{s.quote}:{'+'.join(s.kinds)}"
                           for s in settings.selectors])
    if isinstance(value, bool):
        return "1" if value else ""
    if name == "kinds":
        return "+".join(value)
    return value.name if isinstance(value, AlignZone) else str(value.isoformat() if name == "start" else value)


def resource_values(settings: Settings, home: str | None = None) -> dict[str, str]:
    """The settings runs read from a resource (`home`: that resource's only), as its fields hold them."""
    return {s.name: spelled(settings, s.name) for s in SETTINGS if s.home != "definitions" and home in (None, s.home)}


def settings_env(settings: Settings) -> dict[str, str]:
    """The variables `load_settings` reads back as `settings` (selectors as their resolved pairs): how a
    command hands what it resolved to the step processes Dagster starts for its run."""
    return {s.variable: spelled(settings, s.name) for s in SETTINGS if s.variable}
