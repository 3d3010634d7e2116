"""The daily rollup: each campaign's totals per day in the reporting time zone.

`daily_totals` holds one row per campaign and local day that has stored hours, with the
sum of every metric. Monthly totals and daily reports read its ~73,000 rows a year instead
of summing 1.5 million hourly rows (docs/performance.md).

The rollup is kept in step with `hourly_data` inside the transaction that writes each
window (`apply`, called by `loader.apply_hourly`), so a window is either stored with its
days or not at all. It is cut in one zone, the one `rollup_state` names: `ensure` builds it
again when `reporting.timezone` names another, and until it is built for a report's zone
the report sums the hours instead (`read_days` returns None).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from itertools import chain, islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from peachdw import metrics
from peachdw.db import utc_now
from peachdw.hours import day_spans

if TYPE_CHECKING:
    from peachdw.loader import HourlyPlan
    from peachdw.report import ReportPeriod

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)
def _statements(names: tuple[str, ...]) -> dict[str, str]:
    """The rollup's statements for the metrics `names`, built once per list."""
    columns = ("campaign_id", "day", *names)
    return {
        "insert": f"INSERT INTO daily_totals ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})",
        "update": "UPDATE daily_totals SET "
        + ", ".join(f"{m} = ?" for m in names)
        + " WHERE campaign_id = ? AND day = ?",
        # Driven from campaigns, so each campaign's days are one range seek on the key.
        "stored": f"SELECT r.campaign_id, r.day, {', '.join('r.' + m for m in names)} "
        "FROM campaigns AS c CROSS JOIN daily_totals AS r ON r.campaign_id = c.id "
        "WHERE r.day >= ? AND r.day <= ?",
    }


def built_zone(conn: sqlite3.Connection) -> ZoneInfo | None:
    """The zone the rollup is cut in, or None while it is not built."""
    row = conn.execute("SELECT zone FROM rollup_state WHERE id = 1").fetchone()
    return ZoneInfo(row[0]) if row and row[0] else None


def build(conn: sqlite3.Connection, zone: ZoneInfo) -> int:
    """Rebuild every row of the rollup from the hours, cut in `zone`, in the caller's
    transaction. Returns the number of campaign-days written."""
    names = metrics.of(conn)
    conn.execute("DELETE FROM daily_totals")

    # Each campaign's first and last hour is a seek at each end of its key range.
    first, last = conn.execute(
        "SELECT min((SELECT min(unix_hour) FROM hourly_data WHERE campaign_id = c.id)), "
        "max((SELECT max(unix_hour) FROM hourly_data WHERE campaign_id = c.id)) "
        "FROM campaigns AS c"
    ).fetchone()
    written = 0
    if first is not None:
        # A day more at each end, as in _day_of_hours; days without hours add no row.
        spans = day_spans(
            _local_day(first, zone) - timedelta(days=1),
            _local_day(last, zone) + timedelta(days=1),
            zone,
        )
        values = ", ".join(
            f"('{day.isoformat()}', {lo}, {hi})" for day, lo, hi in spans
        )
        # Same shape as the reports' sum over hours: campaigns drive, each day is one
        # range seek on the key of hourly_data.
        cursor = conn.execute(
            f"INSERT INTO daily_totals (campaign_id, day, {', '.join(names)}) "
            f"WITH days(day, lo, hi) AS (VALUES {values}) "
            "SELECT c.id, days.day, "
            + ", ".join(f"sum(d.{m})" for m in names)
            + " FROM campaigns AS c CROSS JOIN days CROSS JOIN hourly_data AS d "
            "ON d.campaign_id = c.id AND d.unix_hour >= days.lo "
            "AND d.unix_hour < days.hi GROUP BY c.id, days.day"
        )
        written = cursor.rowcount

    conn.execute(
        "UPDATE rollup_state SET zone = ?, built_at = ? WHERE id = 1",
        (zone.key, utc_now()),
    )
    return written


def ensure(conn: sqlite3.Connection, zone: ZoneInfo) -> bool:
    """Build the rollup for `zone` unless it is cut in that zone already, in the caller's
    transaction. Returns whether it was built."""
    current = built_zone(conn)
    if current is not None and current.key == zone.key:
        return False

    started = time.monotonic()
    written = build(conn, zone)
    log.info(
        "Daily rollup rebuilt for zone %s (was %s): %d campaign-days in %.1f s",
        zone.key,
        current.key if current else "not built",
        written,
        time.monotonic() - started,
    )
    return True


def apply(conn: sqlite3.Connection, plan: HourlyPlan, zone: ZoneInfo) -> None:
    """Carry a window's writes of hourly_data into the rollup cut in `zone`, in the same
    transaction. `zone` must be the zone the rollup is built in (`built_zone`).

    Each touched day gets the plan's new values less the stored ones; a day whose totals
    come to zero has no stored hour left (an all-zero hour is never stored) and goes.
    """
    # From the plan, not by summing the day's hours again: a backfill window of ~30,000
    # new hours costs ~20 ms this way and ~50 ms with SQL sums (docs/performance.md).
    if not (plan.inserts or plan.updates or plan.deletes):
        return

    # Every list holds (campaign_id, unix_hour, ...) rows or keys.
    written = [rows for rows in (plan.inserts, plan.updates, plan.deletes) if rows]
    first = min(min(map(itemgetter(1), rows)) for rows in written)
    last = max(max(map(itemgetter(1), rows)) for rows in written)
    day_of = _day_of_hours(first, last, zone)

    statements = _statements(plan.metrics)
    zero = (0,) * len(plan.metrics)
    delta = _changes_by_day(plan, day_of)
    stored = _stored_days(conn, delta, plan.metrics)
    inserts, updates, deletes = [], [], []
    for key, change in delta.items():
        before = stored.get(key)
        if before is None:
            inserts.append((*key, *change))
            continue
        after = tuple(b + c for b, c in zip(before, change, strict=True))
        if after == zero:
            deletes.append(key)
        elif after != before:
            updates.append((*after, *key))
    _write(conn, statements, inserts, updates, deletes)


def _changes_by_day(
    plan: HourlyPlan, day_of: dict[int, str]
) -> dict[tuple[int, str], tuple[int, ...]]:
    """What the plan adds to each campaign-day: its new hours, plus the new values less
    the stored ones (`plan.previous`) of the hours it changes or zeroes."""
    # Rows are grouped by campaign-day and summed column by column; the keys come from
    # C-level maps, since a backfill window is ~30,000 new hours.
    inserts = plan.inserts
    keys = zip(
        map(itemgetter(0), inserts),
        map(day_of.__getitem__, map(itemgetter(1), inserts)),
        strict=True,
    )
    groups: dict[tuple[int, str], list[tuple]] = {}
    for key, row in zip(keys, inserts, strict=True):
        group = groups.get(key)
        if group is None:
            groups[key] = [row]
        else:
            group.append(row)

    for row in plan.updates:
        previous = plan.previous[row[0], row[1]]
        groups.setdefault((row[0], day_of[row[1]]), []).extend(
            (row, (row[0], row[1], *(-value for value in previous)))
        )
    for campaign_id, hour in plan.deletes:
        previous = plan.previous[campaign_id, hour]
        groups.setdefault((campaign_id, day_of[hour]), []).append(
            (campaign_id, hour, *(-value for value in previous))
        )

    # Every row is (campaign_id, unix_hour, *plan.metrics): sum the metric columns.
    return {
        key: tuple(map(sum, islice(zip(*rows, strict=True), 2, None)))
        for key, rows in groups.items()
    }


def _stored_days(
    conn: sqlite3.Connection, keys: Iterable[tuple[int, str]], names: tuple[str, ...]
) -> dict[tuple[int, str], tuple]:
    """The rollup's rows for the days the keys span, for every campaign."""
    days = [day for _, day in keys]
    rows = conn.execute(_statements(names)["stored"], (min(days), max(days)))
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _write(
    conn: sqlite3.Connection,
    statements: dict[str, str],
    inserts: list[tuple],
    updates: list[tuple],
    deletes: list[tuple[int, str]],
) -> None:
    if inserts:
        conn.executemany(statements["insert"], inserts)
    if updates:
        conn.executemany(statements["update"], updates)
    if deletes:
        conn.executemany(
            "DELETE FROM daily_totals WHERE campaign_id = ? AND day = ?", deletes
        )


def read_days(
    conn: sqlite3.Connection,
    period: ReportPeriod,
    names: tuple[str, ...] | None = None,
) -> Iterator[Any] | None:
    """(day, campaign_id, *names) per campaign and day of the period, ordered by
    campaign and day, or None when the rollup cannot serve it; `names` defaults to
    every metric the warehouse holds.

    The zone is checked in the same statement that reads the rows, so a rebuild for
    another zone committed meanwhile can never mix its days into the answer. None also
    when the rollup holds no day of the period: the hours hold none either then, and
    finding that out costs one seek per campaign and day.
    """
    names = metrics.of(conn) if names is None else names
    # The zone's subquery runs once, before the first row; ordered by campaign and
    # day, which the campaigns' rowid order and the rollup's key give without sorting.
    cursor = conn.execute(
        "SELECT r.day, c.id, "
        + ", ".join(f"r.{m}" for m in names)
        + " FROM campaigns AS c CROSS JOIN daily_totals AS r ON r.campaign_id = c.id "
        "WHERE (SELECT zone FROM rollup_state WHERE id = 1) = ? "
        "AND r.day >= ? AND r.day <= ? ORDER BY c.id, r.day",
        (period.zone.key, period.first.isoformat(), period.last.isoformat()),
    )
    first = cursor.fetchone()
    if first is None:
        return None
    return chain([first], cursor)


def _local_day(unix_hour: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(unix_hour * 3600, zone).date()


def _day_of_hours(first: int, last: int, zone: ZoneInfo) -> dict[int, str]:
    """The local day (YYYY-MM-DD) of each hour first..last, as the reports cut days."""
    # A day around each end, so an hour that holds a local midnight off the whole hour
    # lands where day_spans puts it.
    spans = day_spans(
        _local_day(first, zone) - timedelta(days=1),
        _local_day(last, zone) + timedelta(days=1),
        zone,
    )
    day_of = {}
    for day, lo, hi in spans:
        text = day.isoformat()
        for hour in range(max(lo, first), min(hi, last + 1)):
            day_of[hour] = text
    return day_of
