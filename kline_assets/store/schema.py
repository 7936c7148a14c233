"""The chunk schema (docs/contract.md, "Schema") and the one conversion from the exchange's raw rows to it."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pyarrow as pa

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


def schema_problem(schema: pa.Schema) -> str | None:
    """None when `schema` has the contract's names, order and types."""
    got = [(f.name, str(f.type)) for f in schema]
    want = [(n, str(t)) for n, t in COLUMNS]
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


def value_problem(table: pa.Table, signed: bool = False) -> str | None:
    """What makes a day's rows impossible as exchange data, naming the first minute (None: nothing):
    open times not strictly ascending (a duplicate, a wrong order), or `impossible_values`. They are
    never stored."""
    times = table.column("open_time").to_numpy()
    backwards = np.flatnonzero(np.diff(times) <= 0)
    if len(backwards):
        at = backwards[0]
        return (f"open_time {ms_to_iso(int(times[at + 1]))} follows {ms_to_iso(int(times[at]))}: "
                "duplicate or out-of-order rows")
    bad = np.flatnonzero(impossible_values(table, signed))
    if len(bad):
        row = {n: table.column(n)[int(bad[0])].as_py() for n in NUMBERS}
        low = -1e308 if signed else 0
        odd = ", ".join(f"{n} {v}" for n, v in row.items()
                        if not (isinstance(v, (int, float)) and (low if n in PRICES else 0) <= v < 1e308))
        return f"{odd} at {ms_to_iso(int(times[bad[0]]))}"
    return None
