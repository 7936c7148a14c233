"""Local days of the alignment zone as Dagster partitions; today's is the live one."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from kline_assets.timezones import AlignZone


def daily_partitions(zone: AlignZone, start: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone=zone.iana, end_offset=1)


def key_to_day(key: str) -> dt.date:
    return dt.date.fromisoformat(key)
