"""A coverage calendar of a dataset: one square per local day, a row per weekday, a column per week,
a block per year. As PNG (a few lines of zlib, no plotting library) or as Markdown for asset metadata.

Colours: complete green, complete with exchange gaps amber, incomplete (today, or interrupted) blue,
no chunk grey, before the first stored day nothing. The PNG is drawn at twice its cell size (`SCALE`) in a
3x5 pixel font of capitals and digits: the dataset's name above, the month numbers above each year, and a
legend row below (each colour, its word and its count of days).
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from pathlib import Path

from kline_assets.store.manifest import Manifest

COMPLETE, GAPS, PARTIAL, MISSING = "complete", "gaps", "partial", "missing"
COLOURS = {COMPLETE: (46, 160, 67), GAPS: (227, 160, 8), PARTIAL: (56, 120, 220), MISSING: (205, 205, 205)}
EMOJI = {COMPLETE: "🟩", GAPS: "🟨", PARTIAL: "🟦", MISSING: "⬜"}
CELL, PAD, LEFT = 11, 2, 24
GLYPHS = {  # a 3x5 pixel font: each glyph's 15 pixels row by row (1: ink)
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111",
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010", "P": "110101110100100",
    "Q": "010101101110011", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
    "Y": "101101010010010", "Z": "111001010100111", "/": "001001010100100", "_": "000000000000111",
    "-": "000000111000000", ":": "000010000010000", ".": "000000000000010", " ": "000000000000000",
}
SCALE = 2  # each pixel drawn as SCALE x SCALE: readable on a screen at its natural size


def day_states(manifest: Manifest, today: dt.date) -> dict[dt.date, str]:
    entries = {dt.date.fromisoformat(e.partition): e for e in manifest.chunks.values()}
    if not entries:
        return {}
    first, last = min(entries), max(max(entries), min(today, max(entries)))
    states = {}
    for n in range((last - first).days + 1):
        day = first + dt.timedelta(n)
        e = entries.get(day)
        states[day] = MISSING if e is None else PARTIAL if not e.complete else GAPS if e.exchange_gaps else COMPLETE
    return states


def counts(states: dict[dt.date, str]) -> dict[str, int]:
    return {k: sum(1 for s in states.values() if s == k) for k in COLOURS}


def markdown(states: dict[dt.date, str], max_months: int = 36) -> str:
    """One line per month (the latest `max_months`), one square per day."""
    months: dict[str, list[str]] = {}
    for day in sorted(states):
        months.setdefault(f"{day:%Y-%m}", []).append(EMOJI[states[day]])
    c = counts(states)
    legend = " ".join(f"{EMOJI[k]} {k} {c[k]}" for k in COLOURS)
    lines = [f"`{m}` {''.join(v)}" for m, v in list(months.items())[-max_months:]]
    return legend + "\n\n" + "  \n".join(lines)


def _png(width: int, height: int, pixels: list[bytearray]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


TITLE_H, MONTHS_H, LEGEND_H = 14, 8, CELL + 2 * PAD  # the name above all, months above each year, legend
INK = (60, 60, 60)
WORDS = {COMPLETE: "COMPLETE", GAPS: "EXCHANGE GAPS", PARTIAL: "INCOMPLETE", MISSING: "MISSING"}


def png(states: dict[dt.date, str], title: str = "") -> bytes:
    """Years top to bottom, each with its two last digits at the left and the month numbers (1-12) above
    the week each month starts in; `title` (the dataset's name) above them, and below them the legend:
    each colour's square, its word and its count of days."""
    years = sorted({d.year for d in states}) or [dt.date.today().year]
    width = LEFT + 54 * CELL + PAD
    block = MONTHS_H + 7 * CELL + 3 * PAD
    height = TITLE_H + len(years) * block + LEGEND_H + PAD
    pixels = [bytearray(b"\xff" * (width * 3)) for _ in range(height)]

    def fill(x: int, y: int, w: int, h: int, rgb: tuple[int, int, int]) -> None:
        for yy in range(y, min(y + h, height)):
            row = pixels[yy]
            for xx in range(x, min(x + w, width)):
                row[3 * xx:3 * xx + 3] = bytes(rgb)

    def text(x: int, y: int, words: str, scale: int = 1) -> int:
        """`words` in the 3x5 font at (x, y), capitals; returns the x after it."""
        for ch in words.upper():
            for k, bit in enumerate(GLYPHS.get(ch, GLYPHS[" "])):
                if bit == "1":
                    fill(x + (k % 3) * scale, y + (k // 3) * scale, scale, scale, INK)
            x += 4 * scale
        return x

    text(PAD, PAD, title, scale=2)
    for i, year in enumerate(years):
        top = TITLE_H + PAD + i * block
        text(2, top + MONTHS_H + 2, str(year)[-2:], scale=2)  # "24" for 2024
        monday = dt.date(year, 1, 1) - dt.timedelta(days=dt.date(year, 1, 1).weekday())
        for month in range(1, 13):
            text(LEFT + (dt.date(year, month, 1) - monday).days // 7 * CELL, top, str(month))
        for day, state in states.items():
            if day.year != year:
                continue
            week = (day - monday).days // 7
            fill(LEFT + week * CELL, top + MONTHS_H + day.weekday() * CELL, CELL - 2, CELL - 2, COLOURS[state])
    x, y = LEFT, TITLE_H + len(years) * block + PAD
    for state, n in counts(states).items():
        fill(x, y, CELL - 2, CELL - 2, COLOURS[state])
        x = text(x + CELL + 1, y + 2, f"{WORDS[state]} {n}") + 2 * CELL
    return _png(width * SCALE, height * SCALE,
                [bytearray(b"".join(bytes(row[i:i + 3]) * SCALE for i in range(0, len(row), 3)))
                 for row in pixels for _ in range(SCALE)])


def write_png(states: dict[dt.date, str], path: Path, title: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(states, title))
    return path
