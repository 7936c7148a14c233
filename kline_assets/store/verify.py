"""Whole-dataset verification (`kline-assets verify`, the verify job) and the set of days to repair."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field

from kline_assets.store.checks import CONTINUITY, INTEGRITY, SANITY, evaluate
from kline_assets.store.dataset import GRACE_S, DatasetStore
from kline_assets.store.manifest import ChunkEntry, Manifest, utc_now_iso
from kline_assets.store.paths import CHUNK_RE, names_day
from kline_assets.timezones import ms_to_iso

KIND_OF = {INTEGRITY: "corrupt", CONTINUITY: "discontinuous", SANITY: "insane"}


@dataclass
class Problem:
    kind: str  # missing_file | corrupt | discontinuous | insane | incomplete | missing_day | stray_file | misnumbered
    # | differs_from_rest (verify --cross-check) | archive_replaced (the recheck job)
    day: str | None
    detail: str


@dataclass
class Report:
    first_day: dt.date | None = None
    last_day: dt.date | None = None
    days_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # the exchange's odd values, stored as sent
    gaps: list[list[int]] = field(default_factory=list)  # the checked days' recorded exchange gaps, in order

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad_days(self) -> list[dt.date]:
        """Days to re-collect; a stray file is only deleted, it names no day of ours."""
        return sorted({dt.date.fromisoformat(p.day) for p in self.problems if p.day and p.kind != "stray_file"})

    def render(self, name: str) -> str:
        if self.days_checked == 0 and self.ok:
            return f"{name}: nothing stored in the window"
        head = f"{name}: {self.days_checked} day(s) checked, {self.first_day} .. {self.last_day}: "
        notes = [f"  note {w.day}: the exchange sent {w.detail} (stored as sent)" for w in self.warnings[:5]]
        if self.gaps:  # not problems (the exchange confirmed them), but every missing minute is named
            minutes = sum(b - a for a, b in self.gaps) // 60_000
            named = ", ".join(f"{ms_to_iso(a)} .. {ms_to_iso(b)}" for a, b in self.gaps[:3])
            notes.append(f"  note: the exchange has no rows for {minutes:,} minute(s) in {len(self.gaps)} gap(s), "
                         f"recorded as confirmed: {named}" + (" ..." if len(self.gaps) > 3 else ""))
        if self.ok:
            return "\n".join([head + "all well", *notes])
        kinds = Counter(p.kind for p in self.problems)
        lines = [head + f"{len(self.problems)} problem(s): " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))]
        lines += [f"  {p.day or '-'} {p.kind}: {p.detail}" for p in self.problems[:8]]
        if len(self.problems) > 8:
            lines.append(f"  ... and {len(self.problems) - 8} more")
        return "\n".join(lines)

    def summary(self) -> dict:
        return {"at": utc_now_iso(), "ok": self.ok, "days_checked": self.days_checked,
                "first_day": str(self.first_day), "last_day": str(self.last_day),
                "problems": dict(Counter(p.kind for p in self.problems))}


def verify(store: DatasetStore, first: dt.date | None, last: dt.date | None, today: dt.date) -> Report:
    """Check every stored day in [first, last] (default: first to last stored day); only reads."""
    manifest = store.manifest()
    entries = sorted(manifest.chunks.values(), key=lambda e: e.index)
    days = [dt.date.fromisoformat(e.partition) for e in entries]
    lo = first or (min(days) if days else None)
    hi = min(last or (max(days) if days else today), today)
    report = Report(lo, hi)
    if lo is None or hi < lo:
        return report
    prev = None
    listed = Counter(e.partition for e in entries)
    for entry in entries:
        day = dt.date.fromisoformat(entry.partition)
        if lo <= day <= hi:
            report.days_checked += 1
            numbering = misnumbered(manifest, entry, listed[entry.partition])
            if numbering:
                report.problems.append(Problem("misnumbered", entry.partition, numbering))
            entry, present, outcomes = _checked(store, entry, prev)
            for start, end in entry.exchange_gaps:  # one gap across midnight is named once
                if report.gaps and report.gaps[-1][1] == start:
                    report.gaps[-1][1] = end
                else:
                    report.gaps.append([start, end])
            if not present:
                report.problems.append(Problem("missing_file", entry.partition, f"{entry.file} is listed but absent"))
            else:
                # a file that fails integrity is reported once: its other checks would say nothing new
                names = [INTEGRITY] if not outcomes[INTEGRITY].passed else [CONTINUITY, SANITY]
                for name in names:
                    outcome = outcomes[name]
                    if outcome.passed:
                        continue
                    found = Problem(KIND_OF[name], entry.partition, outcome.problem or name)
                    # a funding event the exchange lacks is stored as sent (WARN), yet never "all well" here
                    named = outcome.severity == "ERROR" or (name == CONTINUITY and store.spec.kind_info.events)
                    (report.problems if named else report.warnings).append(found)
            if not entry.complete and day < today:
                report.problems.append(Problem("incomplete", entry.partition, "the day is over but not complete"))
        prev = entry
    stored = set(days)
    for n in range((hi - lo).days + 1):
        day = lo + dt.timedelta(n)
        if day not in stored and day >= store.start:
            report.days_checked += 1  # checked, and found missing: a repair then checks it as a stored day
            report.problems.append(Problem("missing_day", day.isoformat(), "no chunk for this day"))
    now = time.time()
    for found in store.unlisted(manifest):
        if now - found.modified <= GRACE_S:
            continue  # perhaps another writer's, about to be committed: not a problem yet
        name = found.key.rpartition("/")[2]
        match = CHUNK_RE.match(name)
        day = dt.datetime.strptime(match.group(2), "%Y%m%d").date().isoformat() if match else None
        report.problems.append(Problem("stray_file", day, f"{name} is in no manifest (older than "
                                                          f"{GRACE_S / 3600:g} h)"))
    report.problems.sort(key=lambda p: (p.day or "", p.kind))
    return report


def _checked(store: DatasetStore, entry: ChunkEntry, prev: ChunkEntry | None) -> tuple[ChunkEntry, bool, dict]:
    """A day's checks (and whether its chunk exists); a day whose chunk is missing or differs is looked up
    once more in a fresh manifest, so a writer that replaced it meanwhile is not taken for corruption."""
    data = store.chunk_bytes(entry)
    outcomes = evaluate(data, entry, prev, store.spec.kind_info)
    if not outcomes[INTEGRITY].passed:
        fresh = store.manifest().chunks.get(entry.index)
        if fresh is not None and fresh.file != entry.file:
            entry, data = fresh, store.chunk_bytes(fresh)
            outcomes = evaluate(data, entry, prev, store.spec.kind_info)
    return entry, data is not None, outcomes


def misnumbered(manifest: Manifest, entry: ChunkEntry, listed: int) -> str | None:
    """An entry whose index, partition and file name disagree with the dataset's start (docs/contract.md)."""
    day = dt.date.fromisoformat(entry.partition)
    want = manifest.index_of(day)
    if want != entry.index:
        return f"index {entry.index}, but {day} is day {want} from the start {manifest.start}"
    if listed > 1:
        return f"{day} is listed {listed} times"
    if not names_day(entry.file.rpartition("/")[2], want, day):
        return f"{entry.file} does not name day {want} ({day})"
    return None


def remember_repair(store: DatasetStore, report: Report) -> None:
    """Remember the last repair's verify result in the manifest (shown by `status`)."""
    remember(store, "last_verify", report.summary())


def remember(store: DatasetStore, name: str, summary: dict) -> None:
    """Keep `summary` in the manifest under `name` (`last_verify`, `last_recheck`), for `status`."""
    if store.read_manifest() is None:
        return

    def note(manifest: Manifest) -> bool:
        manifest.extra[name] = summary
        return True

    store.update(note)


def quarantine(store: DatasetStore, report: Report) -> None:
    """Before a repair: bad days leave the manifest, so nothing bad is served; their objects, and every
    other one no manifest lists, go once older than the grace period."""
    bad = {p.day for p in report.problems if p.kind not in ("missing_day", "stray_file")}

    def drop(manifest: Manifest) -> bool:
        doomed = [index for index, entry in manifest.chunks.items() if entry.partition in bad]
        for index in doomed:
            del manifest.chunks[index]
        return bool(doomed)

    store.update(drop)
    store.collect()
