"""The chunk schemas (docs/contract.md, "Schema"; SPEC.md, "Dataset kinds") and the one conversion from the
exchange's raw rows to each: klines (every kind but funding) and funding events."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pyarrow as pa

from kline_assets.settings import Kind
from kline_assets.timezones import ms_to_iso

COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("open_time", pa.int64()),
    ("open", pa.float64()),
    ("high", pa.float64()),
    ("low", pa.float64()),
    ("close", pa.float64()),
    ("volume", pa.float64()),
    ("close_time", pa.int64()),
    ("quote_volume", pa.float64()),
    ("trades", pa.int64()),
    ("taker_base_volume", pa.float64()),
    ("taker_quote_volume", pa.float64()),
    ("ignore", pa.string()),
)
SCHEMA = pa.schema([pa.field(name, typ) for name, typ in COLUMNS])
COLUMN_NAMES = [name for name, _ in COLUMNS]


def _column(values: tuple, typ: pa.DataType) -> pa.Array:
    """Binance sends prices as decimal strings; Arrow's cast parses them exactly like float()."""
    if typ == pa.string():
        return pa.array([v if isinstance(v, str) else str(v) for v in values], pa.string())
    try:
        return pa.array(values).cast(typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        convert = int if pa.types.is_integer(typ) else float
        return pa.array([convert(v) for v in values], typ)


def rows_to_table(rows: list[list]) -> pa.Table:
    if not rows:
        return SCHEMA.empty_table()
    columns = list(islice(zip(*rows, strict=False), 12))  # rows may carry more than the 12 fields
    if len(columns) < 12:
        raise ValueError(f"a kline row has {len(columns)} fields, not 12")
    return pa.Table.from_arrays([_column(c, t) for c, (_, t) in zip(columns, COLUMNS, strict=True)], schema=SCHEMA)


# a funding chunk: one local day of events (SPEC.md, "Dataset kinds and COIN-M"); the archive's monthly
# files have no mark price, REST has no interval: those are null where the source has none
FUNDING_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("funding_time", pa.int64()),
    ("funding_rate", pa.float64()),
    ("mark_price", pa.float64()),
    ("funding_interval_hours", pa.int64()),
)
FUNDING_SCHEMA = pa.schema([pa.field(name, typ) for name, typ in FUNDING_COLUMNS])


def schema_of(kind: Kind) -> pa.Schema:
    return FUNDING_SCHEMA if kind.events else SCHEMA


def funding_table(events: list[tuple[int, str | float, str | float | None, int | None]]) -> pa.Table:
    """(funding_time, funding_rate, mark_price or None, interval hours or None) rows, the rate and price as
    the exchange sent them (decimal strings, parsed like float())."""
    columns = list(zip(*events, strict=True)) if events else [(), (), (), ()]
    arrays = [pa.array([int(v) for v in columns[0]], pa.int64()),
              pa.array([float(v) for v in columns[1]], pa.float64()),
              pa.array([None if v in (None, "") else float(v) for v in columns[2]], pa.float64()),
              pa.array([None if v in (None, "") else int(v) for v in columns[3]], pa.int64())]
    return pa.Table.from_arrays(arrays, schema=FUNDING_SCHEMA)


def schema_problem(schema: pa.Schema, kind: Kind | None = None) -> str | None:
    """None when `schema` has the contract's names, order and types (of `kind`: klines by default)."""
    got = [(f.name, str(f.type)) for f in schema]
    want = [(f.name, str(f.type)) for f in (schema_of(kind) if kind else SCHEMA)]
    return None if got == want else f"schema {got} differs from {want}"


NUMBERS = ("open", "high", "low", "close", "volume", "quote_volume", "trades", "taker_base_volume",
           "taker_quote_volume")


PRICES = ("open", "high", "low", "close")


def impossible_values(table: pa.Table, signed: bool = False) -> np.ndarray:
    """Per row: some price, volume or count is NaN, infinite, negative or missing (Binance sends none of
    these; with `signed`, prices may be negative: the premium index). NumPy over whole columns: this runs
    for every day fetched, in up to 32 threads at once."""
    bad = np.zeros(table.num_rows, dtype=bool)
    for name in NUMBERS:
        column = table.column(name)
        values = column.to_numpy()
        if signed and name in PRICES:
            bad |= ~(np.abs(values) < np.inf)  # NaN compares false
        else:
            bad |= ~((values >= 0) & (values < np.inf))  # NaN compares false: caught with the negatives
        if column.null_count:
            bad |= column.is_null().to_numpy(zero_copy_only=False)
    return bad


def impossible_events(table: pa.Table) -> np.ndarray:
    """Per funding event: a rate that is NaN, infinite or missing, a mark price that is not positive and
    finite (null is allowed: the archive has none), an interval that is not 1..24 hours (null allowed)."""
    rate = table.column("funding_rate")
    bad = ~(np.abs(rate.to_numpy(zero_copy_only=False)) < np.inf) | rate.is_null().to_numpy(zero_copy_only=False)
    price = table.column("mark_price").to_numpy(zero_copy_only=False)  # nulls read as NaN
    bad |= table.column("mark_price").is_valid().to_numpy(zero_copy_only=False) & ~((price > 0) & (price < np.inf))
    hours = table.column("funding_interval_hours").fill_null(8).to_numpy(zero_copy_only=False)
    return bad | (hours < 1) | (hours > 24)


def value_problem(table: pa.Table, kind: Kind) -> str | None:
    """What makes a day's rows impossible as exchange data, naming the first minute or event (None:
    nothing): times not strictly ascending (a duplicate, a wrong order), or impossible values
    (`impossible_values`, `impossible_events`). They are never stored."""
    column = kind.time_column
    times = table.column(column).to_numpy()
    backwards = np.flatnonzero(np.diff(times) <= 0)
    if len(backwards):
        at = backwards[0]
        return (f"{column} {ms_to_iso(int(times[at + 1]))} follows {ms_to_iso(int(times[at]))}: "
                "duplicate or out-of-order rows")
    if kind.events:
        bad = np.flatnonzero(impossible_events(table))
        if len(bad):
            row = table.slice(int(bad[0]), 1).to_pylist()[0]
            return f"the event {row} at {ms_to_iso(int(times[bad[0]]))}"
        return None
    signed = kind.signed
    bad = np.flatnonzero(impossible_values(table, signed))
    if len(bad):
        row = {n: table.column(n)[int(bad[0])].as_py() for n in NUMBERS}
        low = -1e308 if signed else 0
        odd = ", ".join(f"{n} {v}" for n, v in row.items()
                        if not (isinstance(v, (int, float)) and (low if n in PRICES else 0) <= v < 1e308))
        return f"{odd} at {ms_to_iso(int(times[bad[0]]))}"
    return None
