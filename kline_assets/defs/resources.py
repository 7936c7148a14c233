"""Dagster resources: the exchange (ccxt) and the archive (a folder or an S3 prefix)."""

from __future__ import annotations

import datetime as dt
import threading

import dagster as dg
from pydantic import PrivateAttr

from kline_assets.binance.archive import ArchiveClient
from kline_assets.binance.client import BinanceClient
from kline_assets.binance.days import DayStream
from kline_assets.binance.limiter import limiter_for
from kline_assets.errors import ChunkUnavailable
from kline_assets.logs import setup_logging
from kline_assets.settings import MARKETS, DatasetSpec, Settings
from kline_assets.store.backend import Backend, open_root
from kline_assets.store.dataset import DatasetStore, manifest_at
from kline_assets.store.paths import MANIFEST, dataset_dir
from kline_assets.timezones import AlignZone, parse_zone

_CLIENTS: dict[tuple, BinanceClient] = {}
_CLIENTS_LOCK = threading.Lock()

# Pages that minimise weight per day (issue #7): futures 499 rows cost 2 (6 per day) against 10 for
# 1500; spot costs 2 whatever the size, so the largest page wins.
DEFAULT_PAGE = {"spot": 1000, "futures": 499}


class ExchangeResource(dg.ConfigurableResource):
    """Binance REST origins and how hard to try; clients are shared per process and origin (their weight
    limiter is per origin in any case), so every run of a process plans from one count. In a run on a
    Postgres instance, that count (and the ban memory) is the instance's: shared by every worker on every
    machine (`binance.pgwindow`); elsewhere it is the machine's."""

    spot_url: str = MARKETS["spot"].default_origin
    futures_url: str = MARKETS["futures"].default_origin
    timeout_ms: int = 30_000  # the whole of one request: connect, headers and body (`binance.http`)
    max_attempts: int = 8
    workers: int = 8  # days fetched at once: spot's budget needs ~5 requests in flight at 100 ms latency
    archive_workers: int = 32  # days downloaded at once from the archive (no budget: latency is the limit)
    source: str = "auto"  # auto | rest | archive
    archive_url: str = "https://data.binance.vision"
    spot_page: int = DEFAULT_PAGE["spot"]
    futures_page: int = DEFAULT_PAGE["futures"]
    _shared_url: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._shared_url = shared_budget_url(context.instance)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> ExchangeResource:
        return cls(spot_url=settings.spot_url, futures_url=settings.futures_url, source=settings.source,
                   archive_url=settings.archive_url, **overrides)

    def archive(self, market: str) -> ArchiveClient | None:
        """The public archive for closed days, unless the source is REST only: one per market and run, so
        an unreachable archive is given up once for all the run's datasets (`ArchiveClient`)."""
        return None if self.source == "rest" else ArchiveClient(market, self.archive_url)

    def day_stream(self, store: DatasetStore, days: list[dt.date], archive: ArchiveClient | None) -> DayStream:
        """The days of one dataset, from the sources this resource is set to (`archive`: this run's)."""
        market = store.spec.market
        return DayStream(store, self.client(market), days, page=self.page(market),
                         workers=self.archive_workers if archive else self.workers, archive=archive,
                         archive_only=self.source == "archive")

    def origin(self, market: str) -> str:
        return (self.spot_url if market == "spot" else self.futures_url).rstrip("/")

    def page(self, market: str) -> int:
        return self.spot_page if market == "spot" else self.futures_page

    def client(self, market: str) -> BinanceClient:
        key = (market, self.origin(market), self.timeout_ms, self.max_attempts)
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                _CLIENTS[key] = BinanceClient(MARKETS[market], self.origin(market), timeout_ms=self.timeout_ms,
                                              max_attempts=self.max_attempts)
            client = _CLIENTS[key]
        if self._shared_url:  # the process's limiter of this origin now counts in the instance's Postgres
            limiter_for(client.budget_key, MARKETS[market].default_budget, self._shared_url)
        return client


def shared_budget_url(instance: dg.DagsterInstance | None) -> str | None:
    """The Postgres URL of a dagster-postgres instance (its run storage's `postgres_url`), else None."""
    url = getattr(getattr(instance, "run_storage", None), "postgres_url", None) if instance else None
    return url if isinstance(url, str) and url.startswith("postgres") else None


class StoreResource(dg.ConfigurableResource):
    """Where datasets live (a folder or `s3://bucket/prefix`) and how their days are cut (alignment zone,
    first date)."""

    data_root: str = "data"
    align_tz: str = "UTC"
    start: str = "2020-01-01"
    log_dir: str = "logs"  # loader.log: opened by the runs that use the archive, never while loading
    _backend: Backend | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        setup_logging(self.log_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreResource:
        return cls(data_root=settings.data_root, align_tz=settings.align_tz.name, start=settings.start.isoformat(),
                   log_dir=settings.log_dir)

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
        manifest_key = f"{dataset_dir(exchange_id, symbol)}/{MANIFEST}"
        try:
            manifest = manifest_at(self.backend(), manifest_key)
        except FileNotFoundError:
            raise ChunkUnavailable(f"{exchange_id}/{symbol} has no dataset under {self.data_root} (no "
                                   f"{self.backend().uri(manifest_key)}); backfill it first") from None
        return self.store(DatasetSpec(manifest.market, manifest.pair))

    def store(self, spec: DatasetSpec) -> DatasetStore:
        """The one way to open a dataset: a stored dataset keeps its own start date."""
        return DatasetStore(self.backend(), spec, self.zone, dt.date.fromisoformat(self.start))
