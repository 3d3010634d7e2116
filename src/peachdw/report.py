"""The report every format shares: its period, its three tabs and their rows.

A report covers whole days in the reporting time zone. `Summary` has one row per
campaign, `Daily` one row per campaign and day, and `Hierarchy` rolls the totals up
Network -> Domain -> Placement -> Targeting -> Special. All three are built from the
same daily totals, so they agree with each other to the unit whatever the format.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from peachdw import rollup
from peachdw.hours import day_spans
from peachdw.metrics import METRICS

#: The rates analysts read first: (column, numerator, denominator).
RATES: tuple[tuple[str, str, str], ...] = (
    ("registrations_per_session", "registrations", "sessions"),
    ("converted_per_registration", "converted_users", "registrations"),
    ("messages_per_user_chat", "messages", "total_user_chats"),
)

TAB_NAMES = ("Summary", "Daily", "Hierarchy")


@dataclass(frozen=True)
class ReportPeriod:
    """Whole days first..last, both included, cut in `zone`."""

    first: date
    last: date
    zone: ZoneInfo

    def spans(self) -> list[tuple[date, int, int]]:
        return day_spans(self.first, self.last, self.zone)

    def hours(self) -> tuple[int, int]:
        spans = self.spans()
        return spans[0][1], spans[-1][2]

    def label(self) -> str:
        return f"{self.first.isoformat()}_{self.last.isoformat()}"


@dataclass
class Tab:
    """One table of a report: a name, a header, typed rows and a kind per column."""

    name: str
    header: list[str]
    rows: list[list[Any]]
    # "text", "int", "date", "rate" or "confidence", one per column, for typed formats.
    kinds: list[str] = field(default_factory=list)


def daily_totals(
    conn: sqlite3.Connection, period: ReportPeriod
) -> Iterator[tuple[Any, ...]]:
    """(day, campaign_id, *METRICS) for each campaign and day with stored hours, by
    campaign and day.

    Served from the daily rollup when it is built for the period's zone (rollup.py).
    Otherwise the days come as a small table of hour ranges joined to each campaign's key
    range in `hourly_data`, so every day is one key seek and the time zone costs nothing.
    """
    served = rollup.read_days(conn, period)
    if served is not None:
        return served

    spans = period.spans()
    values = ", ".join(f"('{day.isoformat()}', {lo}, {hi})" for day, lo, hi in spans)
    sql = (
        f"WITH days(day, lo, hi) AS (VALUES {values}) "
        "SELECT days.day, c.id, "
        + ", ".join(f"sum(d.{m})" for m in METRICS)
        + " FROM campaigns AS c CROSS JOIN days CROSS JOIN hourly_data AS d "
        "ON d.campaign_id = c.id AND d.unix_hour >= days.lo AND d.unix_hour < days.hi "
        "GROUP BY c.id, days.day"
    )
    return conn.execute(sql)
