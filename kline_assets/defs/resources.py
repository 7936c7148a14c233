"""Dagster resources: the exchange (ccxt) and the archive (a folder or an S3 prefix)."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
from pydantic import Field, PrivateAttr

from kline_assets.binance import shared
from kline_assets.binance.archive import ArchiveClient
from kline_assets.binance.client import BinanceClient
from kline_assets.binance.days import DayStream
from kline_assets.binance.encoding import Encoder
from kline_assets.binance.paging import DEFAULT_PAGE
from kline_assets.defs.names import prefixed
from kline_assets.errors import ChunkUnavailable
from kline_assets.logs import setup_logging
from kline_assets.settings import BY_NAME, KINDS, DatasetSpec, Settings, parse_start_date, resource_values
from kline_assets.store.backend import Backend, open_root
from kline_assets.store.dataset import DatasetStore, manifest_at
from kline_assets.store.paths import MANIFEST, dataset_dir
from kline_assets.timezones import AlignZone, parse_zone


def settings_fields(resource: type[dg.ConfigurableResource], settings: Settings, env_vars: bool = False) -> dict:
    """The fields of `resource` that hold settings (`SETTINGS` entries whose home it is), from `settings`.

    `env_vars`, for the resources handed to Dagster: when `settings` are the environment's, a field whose
    variable holds exactly its value is `dg.EnvVar` of that variable, so Dagster reads it when a run starts
    and the UI's resource view names the variable. Only where Dagster resolves it: read directly, such a
    field is the variable's name. The value cannot differ from the definitions' (partitions, datasets):
    the process that runs the run loads the definitions from the same environment.
    """
    values = {name: value for name, value in resource_values(settings).items() if name in resource.model_fields}
    if not (env_vars and settings.from_environment):
        return values
    return {name: dg.EnvVar(BY_NAME[name].variable) if os.environ.get(BY_NAME[name].variable) == value else value
            for name, value in values.items()}


def run_resource(context: dg.OpExecutionContext, settings: Settings, name: str):
    """The run's `name` resource (`STORE`, `EXCHANGE`) under the settings' key prefix, refused when it no
    longer holds the settings the definitions were built with (the partitions' zone, where data goes).

    Why: Dagster replaces a resource's whole config with a run's config for it, so a launchpad's
    `workers: 2` alone sets `data_root` and the origins back to their defaults; such a run would write
    elsewhere, or cut other days, than the definitions say. Refused before anything is written.
    """
    key = prefixed(settings.key_prefix, name)
    resource = getattr(context.resources, key)
    held = settings_fields(type(resource), settings)
    changed = [f"{field} {getattr(resource, field)!r} (the code location's: {value!r})"
               for field, value in held.items() if getattr(resource, field) != value]
    if changed:
        raise dg.Failure(f"the run's config changed the {key} resource's {'; '.join(changed)}. Dagster replaces all "
                         "of a resource's config with a run's, so give every field there, or change the KLINE_* "
                         "variables (a component's attributes) and reload the code location")
    return resource


def setting_field(name: str):
    """A resource field holding a setting: its default, description and variable as `SETTINGS` declares
    them (the UI's resource view shows them)."""
    setting = BY_NAME[name]
    return Field(default=setting.default, description=f"{setting.description} ({setting.variable})")


class ExchangeResource(dg.ConfigurableResource):
    """Binance REST origins and how hard to try; clients are shared per process and origin (their weight
    limiter is per origin in any case), so every run of a process plans from one count. In a run on a
    Postgres instance, that count (and the ban memory) is the instance's: shared by every worker on every
    machine (`binance.pgwindow`); elsewhere it is the machine's."""

    spot_url: str = setting_field("spot_url")
    futures_url: str = setting_field("futures_url")
    coinm_url: str = setting_field("coinm_url")
    source: str = setting_field("source")
    archive_url: str = setting_field("archive_url")
    timeout_ms: int = Field(default=shared.DEFAULT_TIMEOUT_MS,
                            description="The whole of one request: connect, headers and body")
    max_attempts: int = Field(default=shared.DEFAULT_ATTEMPTS, description="Tries of one request before the day fails")
    # spot's budget needs ~5 requests in flight at 100 ms latency; the archive has no budget (latency is the limit)
    workers: int = Field(default=8, description="Days fetched at once from REST")
    # 16, not 32: at 50 ms from the archive 16 keep ~290 days/s in flight, far above what Dagster records a
    # second, and each extra thread costs the recording thread its share of the interpreter (a 1,460-day
    # backfill: 37-48 s with 32, 33-35 s with 16, bench/peer.py)
    archive_workers: int = Field(default=16, description="Days downloaded at once from the public archive")
    spot_page: int = Field(default=DEFAULT_PAGE["spot"], description="Rows per spot klines request")
    futures_page: int = Field(default=DEFAULT_PAGE["futures"], description="Rows per futures klines request "
                                                                           "(499 costs 2 weight, 1500 costs 10)")
    _shared_url: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._shared_url = shared_budget_url(context.instance)

    @classmethod
    def from_settings(cls, settings: Settings, env_vars: bool = False, **overrides) -> ExchangeResource:
        """The exchange of `settings` (`env_vars`: see `settings_fields`), `overrides` for the other fields."""
        return cls(**settings_fields(cls, settings, env_vars), **overrides)

    def archive(self, market: str) -> ArchiveClient | None:
        """The public archive for closed days, unless the source is REST only: one per market and run, so
        an unreachable archive is given up once for all the run's datasets (`ArchiveClient`)."""
        return None if self.source == "rest" else ArchiveClient(market, self.archive_url)

    def day_stream(self, store: DatasetStore, days: list[dt.date], archive: ArchiveClient | None,
                   encoder: Encoder | None = None) -> DayStream:
        """The days of one dataset, from the sources this resource is set to (`archive` and `encoder`: this
        run's)."""
        market = store.spec.market
        return DayStream(store, self.client(market), days, page=self.page(market),
                         workers=self.archive_workers if archive else self.workers, archive=archive,
                         archive_only=self.source == "archive", encoder=encoder)

    def origin(self, market: str) -> str:
        return getattr(self, f"{market}_url").rstrip("/")

    def page(self, market: str) -> int:
        return self.spot_page if market == "spot" else self.futures_page

    def client(self, market: str) -> BinanceClient:
        """The process's client (`binance.shared`); on a Postgres instance its count is the instance's."""
        return shared.client(market, self.origin(market), self.timeout_ms, self.max_attempts, self._shared_url)


def shared_budget_url(instance: dg.DagsterInstance | None) -> str | None:
    """The Postgres URL of a dagster-postgres instance (its run storage's `postgres_url`), else None."""
    url = getattr(getattr(instance, "run_storage", None), "postgres_url", None) if instance else None
    return url if isinstance(url, str) and url.startswith("postgres") else None


class StoreResource(dg.ConfigurableResource):
    """Where datasets live (a folder or `s3://bucket/prefix`) and how their days are cut (alignment zone,
    first date)."""

    data_root: str = setting_field("data_root")
    align_tz: str = setting_field("align_tz")
    start: str = setting_field("start")
    # loader.log: opened by the runs that use the store, never while loading
    log_dir: str = setting_field("log_dir")
    _backend: Backend | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        setup_logging(self.log_dir)

    @classmethod
    def from_settings(cls, settings: Settings, env_vars: bool = False) -> StoreResource:
        """The store of `settings` (`env_vars`: see `settings_fields`)."""
        return cls(**settings_fields(cls, settings, env_vars))

    @property
    def zone(self) -> AlignZone:
        return parse_zone(self.align_tz)

    def backend(self) -> Backend:
        """Opened once per resource: every dataset of a run shares it (on S3: one client, one connection pool)."""
        if self._backend is None:
            self._backend = open_root(self.data_root)
        return self._backend

    def store_for_key(self, key: dg.AssetKey) -> DatasetStore:
        """The dataset behind a `klines_1m` key (`[key prefix, exchange_id, PAIR_TOKEN, "klines_1m"]`, the prefix
        only under a `KlineArchive` that has one); its pair is in its manifest."""
        exchange_id, symbol = key.path[-3], key.path[-2]
        kind = next(k for k in KINDS.values() if k.asset == key.path[-1])
        manifest_key = f"{dataset_dir(exchange_id, symbol, kind.folder)}/{MANIFEST}"
        try:
            manifest = manifest_at(self.backend(), manifest_key)
        except FileNotFoundError:
            raise ChunkUnavailable(f"{exchange_id}/{symbol} has no dataset under {self.data_root} (no "
                                   f"{self.backend().uri(manifest_key)}); backfill it first") from None
        return self.store(manifest.spec)

    def store(self, spec: DatasetSpec) -> DatasetStore:
        """The one way to open a dataset: a stored dataset keeps its own start date."""
        return DatasetStore.open(self.backend(), spec, self.zone, parse_start_date(self.start))
