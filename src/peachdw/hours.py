"""Unix hours, the warehouse's unit of time: `floor(unix_seconds / 3600)`, always UTC."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo


def current_hour(now: float | None = None) -> int:
    """The unix hour in progress; the last complete hour is the one before it."""
    return int((time.time() if now is None else now) // 3600)


def hour_text(unix_hour: int | None) -> str:
    """`2025-08-01 14:00 UTC`, for people; `-` for no hour."""
    if unix_hour is None:
        return "-"
    return datetime.fromtimestamp(unix_hour * 3600, UTC).strftime("%Y-%m-%d %H:00 UTC")


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open ranges of hours, sorted by start, merged where they touch or overlap."""
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def hour_iso(unix_hour: int | None) -> str | None:
    """`2025-08-01T14:00:00Z`, the ISO 8601 text the warehouse stores times in; None for
    no hour."""
    if unix_hour is None:
        return None
    return datetime.fromtimestamp(unix_hour * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def span_text(start_hour: int, end_hour: int) -> str:
    """A half-open range of hours as people read it: first hour to last hour, inclusive."""
    return f"{hour_text(start_hour)} to {hour_text(end_hour - 1)}"


def day_start_hour(day: date, zone: tzinfo = UTC) -> int:
    """The unix hour in which `day` starts in `zone` (floored for zones off the hour)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    return int(midnight.timestamp() // 3600)


def days_to_hours(first: date, last: date, zone: tzinfo = UTC) -> tuple[int, int]:
    """The half-open hours [start, end) of the days first..last, both included, in `zone`.

    A day is 23 or 25 hours long where the zone changes its clocks.
    """
    return day_start_hour(first, zone), day_start_hour(last + timedelta(days=1), zone)


_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}


def parse_month(text: str) -> int:
    """A month by English name, abbreviation or number; ValueError otherwise."""
    key = text.strip().lower()
    if key.isdigit() and 1 <= int(key) <= 12:
        return int(key)
    if key in _MONTHS:
        return _MONTHS[key]
    raise ValueError(f"{text!r} is not a month; use a name such as August, or 1 to 12")


def month_days(year: int, month: int) -> tuple[date, date]:
    """The first and last day of a month."""
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return first, following - timedelta(days=1)


def day_spans(
    first: date, last: date, zone: tzinfo = UTC
) -> list[tuple[date, int, int]]:
    """Each day first..last in `zone` with its half-open unix hours [start, end).

    The spans tile the period: every hour lands in exactly one day. A day is 23 or 25
    hours long where the zone changes its clocks; in a zone off the whole hour, the hour
    that holds midnight belongs to the day that midnight starts.
    """
    spans = []
    day = first
    start = day_start_hour(day, zone)
    while day <= last:
        following = day + timedelta(days=1)
        end = day_start_hour(following, zone)
        spans.append((day, start, end))
        day, start = following, end
    return spans
