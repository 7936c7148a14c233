"""manifest.json: the dataset's commit point (docs/contract.md, "manifest.json").

A chunk file belongs to the dataset if and only if an entry here names it with a matching sha256.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from kline_assets.errors import BadInput
from kline_assets.settings import DatasetSpec

MANIFEST_VERSION = 1


@dataclass
class ChunkEntry:
    index: int
    partition: str  # local date, YYYY-MM-DD
    file: str  # relative to the dataset folder
    start_ms: int
    end_ms: int
    rows: int
    first_open_time: int | None
    last_open_time: int | None
    sha256: str
    bytes: int
    complete: bool
    exchange_gaps: list[list[int]]
    written_at: str
    # Everything before this instant is either stored or a confirmed gap; live runs resume here.
    covered_until_ms: int = 0
    source: str = "rest"  # rest | archive
    source_sha256: str | None = None  # archive days: the published CHECKSUM of each UTC file, comma-joined

    @property
    def gap_minutes(self) -> int:
        return sum((b - a) // 60_000 for a, b in self.exchange_gaps)


@dataclass
class Manifest:
    exchange_id: str
    market: str
    symbol: str
    pair: str
    align_tz: str
    start: str
    interval: str = "1m"
    kind: str = "klines"  # of the data (`settings.KINDS`); manifests written before kinds hold klines
    version: int = MANIFEST_VERSION
    chunks: dict[int, ChunkEntry] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # fields added by later versions or other tools, kept as is

    @classmethod
    def new(cls, spec: DatasetSpec, align_tz: str, start: dt.date) -> Manifest:
        return cls(spec.exchange_id, spec.market, spec.symbol, spec.pair, align_tz, start.isoformat(), kind=spec.kind)

    @property
    def spec(self) -> DatasetSpec:
        return DatasetSpec(self.market, self.pair, self.kind)

    @property
    def start_date(self) -> dt.date:
        return dt.date.fromisoformat(self.start)

    def entry_for(self, day: dt.date) -> ChunkEntry | None:
        return self.chunks.get(self.index_of(day))

    def index_of(self, day: dt.date) -> int:
        return (day - self.start_date).days + 1

    def to_json(self) -> bytes:
        doc = {
            **self.extra,
            "version": self.version,
            "exchange_id": self.exchange_id,
            "market": self.market,
            "symbol": self.symbol,
            "pair": self.pair,
            "interval": self.interval,
            "kind": self.kind,
            "align_tz": self.align_tz,
            "start": self.start,
            "updated_at": utc_now_iso(),
            # the entries' own dicts: `asdict` deep-copies, ~20x slower over thousands of entries
            "chunks": [vars(self.chunks[i]) for i in sorted(self.chunks)],
        }
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        """BadInput, naming `where`, when the bytes are not a manifest of ours."""
        try:
            doc = json.loads(data)
            known = set(ChunkEntry.__dataclass_fields__)
            for name in ("exchange_id", "market", "symbol", "pair", "align_tz", "start"):
                _expect(doc, name, (str,))
            dt.date.fromisoformat(doc["start"])
            if not isinstance(doc["chunks"], list):
                raise TypeError("chunks is not a list")
            chunks = {}
            for c in doc["chunks"]:
                entry = ChunkEntry(**{k: v for k, v in c.items() if k in known})
                _check_entry(entry)
                chunks[entry.index] = entry
            core = {"version", "exchange_id", "market", "symbol", "pair", "interval", "kind", "align_tz", "start",
                    "chunks"}
            return cls(
                exchange_id=doc["exchange_id"],
                market=doc["market"],
                symbol=doc["symbol"],
                pair=doc["pair"],
                align_tz=doc["align_tz"],
                start=doc["start"],
                interval=doc.get("interval", "1m"),
                kind=doc.get("kind", "klines"),
                version=int(doc.get("version", MANIFEST_VERSION)),
                chunks=chunks,
                extra={k: v for k, v in doc.items() if k not in core | {"updated_at"}},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"{where} is not a kline-assets manifest ({exc})") from None


_INT, _OPT_INT, _STR = (int,), (int, type(None)), (str,)
_ENTRY_TYPES = tuple({"index": _INT, "partition": _STR, "file": _STR, "start_ms": _INT, "end_ms": _INT, "rows": _INT,
                      "first_open_time": _OPT_INT, "last_open_time": _OPT_INT, "sha256": _STR, "bytes": _INT,
                      "complete": (bool,), "exchange_gaps": (list,), "written_at": _STR, "covered_until_ms": _INT,
                      "source": _STR, "source_sha256": (str, type(None))}.items())


def _expect(doc: dict, name: str, types: tuple) -> None:
    value = doc[name]
    if not isinstance(value, types) or ((value is True or value is False) and bool not in types):
        raise TypeError(f"{name} is {value!r}")


def _check_entry(entry: ChunkEntry) -> None:
    """Field types, a date for a partition, and a file inside the dataset folder: a manifest that says
    otherwise is not ours (one clear line, never a traceback later on). Read on every commit: kept cheap."""
    fields = vars(entry)
    for name, types in _ENTRY_TYPES:
        _expect(fields, name, types)
    dt.date.fromisoformat(entry.partition)
    if entry.file.startswith(("/", "\\")) or ".." in entry.file.replace("\\", "/").split("/"):
        raise ValueError(f"file {entry.file!r} is outside the dataset folder")
    for gap in entry.exchange_gaps:
        if not (type(gap) is list and len(gap) == 2 and type(gap[0]) is int and type(gap[1]) is int):
            raise TypeError(f"exchange_gaps of {entry.partition} are not [from_ms, to_ms) pairs")


def utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
