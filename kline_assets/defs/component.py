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
from kline_assets.settings import MARKETS, SETTINGS, Settings, default_value, load_settings, settings_from, spelled
from kline_assets.store.backend import open_root

log = logging.getLogger("kline_assets")

def scaffold_text(type_name: str) -> str:
    """The `defs.yaml` `dg scaffold defs` writes: every attribute with its default and what it does."""
    lines = ["# Binance 1-minute klines (kline-assets). Every attribute is optional; these are the defaults.",
             "# The datasets a selector (market:*/QUOTE) means come from a listing refreshed by",
             "# `dg utils refresh-defs-state` (or any `kline-assets ... --all` command);",
             "# loading never asks the exchange.",
             f"type: {type_name}", "", "attributes:"]
    for setting in SETTINGS:
        value = default_value(setting.name)
        text = (f"[{', '.join(value)}]" if isinstance(value, list) else str(value).lower() if isinstance(value, bool)
                else f'"{value}"' if setting.name == "start" else value)
        line = f"  {setting.name}: {text}" if text != "" else f"  # {setting.name}: eu"
        lines.append(f"{line:<44} # {setting.description}")
    return "\n".join(lines) + "\n"


class KlineArchiveScaffolder(dg.Scaffolder):
    """`dg scaffold defs kline_assets.KlineArchive <name>`: a defs.yaml with every attribute and its default."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        if request.scaffold_format != "yaml":
            raise dg.DagsterInvariantViolationError("KlineArchive is configured in defs.yaml: scaffold it as yaml")
        (request.target_path / "defs.yaml").write_text(scaffold_text(request.type_name))


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

    # the attributes are the settings (`kline_assets.settings.SETTINGS` describes each and holds its default)
    pairs: list[str] = field(default_factory=lambda: default_value("pairs"))  # market:BASE/QUOTE or market:*/QUOTE
    kinds: str = default_value("kinds")  # klines+mark+funding: the kinds of entries that name none
    data_root: str = default_value("data_root")
    log_dir: str = default_value("log_dir")
    align_tz: str = default_value("align_tz")
    start: str = default_value("start")
    source: str = default_value("source")  # auto | rest | archive
    spot_url: str = default_value("spot_url")
    futures_url: str = default_value("futures_url")
    coinm_url: str = default_value("coinm_url")
    archive_url: str = default_value("archive_url")
    hourly: bool = default_value("hourly")
    combine_after_backfill: bool = default_value("combine_after_backfill")
    live_sensor: bool = default_value("live_sensor")
    key_prefix: str | None = None
    defs_state: ResolvedDefsStateConfig = field(default_factory=no_refresh_on_load)
    _settings = None  # not an attribute: the settings `from_settings` was given

    @classmethod
    def from_settings(cls, settings: Settings) -> "KlineArchive":
        """The component of `settings` (by default the environment's, `load_settings`): our own code location.
        It builds from `settings` themselves, already checked, which also keep where they came from."""
        component = cls(**{s.name: _attribute(settings, s.name) for s in SETTINGS})
        component._settings = settings
        return component

    def settings(self) -> Settings:
        """The attributes checked as the variables are (`settings_from`): a bad one is one clear error at load."""
        if self._settings is not None:
            return self._settings
        try:
            return settings_from({s.name: getattr(self, s.name) for s in SETTINGS})
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


def _attribute(settings: Settings, name: str) -> str | bool | list[str]:
    value = getattr(settings, name)
    if isinstance(value, bool):
        return value
    return spelled(settings, name).split(",") if name == "pairs" else spelled(settings, name)


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
