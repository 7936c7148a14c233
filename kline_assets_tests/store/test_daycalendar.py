"""The coverage calendar: day states from a manifest, a valid PNG, Markdown with a legend."""

import datetime as dt
import struct
import zlib

from kline_assets.store.daycalendar import (
    COLOURS,
    COMPLETE,
    GAPS,
    INK,
    LEGEND_H,
    MISSING,
    PARTIAL,
    SCALE,
    TITLE_H,
    day_states,
    markdown,
    png,
)
from kline_assets.store.manifest import Manifest
from kline_assets_tests.helpers import FUT, chunk_entry


def pixels(data: bytes) -> bytes:
    return zlib.decompress(data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8])


def test_states_png_and_markdown():
    m = Manifest.new(FUT, "UTC", dt.date(2024, 1, 1))
    d = dt.date(2024, 1, 1)
    m.chunks = {1: chunk_entry(1, d), 2: chunk_entry(2, d + dt.timedelta(1), gaps=[(0, 60_000)]),
                4: chunk_entry(4, d + dt.timedelta(3), complete=False)}
    states = day_states(m, dt.date(2024, 1, 4))
    assert [states[d + dt.timedelta(n)] for n in range(4)] == [COMPLETE, GAPS, MISSING, PARTIAL]
    data = png(states, "binanceusdm/BTCUSDT")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1200  # drawn at twice its cell size
    raw, row = pixels(data), 1 + 3 * width
    assert len(raw) == height * row
    assert bytes(INK) in raw[:TITLE_H * SCALE * row]  # the dataset's name above
    assert bytes(INK) not in pixels(png(states))[:TITLE_H * SCALE * row]  # no name given, none drawn
    legend = raw[-LEGEND_H * SCALE * row:]  # the last rows: each colour's square, its word and its count
    assert all(bytes(rgb) in legend for rgb in COLOURS.values()) and bytes(INK) in legend
    md = markdown(states)
    assert "complete 1" in md and "missing 1" in md and "`2024-01`" in md
