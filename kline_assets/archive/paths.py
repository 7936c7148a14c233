"""Every path of the data layout (docs/contract.md, "Data layout") is computed here and nowhere else."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from kline_assets.settings import DatasetSpec

INTERVAL = "1m"
MANIFEST = "manifest.json"
CHUNK_RE = re.compile(r"^chunk_(\d{6})_(\d{8})\.parquet$")


@dataclass(frozen=True)
class DatasetPaths:
    data_root: Path
    spec: DatasetSpec

    @property
    def dir(self) -> Path:
        return dataset_dir(self.data_root, self.spec.exchange_id, self.spec.symbol)

    @property
    def chunks_dir(self) -> Path:
        return self.dir / "chunks"

    @property
    def manifest(self) -> Path:
        return manifest_file(self.dir)

    @property
    def lock(self) -> Path:
        return self.dir / ".manifest.lock"

    @property
    def combined_dir(self) -> Path:
        return self.dir / "combined"

    def combined_file(self, tz_suffix: str | None, index_range: tuple[int, int] | None = None) -> Path:
        """`_all` holds every chunk; an index range goes to its own file, never over `_all`."""
        tail = f"_{tz_suffix}" if tz_suffix else ""
        span = "all" if index_range is None else f"{index_range[0]:06d}-{index_range[1]:06d}"
        return self.combined_dir / f"{self.spec.symbol}_{INTERVAL}_{span}{tail}.parquet"

    @staticmethod
    def chunk_name(index: int, day: dt.date) -> str:
        return f"chunk_{index:06d}_{day:%Y%m%d}.parquet"

    def chunk_relpath(self, index: int, day: dt.date) -> str:
        return f"chunks/{self.chunk_name(index, day)}"

    def resolve(self, relpath: str) -> Path:
        return self.dir / relpath


def dataset_dir(data_root: str | Path, exchange_id: str, symbol: str, interval: str = INTERVAL) -> Path:
    return Path(data_root) / exchange_id / symbol / interval


def hourly_file(data_root: str | Path, spec: DatasetSpec, partition: str) -> Path:
    """A day of the example asset klines_1h (kline_assets.defs.hourly)."""
    return dataset_dir(data_root, spec.exchange_id, spec.symbol, "1h") / f"{partition}.parquet"


def manifest_file(dataset_dir: Path) -> Path:
    return Path(dataset_dir) / MANIFEST


def log_file(log_dir: str | Path) -> Path:
    return Path(log_dir) / "loader.log"


def symbols_cache(data_root: Path) -> Path:
    """Which (market, symbol) the exchange lists, as learnt from exchangeInfo."""
    return Path(data_root) / ".kline_assets" / "symbols.json"


def listing_cache(data_root: str | Path, market: str) -> Path:
    """A market's symbols and their status, as learnt from exchangeInfo (`binance.listing`)."""
    return Path(data_root) / ".kline_assets" / f"listing_{market}.json"


def local_symbols(data_root: str | Path, exchange_id: str) -> list[str]:
    """Symbols of one exchange id that have a dataset (a manifest) under the data root."""
    return sorted(p.parent.parent.name for p in (Path(data_root) / exchange_id).glob(f"*/{INTERVAL}/{MANIFEST}"))


def find_datasets(data_root: Path) -> list[Path]:
    """Dataset folders under a data root, found by their manifest."""
    if not data_root.is_dir():
        return []
    return sorted(p.parent for p in data_root.glob(f"*/*/{INTERVAL}/{MANIFEST}"))
