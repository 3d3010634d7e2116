"""Unix hours, the warehouse's unit of time: `floor(unix_seconds / 3600)`, always UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def current_hour(now: float | None = None) -> int:
    """The unix hour in progress; the last complete hour is the one before it."""
    return int((time.time() if now is None else now) // 3600)


def hour_text(unix_hour: int | None) -> str:
    """`2025-08-01 14:00 UTC`, for people; `-` for no hour."""
    if unix_hour is None:
        return "-"
    return datetime.fromtimestamp(unix_hour * 3600, UTC).strftime("%Y-%m-%d %H:00 UTC")


def span_text(start_hour: int, end_hour: int) -> str:
    """A half-open range of hours as people read it: first hour to last hour, inclusive."""
    return f"{hour_text(start_hour)} to {hour_text(end_hour - 1)}"
