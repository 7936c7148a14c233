"""Alignment zones and the UTC-millisecond windows of local days.

Day windows are always computed from UTC instants: subtracting two aware datetimes that share a
zoneinfo gives wall-clock time (24 h on a 23 h DST day), which would silently misplace 60 minutes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kline_assets.errors import BadInput

MINUTE_MS = 60_000
_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


@dataclass(frozen=True)
class AlignZone:
    """`name` is what the manifest records; `iana` is what Dagster's partitions use."""

    name: str
    iana: str

    @property
    def tzinfo(self) -> dt.tzinfo:
        return ZoneInfo(self.iana)

    def day_window_ms(self, day: dt.date) -> tuple[int, int]:
        return self.midnight_ms(day), self.midnight_ms(day + dt.timedelta(days=1))

    def midnight_ms(self, day: dt.date) -> int:
        # fold=0: where midnight is skipped by DST, this lands on the first instant of the day.
        local = dt.datetime.combine(day, dt.time(0), tzinfo=self.tzinfo)
        return int(local.timestamp()) * 1000

    def local_date(self, ms: int) -> dt.date:
        return dt.datetime.fromtimestamp(ms / 1000, tz=self.tzinfo).date()

    def file_suffix(self) -> str:
        """A readable, file-system-safe form: Europe/Zurich -> Europe-Zurich, +02:00 -> UTC+0200."""
        if self.name.startswith(("+", "-")):
            return "UTC" + self.name.replace(":", "")
        return self.name.replace("/", "-")


UTC = AlignZone("UTC", "UTC")  # the archive's files and the exchange's days are UTC days


def parse_zone(text: str) -> AlignZone:
    """IANA names and fixed offsets; whole-hour offsets map to Etc/GMT zones (whose sign is inverted)."""
    raw = text.strip()
    if raw.upper() in {"UTC", "Z", "GMT", "+00:00", "-00:00", "+0000"}:
        return UTC
    match = _OFFSET.match(raw)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if hours > 14 or minutes >= 60:
            raise BadInput(f"unknown time zone {text!r}: offsets run from -12:00 to +14:00")
        if minutes:
            raise BadInput(
                f"time zone {text!r}: only whole-hour offsets are supported; use an IANA zone "
                "such as Asia/Kolkata for half-hour offsets"
            )
        if hours == 0:
            return UTC
        etc = f"Etc/GMT{'-' if sign == '+' else '+'}{hours}"
        return AlignZone(f"{sign}{hours:02d}:00", etc)
    try:
        if not raw or raw.startswith("/") or ".." in raw:
            raise ValueError
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"unknown time zone {text!r}: use an IANA name (Europe/Zurich) or an offset (+02:00)") from None
    return AlignZone(raw, raw)


def parse_instant(text: str, zone: AlignZone) -> dt.datetime:
    """ISO date or date-time; a naive value is read in the alignment zone."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            value = dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(0))
        else:
            value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"bad time {text!r}: use an ISO date or date-time, e.g. 2021-01-01 or 2021-01-01T00:00:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone.tzinfo)
    return value


def ceil_to_local_day(instant: dt.datetime, zone: AlignZone) -> dt.date:
    """The first local day starting at or after `instant` (for an exclusive `--end`)."""
    local = instant.astimezone(zone.tzinfo)
    day = local.date()
    return day if zone.midnight_ms(day) >= int(instant.timestamp() * 1000) else day + dt.timedelta(days=1)


def floor_to_local_day(instant: dt.datetime, zone: AlignZone) -> dt.date:
    return instant.astimezone(zone.tzinfo).date()


def ms_to_iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
