"""The chunk schema (docs/contract.md, "Schema") and the one conversion from the exchange's raw rows to it."""

from __future__ import annotations

from itertools import islice

import pyarrow as pa
import pyarrow.compute as pc

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


def impossible_values(table: pa.Table) -> pa.ChunkedArray | pa.Array:
    """Per row: some price, volume or count is NaN, infinite or negative (Binance never sends these)."""
    bad = None
    for name in NUMBERS:
        column = table.column(name)
        valid = pc.greater_equal(column, 0)  # false for negatives, null for NaN
        if pa.types.is_floating(column.type):
            valid = pc.and_(valid, pc.is_finite(column))
        invalid = pc.invert(pc.fill_null(valid, False))
        bad = invalid if bad is None else pc.or_(bad, invalid)
    return bad


def value_problem(table: pa.Table) -> str | None:
    """What makes a day's rows impossible as exchange data, naming the first minute (None: nothing):
    open times not strictly ascending (a duplicate, a wrong order), or `impossible_values`. They are
    never stored."""
    times = table.column("open_time")
    if table.num_rows > 1:
        steps = pc.subtract(times.slice(1), times.slice(0, table.num_rows - 1))
        bad = pc.index(pc.less_equal(steps, 0), True).as_py()
        if bad >= 0:
            return (f"open_time {ms_to_iso(times[bad + 1].as_py())} follows {ms_to_iso(times[bad].as_py())}: "
                    "duplicate or out-of-order rows")
    if table.num_rows:
        bad = pc.index(impossible_values(table), True).as_py()
        if bad >= 0:
            row = {n: table.column(n)[bad].as_py() for n in NUMBERS}
            odd = ", ".join(f"{n} {v}" for n, v in row.items() if not (isinstance(v, (int, float)) and 0 <= v < 1e308))
            return f"{odd} at {ms_to_iso(times[bad].as_py())}"
    return None
