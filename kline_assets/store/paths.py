"""Every key of the data layout (docs/contract.md, "Data layout") is computed here and nowhere else.

Keys are relative to the data root and '/'-separated, the same for a folder and an S3 prefix
(`store.backend` turns them into paths or object names)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from kline_assets.settings import KINDS, DatasetSpec

INTERVAL = "1m"
MANIFEST = "manifest.json"
# chunk_<index>_<local date>[_<version>].parquet: names without a version are from before versioned names
CHUNK_RE = re.compile(r"^chunk_(\d{6})_(\d{8})(?:_([0-9a-f]{8}))?\.parquet$")
META = ".kline_assets"
KIND_OF_FOLDER = {k.folder: k.name for k in KINDS.values()}  # a dataset folder's last part -> its kind


@dataclass(frozen=True)
class DatasetPaths:
    """Keys of one dataset, relative to the data root ('/'-separated: a folder or an S3 prefix)."""

    spec: DatasetSpec

    @property
    def dir(self) -> str:
        return dataset_dir(self.spec.exchange_id, self.spec.symbol, self.spec.kind_info.folder)

    @property
    def chunks_dir(self) -> str:
        return f"{self.dir}/chunks"

    @property
    def manifest(self) -> str:
        return f"{self.dir}/{MANIFEST}"

    @property
    def combined_dir(self) -> str:
        return f"{self.dir}/combined"

    def combined_file(self, tz_suffix: str | None, index_range: tuple[int, int] | None = None) -> str:
        """`_all` holds every chunk; an index range goes to its own file, never over `_all`."""
        tail = f"_{tz_suffix}" if tz_suffix else ""
        span = "all" if index_range is None else f"{index_range[0]:06d}-{index_range[1]:06d}"
        return f"{self.combined_dir}/{self.spec.symbol}_{self.spec.kind_info.folder}_{span}{tail}.parquet"

    @staticmethod
    def chunk_name(index: int, day: dt.date, sha256: str) -> str:
        """Versioned by its content: a rewritten day gets a new name, so no object a manifest names is
        ever overwritten (docs/contract.md)."""
        return f"chunk_{index:06d}_{day:%Y%m%d}_{sha256[:8]}.parquet"

    def chunk_relpath(self, index: int, day: dt.date, sha256: str) -> str:
        return f"chunks/{self.chunk_name(index, day, sha256)}"

    def chunk_prefix(self, index: int) -> str:
        """Every version of one day's chunk (and nothing of another day) starts with this key."""
        return f"{self.chunks_dir}/chunk_{index:06d}_"

    def resolve(self, relpath: str) -> str:
        return f"{self.dir}/{relpath}"


def names_day(name: str, index: int, day: dt.date) -> bool:
    """Does a chunk file name (versioned or not) name this index and day?"""
    match = CHUNK_RE.match(name)
    return bool(match) and int(match.group(1)) == index and match.group(2) == f"{day:%Y%m%d}"


def dataset_dir(exchange_id: str, symbol: str, folder: str = INTERVAL) -> str:
    """A dataset's folder: `folder` is its kind's (`1m` for trade klines, `mark_1m`, ...)."""
    return f"{exchange_id}/{symbol}/{folder}"


def hourly_file(spec: DatasetSpec, partition: str) -> str:
    """A day of the example asset klines_1h (kline_assets.defs.hourly)."""
    return f"{dataset_dir(spec.exchange_id, spec.symbol, '1h')}/{partition}.parquet"


def log_file(log_dir: str | Path) -> Path:
    return Path(log_dir) / "loader.log"


def symbols_cache() -> str:
    """Which (market, symbol) the exchange lists, as learnt from exchangeInfo."""
    return f"{META}/symbols.json"


def listing_cache(market: str) -> str:
    """A market's symbols and their status, as learnt from exchangeInfo (`binance.listing`)."""
    return f"{META}/listing_{market}.json"
