"""Continuity, integrity and sanity of one day's chunk: pure functions over a table and its entry; and
coverage, of the whole dataset, from its manifest alone.

They return numbers, not just a verdict, so the UI and `verify` can say how much is wrong and where.
Early Binance data has open times off the minute; those are stored as sent and flagged here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kline_assets.settings import KINDS, Kind
from kline_assets.store.dataset import sha256_bytes
from kline_assets.store.manifest import ChunkEntry, Manifest
from kline_assets.store.schema import impossible_events, impossible_values, schema_problem
from kline_assets.timezones import MINUTE_MS, ms_to_iso

# the check names, as Dagster shows them and `verify` reports them
CONTINUITY, INTEGRITY, SANITY = "continuity", "integrity", "sanity"
CHECK_NAMES = (CONTINUITY, INTEGRITY, SANITY)  # the checks of one day
COVERAGE = "coverage"  # the check of the whole dataset
STALLED_MS = 10 * 60_000  # today's chunk this far behind the clock: the live updates stopped
HOUR_MS = 3_600_000
# funding: an event's time is a few ms after its hour; a minute later its absence is sure. A live funding
# day is asked again only once an hour has passed (`binance.days`), so it stalls after more than that.
FUNDING_SLACK_MS = 60_000
FUNDING_STALLED_MS = HOUR_MS + STALLED_MS
MAX_INTERVAL_H = 8  # Binance's longest funding interval, and its default


@dataclass
class Outcome:
    passed: bool
    metadata: dict = field(default_factory=dict)
    problem: str | None = None  # first problem, in words
    # WARN: the exchange's own data looks odd (stored as sent, flagged, never blocking); ERROR: ours is wrong
    severity: str = "ERROR"


def _covered(start: int, end: int, gaps: list[list[int]]) -> bool:
    """Is every minute of [start, end) inside a confirmed gap?"""
    cur = start
    for a, b in sorted(gaps):
        if a <= cur < b:
            cur = b
        if cur >= end:
            return True
    return cur >= end


def continuity(table: pa.Table, entry: ChunkEntry, prev: ChunkEntry | None = None) -> Outcome:
    times = table.column("open_time")
    return follows_previous(within_day(table, entry), entry, prev, times[0].as_py() if len(times) else None)


def within_day(table: pa.Table, entry: ChunkEntry) -> Outcome:
    """Continuity inside the day's window (the previous day's gaps end at midnight, so only its own count)."""
    column = table.column("open_time").to_numpy()
    times = column.tolist()
    gaps = entry.exchange_gaps
    dupes = disorder = unexplained = 0
    first_problem = None
    expected = entry.start_ms
    last = None
    steps = np.diff(column)
    # rows one minute apart (nearly every day): only the first can follow a hole, so only it is walked;
    # the rows after it then leave `last` and `expected` where the walk would
    regular = len(times) > 1 and bool((steps == MINUTE_MS).all())
    for t in times[:1] if regular else times:
        if last is not None and t == last:
            dupes += 1
            first_problem = first_problem or f"duplicate open_time {ms_to_iso(t)}"
            continue
        if last is not None and t < last:
            disorder += 1
            first_problem = first_problem or f"open_time {ms_to_iso(t)} after {ms_to_iso(last)}"
            continue
        if t - expected >= MINUTE_MS and not _covered(expected, t - (t - expected) % MINUTE_MS, gaps):
            unexplained += (t - expected) // MINUTE_MS
            first_problem = first_problem or f"missing {ms_to_iso(expected)} .. {ms_to_iso(t)}"
        last, expected = t, t + MINUTE_MS
    if regular:
        last, expected = times[-1], times[-1] + MINUTE_MS
    tail_end = min(entry.covered_until_ms or entry.end_ms, entry.end_ms)
    if tail_end - expected >= MINUTE_MS and not _covered(expected, tail_end, gaps):
        unexplained += (tail_end - expected) // MINUTE_MS
        first_problem = first_problem or f"missing {ms_to_iso(expected)} .. {ms_to_iso(tail_end)}"
    off_minute = int(np.count_nonzero(column % MINUTE_MS))
    md = {"rows": len(times), "exchange_gap_minutes": entry.gap_minutes, "unexplained_missing_minutes": unexplained,
          "duplicates": dupes, "out_of_order": disorder, "off_minute_rows": off_minute}
    return Outcome(unexplained == dupes == disorder == 0, md, first_problem)


def follows_previous(inside: Outcome, entry: ChunkEntry, prev: ChunkEntry | None,
                     first_open_time: int | None) -> Outcome:
    """Continuity across midnight, from the manifest alone: the day's first row follows the previous day's
    last, or the minutes between are confirmed gaps."""
    if prev is None or prev.last_open_time is None or first_open_time is None:
        return inside
    gaps = entry.exchange_gaps + prev.exchange_gaps
    follows = first_open_time - prev.last_open_time == MINUTE_MS or _covered(
        prev.last_open_time + MINUTE_MS, first_open_time, gaps)
    md = {**inside.metadata, "follows_previous_day": follows}
    if follows or prev.end_ms != entry.start_ms:
        return Outcome(inside.passed, md, inside.problem)
    md["unexplained_missing_minutes"] = md["unexplained_missing_minutes"] + 1
    return Outcome(False, md, inside.problem or f"day does not follow {prev.partition}'s last row")


def holds_latest(kind: Kind, covered_until_ms: int, now_ms: int) -> bool:
    """Whether a day covered until `covered_until_ms` holds all that had closed by `now_ms`: the minute that
    closed last, or (funding) every event already due, the last one `FUNDING_SLACK_MS` after its hour."""
    if kind.events:
        return covered_until_ms > (now_ms - FUNDING_SLACK_MS) // HOUR_MS * HOUR_MS
    return covered_until_ms > now_ms // MINUTE_MS * MINUTE_MS - MINUTE_MS


def _hours(table: pa.Table) -> np.ndarray:
    return np.rint(table.column("funding_time").to_numpy() / HOUR_MS).astype(np.int64)


def funding_spacing(table: pa.Table) -> np.ndarray:
    """The hours each event may be followed by the next (the last: by the day's end). Where the source
    states the interval in force (the archive) it decides, the next event's too where it changes. Where it
    does not (REST), the steps beside decide: a step longer than both its neighbours (or than 8 h) lacks an
    event, so a series of 4 h steps missing one shows an 8 h step, while a change of interval (8, 8, 4, 4)
    does not; a step at the day's edge has one neighbour, which cannot tell a change from a missing event,
    so there only more than 8 h lacks one (never a false alarm, at the price of a shorter interval's edge)."""
    hours = _hours(table)
    steps = np.diff(hours)
    stated = table.column("funding_interval_hours").to_numpy(zero_copy_only=False)  # nulls read as NaN
    out = np.full(len(hours), MAX_INTERVAL_H, dtype=np.float64)
    for i in range(len(hours)):
        here = stated[i]
        if here == here:  # stated (not NaN)
            later = stated[i + 1] if i + 1 < len(hours) and stated[i + 1] == stated[i + 1] else here
            out[i] = max(here, later)
            continue
        beside = [steps[j] for j in (i - 1, i + 1) if 0 <= j < len(steps)]
        out[i] = min(MAX_INTERVAL_H, max(beside)) if len(beside) == 2 else MAX_INTERVAL_H
    return out


def funding_within_day(table: pa.Table, entry: ChunkEntry) -> Outcome:
    """Events on the symbol's schedule (`funding_spacing`) through the day's covered end. A missing event
    is named, as a WARN: it is the exchange's answer, stored as sent (fetching again cannot make it appear),
    and `verify` counts it as a problem. Duplicates and disorder never get this far (`value_problem`), but
    are ours (ERROR) if they do."""
    md = {"events": table.num_rows, "missing_events": 0, "duplicates": 0}
    if table.num_rows == 0:
        return Outcome(True, md)
    hours, allowed = _hours(table), funding_spacing(table)
    steps = np.diff(hours)
    md["duplicates"] = int(np.count_nonzero(steps <= 0))
    problems = []
    for i in np.flatnonzero(steps > allowed[:-1]):
        md["missing_events"] += int(-(-steps[i] // allowed[i])) - 1  # the due times strictly between
        problems.append(f"no funding event between {ms_to_iso(int(hours[i]) * HOUR_MS)} and "
                        f"{ms_to_iso(int(hours[i + 1]) * HOUR_MS)} ({int(steps[i])} h apart, every "
                        f"{allowed[i]:.0f} h due)")
    tail_end = min(entry.covered_until_ms or entry.end_ms, entry.end_ms)
    due = (int(hours[-1]) + allowed[-1]) * HOUR_MS
    if due + FUNDING_SLACK_MS <= tail_end:
        md["missing_events"] += 1
        problems.append(f"no funding event at {ms_to_iso(int(due))} ({allowed[-1]:.0f} h after the day's last)")
    if md["duplicates"]:
        problems.insert(0, f"{md['duplicates']} duplicate or out-of-order event(s)")
    return Outcome(not problems, md, "; ".join(problems[:3]) or None, "ERROR" if md["duplicates"] else "WARN")


def funding_follows_previous(inside: Outcome, entry: ChunkEntry, prev: ChunkEntry | None,
                             first_time: int | None) -> Outcome:
    """Across midnight: the day's first event (or, for a day without any, its end) comes at most 8 h after
    the previous day's last."""
    if prev is None or prev.last_open_time is None or prev.end_ms != entry.start_ms:
        return inside
    last = round(prev.last_open_time / HOUR_MS) * HOUR_MS
    until = round(first_time / HOUR_MS) * HOUR_MS if first_time is not None else \
        min(entry.covered_until_ms or entry.end_ms, entry.end_ms) - FUNDING_SLACK_MS
    if until - last <= MAX_INTERVAL_H * HOUR_MS:
        return inside
    md = {**inside.metadata, "missing_events": inside.metadata.get("missing_events", 0) + 1}
    said = f"no funding event in the {(until - last) // HOUR_MS} h after {prev.partition}'s last ({ms_to_iso(last)})"
    return Outcome(False, md, "; ".join(p for p in (said, inside.problem) if p),
                   "WARN" if inside.passed else inside.severity)


def funding_sanity(table: pa.Table, entry: ChunkEntry, fetched_before_ms: int) -> Outcome:
    """ERROR, never to be stored: events outside the window, events not yet due when fetched, values the
    exchange cannot send (`impossible_events`). WARN: an event more than a minute off its hour."""
    if table.num_rows == 0:
        return Outcome(True, {"events": 0})
    times = table.column("funding_time").to_numpy()
    off = np.abs(times - np.rint(times / HOUR_MS) * HOUR_MS)
    masks = {"future_events": times >= fetched_before_ms,
             "out_of_window_events": (times < entry.start_ms) | (times >= entry.end_ms),
             "impossible_values": impossible_events(table),
             "off_the_hour_events": off > FUNDING_SLACK_MS}
    md, found = {"events": table.num_rows}, []
    for name, mask in masks.items():
        md[name] = int(np.count_nonzero(mask))
        if md[name]:
            found.append((name, f"{md[name]} {name} (first at {ms_to_iso(int(times[int(np.argmax(mask))]))})"))
    if not found:
        return Outcome(True, md)
    ours = any(name != "off_the_hour_events" for name, _ in found)
    return Outcome(False, md, ", ".join(text for _, text in found), "ERROR" if ours else "WARN")


def integrity(data: bytes | None, entry: ChunkEntry, kind: Kind = KINDS["klines"]) -> tuple[Outcome, pa.Table | None]:
    """The chunk's bytes (None: the object is missing) are what the manifest says; returns the table when
    they could be read."""
    md: dict = {"expected_sha256": entry.sha256, "expected_rows": entry.rows}
    name = entry.file.rpartition("/")[2]
    if data is None:
        return Outcome(False, md, f"{name} is missing"), None
    sha = sha256_bytes(data)
    md["sha256"] = sha
    if sha != entry.sha256:
        return Outcome(False, md, f"{name} sha256 {sha[:12]}.. differs from the manifest's"), None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        return Outcome(False, md, f"{name} is not readable Parquet: {exc}"), None
    md["rows"] = table.num_rows
    if table.num_rows != entry.rows:
        return Outcome(False, md, f"{name} has {table.num_rows} rows, manifest says {entry.rows}"), table
    bad_schema = schema_problem(table.schema, kind)
    if bad_schema:
        return Outcome(False, md, bad_schema), table
    return Outcome(True, md), table


def sanity(table: pa.Table, entry: ChunkEntry, fetched_before_ms: int, signed: bool = False) -> Outcome:
    """Row-level rules; `fetched_before_ms` bounds close_time (a stored row must have been closed).

    ERROR, never to be stored: unclosed or out-of-window rows, and values the exchange cannot have sent
    (NaN, infinite or negative prices, volumes, counts). WARN, stored as sent and flagged: odd values the
    exchange really sends (open times off the minute in early data, close_time, OHLC order)."""
    if table.num_rows == 0:
        return Outcome(True, {"rows": 0})
    opens, closes = (table.column(name).to_numpy() for name in ("open_time", "close_time"))
    o, h, low, c = (table.column(name).to_numpy() for name in ("open", "high", "low", "close"))
    errors = {  # NumPy over whole columns: every day fetched is checked, in many threads at once
        "unclosed_rows": closes >= fetched_before_ms,
        "out_of_window_rows": (opens < entry.start_ms) | (opens >= entry.end_ms),
        "impossible_values": impossible_values(table, signed),
    }
    warnings = {
        "off_minute_rows": opens % MINUTE_MS != 0,
        "bad_close_time": closes != opens + 59_999,
        "ohlc_violations": (h < o) | (h < c) | (low > o) | (low > c),
    }
    md, found = {"rows": table.num_rows}, []
    for name, mask in {**errors, **warnings}.items():
        md[name] = int(np.count_nonzero(mask))
        if md[name]:
            found.append((name, f"{md[name]} {name} (first at {ms_to_iso(int(opens[int(np.argmax(mask))]))})"))
    if not found:
        return Outcome(True, md)
    ours = any(name in errors for name, _ in found)
    return Outcome(False, md, ", ".join(text for _, text in found), "ERROR" if ours else "WARN")


def written_ms(entry: ChunkEntry) -> int:
    return int(dt.datetime.fromisoformat(entry.written_at.replace("Z", "+00:00")).timestamp() * 1000)


NOT_CHECKED = "not checked: the file does not match the manifest"


def evaluate(data: bytes | None, entry: ChunkEntry, prev: ChunkEntry | None,
             kind: Kind = KINDS["klines"]) -> dict[str, Outcome]:
    """All three checks for one stored day of `kind`, from its bytes (None: missing)."""
    return with_previous(evaluate_day(data, entry, kind), entry, prev, kind)


def evaluate_day(data: bytes | None, entry: ChunkEntry, kind: Kind = KINDS["klines"]) -> dict[str, Outcome]:
    """The three checks of one day's chunk of `kind` without its neighbour: what a writer's thread can do
    before the commit, on the very bytes it put (`with_previous` completes them). Funding events have
    checks of their own (`funding_within_day`, `funding_sanity`)."""
    intact, table = integrity(data, entry, kind)
    if table is None:
        skipped = Outcome(False, {}, NOT_CHECKED)
        return {INTEGRITY: intact, CONTINUITY: skipped, SANITY: skipped}
    if kind.events:
        return {INTEGRITY: intact, CONTINUITY: funding_within_day(table, entry),
                SANITY: funding_sanity(table, entry, written_ms(entry))}
    return {INTEGRITY: intact, CONTINUITY: within_day(table, entry),
            SANITY: sanity(table, entry, written_ms(entry), kind.signed)}


def with_previous(outcomes: dict[str, Outcome], entry: ChunkEntry, prev: ChunkEntry | None,
                  kind: Kind = KINDS["klines"]) -> dict[str, Outcome]:
    if outcomes[CONTINUITY].problem == NOT_CHECKED:
        return outcomes
    follows = funding_follows_previous if kind.events else follows_previous
    return {**outcomes, CONTINUITY: follows(outcomes[CONTINUITY], entry, prev, entry.first_open_time)}


def coverage(manifest: Manifest, today: dt.date, now_ms: int) -> Outcome:
    """Is the dataset whole? From the manifest alone (no chunk is read, so it costs nothing per run).

    ERROR: days missing between the first and the last stored day, named as ranges (a day on which the
    exchange had no trade is stored, empty, so it is never missing), and days that are over but incomplete.
    WARN: today's chunk has fallen more than `STALLED_MS` behind the clock (the live updates stopped).
    Shown either way: the last complete day and how many days it lags yesterday."""
    entries = {dt.date.fromisoformat(e.partition): e for e in manifest.chunks.values()}
    if not entries:
        return Outcome(True, {"stored_days": 0})
    first, last = min(entries), max(entries)
    missing = [first + dt.timedelta(n) for n in range((last - first).days + 1)
               if first + dt.timedelta(n) not in entries]
    incomplete = sorted(day for day, e in entries.items() if day < today and not e.complete)
    last_complete = max((day for day, e in entries.items() if e.complete), default=None)
    md: dict = {"first_day": first.isoformat(), "last_day": last.isoformat(), "stored_days": len(entries),
                "missing_days": len(missing), "missing": day_ranges(missing), "incomplete_days": len(incomplete),
                "last_complete_day": last_complete.isoformat() if last_complete else "-",
                "days_behind_yesterday": (today - dt.timedelta(1) - last_complete).days if last_complete else -1}
    problems = []
    if missing:
        problems.append(f"{len(missing)} day(s) missing: {', '.join(day_ranges(missing)[:5])}")
    if incomplete:
        problems.append(f"{len(incomplete)} day(s) over but incomplete: {', '.join(day_ranges(incomplete)[:5])}")
    live = entries.get(today)
    if live is not None and not live.complete:
        md["live_minutes_behind"] = max(0, (now_ms - live.covered_until_ms) // MINUTE_MS)
        stalled = FUNDING_STALLED_MS if KINDS[manifest.kind].events else STALLED_MS
        if now_ms - live.covered_until_ms > stalled and not problems:
            return Outcome(False, md, f"today's chunk ends {md['live_minutes_behind']} minutes ago: the live "
                                      "updates stopped (is the live sensor on?)", "WARN")
    return Outcome(not problems, md, "; ".join(problems) or None)


def day_ranges(days: list[dt.date]) -> list[str]:
    """Sorted days as runs: ['2021-01-03..2021-01-10', '2021-02-01']."""
    runs: list[list[dt.date]] = []
    for day in days:
        if runs and (day - runs[-1][1]).days == 1:
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return [a.isoformat() if a == b else f"{a}..{b}" for a, b in runs]
