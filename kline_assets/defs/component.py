"""`KlineArchive`: the archive as a Dagster component, for `dg` projects' `defs.yaml`, and the one way the
code location is built (`build_definitions` is a component without state of its own).

Why state-backed: which datasets `futures:*/USDT` means depends on Binance's listing, and loading a code
location must never wait on the exchange (every run worker loads it again). So the listing is state:
refreshing it is an explicit step (`dg utils refresh-defs-state` writes the component's state; any
`kline-assets ... --all` command stores it under the data root), and loading reads only what is stored,
the newer of the two. With neither, a selector selects the datasets already on disk and the log says how
to refresh. Explicit pairs never need the state.

    # defs/klines/defs.yaml
    type: kline_assets.KlineArchive
    attributes:
      pairs: [futures:BTC/USDT, "spot:*/USDC"]
      data_root: /srv/klines
      align_tz: Europe/Zurich
      key_prefix: zurich        # keys [zurich, binanceusdm, BTCUSDT, klines_1m]; jobs zurich_live_klines

No `from __future__ import annotations`: Dagster resolves the attributes' annotations at load.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster.components import DefsStateConfig, DefsStateConfigArgs, ResolvedDefsStateConfig

from kline_assets.binance.listing import Listing, listings
from kline_assets.defs.datasets import resolve_datasets
from kline_assets.defs.definitions import definitions_for
from kline_assets.errors import BadInput
from kline_assets.settings import (
    DEFAULT_PAIR,
    MARKETS,
    Settings,
    load_settings,
    parse_pairs,
    parse_source,
    parse_start_date,
)
from kline_assets.store.backend import open_root
from kline_assets.timezones import parse_zone

log = logging.getLogger("kline_assets")

DEFAULT_PAIRS = [f"futures:{DEFAULT_PAIR}", f"spot:{DEFAULT_PAIR}"]


SCAFFOLD = """\
# Binance 1-minute klines (kline-assets). Every attribute is optional; these are the defaults.
# The datasets a selector (market:*/QUOTE) means come from a listing refreshed by
# `dg utils refresh-defs-state` (or any `kline-assets ... --all` command); loading never asks the exchange.
# Two KlineArchive components in one project need different key_prefix values.
type: {type_name}

attributes:
  pairs: [futures:BTC/USDT, spot:BTC/USDT]   # market:BASE/QUOTE, or market:*/QUOTE for every TRADING symbol
  data_root: data                            # a folder, or s3://bucket/prefix
  log_dir: logs
  align_tz: UTC                              # local days of this IANA zone (or +02:00) are the partitions
  start: "2020-01-01"
  source: auto                               # auto (public archive for closed days, REST for the rest) | rest | archive
  spot_url: https://api.binance.com          # REST origins and the public archive (e.g. the simulator's)
  futures_url: https://fapi.binance.com
  archive_url: https://data.binance.vision
  live_sensor: true                          # keep today's partition current every minute
  hourly: false                              # the example downstream asset klines_1h
  combine_after_backfill: false
  # key_prefix: eu                           # keys [eu, binanceusdm, BTCUSDT, klines_1m], jobs eu_live_klines, ...
"""


class KlineArchiveScaffolder(dg.Scaffolder):
    """`dg scaffold defs kline_assets.KlineArchive <name>`: a defs.yaml with every attribute and its default."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        if request.scaffold_format != "yaml":
            raise dg.DagsterInvariantViolationError("KlineArchive is configured in defs.yaml: scaffold it as yaml")
        (request.target_path / "defs.yaml").write_text(SCAFFOLD.format(type_name=request.type_name))


def no_refresh_on_load() -> DefsStateConfigArgs:
    """State in the project folder, refreshed only when asked: `dagster dev` would otherwise ask the
    exchange on every load."""
    return DefsStateConfigArgs.local_filesystem().model_copy(update={"refresh_if_dev": False})


@dg.scaffold_with(KlineArchiveScaffolder)
@dataclass
class KlineArchive(dg.StateBackedComponent, dg.Resolvable):
    """Binance 1-minute klines as daily-partitioned Dagster assets, one per dataset, kept in an exact,
    verifiable archive (a folder or `s3://bucket/prefix`), with continuity, integrity and sanity checks, a
    sensor keeping today current and a combined file per dataset.

    Attributes are those of the environment variables of the command line (README, "Configuration").
    """

    pairs: list[str] = field(default_factory=lambda: list(DEFAULT_PAIRS))  # market:BASE/QUOTE or market:*/QUOTE
    data_root: str = "data"
    log_dir: str = "logs"
    align_tz: str = "UTC"
    start: str = "2020-01-01"
    source: str = "auto"  # auto | rest | archive
    spot_url: str = MARKETS["spot"].default_origin
    futures_url: str = MARKETS["futures"].default_origin
    archive_url: str = "https://data.binance.vision"
    hourly: bool = False  # the example downstream asset klines_1h
    live_sensor: bool = True
    combine_after_backfill: bool = False
    key_prefix: str | None = None  # first part of every asset key, start of every job, sensor, resource name
    defs_state: ResolvedDefsStateConfig = field(default_factory=no_refresh_on_load)
    _settings = None  # not an attribute: the settings `from_settings` was given

    @classmethod
    def from_settings(cls, settings: Settings) -> "KlineArchive":
        """The component of `settings` (by default the environment's, `load_settings`): our own code location.
        It builds from `settings` themselves, already checked, which also keep where they came from."""
        component = cls(pairs=[f"{s.market}:{s.pair}" for s in settings.pairs] + [str(s) for s in settings.selectors],
                        data_root=settings.data_root, log_dir=settings.log_dir, align_tz=settings.align_tz.name,
                        start=settings.start.isoformat(), source=settings.source, spot_url=settings.spot_url,
                        futures_url=settings.futures_url, archive_url=settings.archive_url, hourly=settings.hourly,
                        live_sensor=settings.live_sensor, combine_after_backfill=settings.build_combined_on_backfill,
                        key_prefix=settings.key_prefix or None)
        component._settings = settings
        return component

    def settings(self) -> Settings:
        """The attributes checked as the variables are (`settings`): a bad one is one clear error at load."""
        if self._settings is not None:
            return self._settings
        try:
            specs, selectors = parse_pairs(",".join(self.pairs))
            prefix = (self.key_prefix or "").strip()
            if prefix and not prefix.replace("_", "").isalnum():
                raise BadInput(f"bad key_prefix {prefix!r}: use letters, digits and underscores")
            return Settings(data_root=self.data_root, log_dir=self.log_dir, pairs=tuple(specs),
                            selectors=tuple(selectors), align_tz=parse_zone(self.align_tz),
                            start=parse_start_date(self.start), spot_url=self.spot_url, futures_url=self.futures_url,
                            build_combined_on_backfill=self.combine_after_backfill, hourly=self.hourly,
                            source=parse_source(self.source), archive_url=self.archive_url,
                            live_sensor=self.live_sensor, key_prefix=prefix)
        except BadInput as exc:
            raise dg.DagsterInvalidDefinitionError(f"KlineArchive: {exc}") from None

    @property
    def defs_state_config(self) -> DefsStateConfig:
        return DefsStateConfig.from_args(self.defs_state, default_key=f"KlineArchive[{self.key_prefix or ''}]")

    def write_state_to_path(self, state_path: Path) -> None:
        """Asks the exchange which symbols each market lists (the data root keeps the answer too) and writes
        the listings: loading then needs no request."""
        settings = self.settings()
        resolve_datasets(settings, ask=True)
        found = listings(open_root(settings.data_root), None, set(MARKETS))
        body = {m: found[m].to_json() for m in sorted(found) if found[m] is not None}
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(body, separators=(",", ":")))

    def build_defs_from_state(self, context: dg.ComponentLoadContext | None, state_path: Path | None) -> dg.Definitions:
        """The definitions from stored answers only: no request, nothing written."""
        known = read_state(state_path) if state_path is not None else {}
        return definitions_for(resolve_datasets(self.settings(), ask=False, known=known, stored=True))


def read_state(state_path: Path) -> dict[str, Listing]:
    """The listings `write_state_to_path` wrote; a damaged state counts as none (said in the log)."""
    try:
        body = json.loads(state_path.read_text())
        return {market: Listing.from_json(market, item) for market, item in body.items() if market in MARKETS}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        log.warning("KlineArchive state %s unreadable (%s): using the listing under the data root", state_path, exc)
        return {}


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The whole code location from `settings` (default: the environment's), as the `KlineArchive` of those
    settings builds it with no state of its own: from the listing stored under the data root."""
    return KlineArchive.from_settings(settings or load_settings()).build_defs_from_state(None, None)
