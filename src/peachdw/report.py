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
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from peachdw import metrics, rollup
from peachdw.hours import day_spans
from peachdw.rules import TIERS

#: The rates analysts read first: (column, numerator, denominator, kind). A "rate" is a
#: share shown as a percentage, a "ratio" a plain number.
RATES: tuple[tuple[str, str, str, str], ...] = (
    ("registrations_per_session", "registrations", "sessions", "rate"),
    ("converted_per_registration", "converted_users", "registrations", "rate"),
    ("messages_per_user_chat", "messages", "total_user_chats", "ratio"),
)
#: Decimal places kept in rates, the same in every format.
RATE_PLACES = 6

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
    # "text", "id", "int", "date", "rate", "ratio" or "confidence", one per column, for the
    # formats that type their cells.
    kinds: list[str] = field(default_factory=list)


def daily_totals(
    conn: sqlite3.Connection,
    period: ReportPeriod,
    names: tuple[str, ...] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """(day, campaign_id, *names) for each campaign and day with stored hours, by
    campaign and day; `names` defaults to every metric the warehouse holds.

    Served from the daily rollup when it is built for the period's zone (rollup.py).
    Otherwise the days come as a small table of hour ranges joined to each campaign's key
    range in `hourly_data`, so every day is one key seek and the time zone costs nothing.
    """
    names = metrics.of(conn) if names is None else names
    served = rollup.read_days(conn, period, names)
    if served is not None:
        return served
    return hourly_day_sums(conn, period.spans(), names)


def hourly_day_sums(
    conn: sqlite3.Connection,
    spans: list[tuple[date, int, int]],
    names: tuple[str, ...],
    campaign_id: int | None = None,
) -> sqlite3.Cursor:
    """(day, campaign_id, *names) summed from the stored hours of each day span.

    The spans come as a small table of hour ranges joined to each campaign's key range
    in `hourly_data`, so every day is one key seek whatever zone cut the days.
    """
    values = ", ".join(f"('{day.isoformat()}', {lo}, {hi})" for day, lo, hi in spans)
    scope = "" if campaign_id is None else " WHERE c.id = :campaign"
    sql = (
        f"WITH days(day, lo, hi) AS (VALUES {values}) "
        "SELECT days.day, c.id, "
        + ", ".join(f"sum(d.{m})" for m in names)
        + " FROM campaigns AS c CROSS JOIN days CROSS JOIN hourly_data AS d "
        "ON d.campaign_id = c.id AND d.unix_hour >= days.lo AND d.unix_hour < days.hi"
        f"{scope} GROUP BY c.id, days.day"
    )
    return conn.execute(sql, {"campaign": campaign_id})


@dataclass(frozen=True)
class CampaignInfo:
    id: int
    name: str
    status: str
    tiers: tuple[str, ...]
    confidence: float | None


def campaign_infos(conn: sqlite3.Connection) -> dict[int, CampaignInfo]:
    """Every campaign with its status and tiers ("Unknown" where it is not mapped)."""
    tiers = ", ".join(f"coalesce(h.{tier}, 'Unknown')" for tier in TIERS)
    rows = conn.execute(
        "SELECT c.id, c.name, CASE WHEN c.is_deleted THEN 'deleted' "
        f"WHEN c.is_serving THEN 'serving' ELSE 'paused' END, {tiers}, "
        "h.mapping_confidence FROM campaigns AS c "
        "LEFT JOIN campaign_hierarchy AS h ON h.campaign_id = c.id ORDER BY c.id"
    )
    width = len(TIERS)
    return {
        row[0]: CampaignInfo(row[0], row[1], row[2], tuple(row[3 : 3 + width]), row[-1])
        for row in rows
    }


def rate(numerator: int, denominator: int) -> float | None:
    """A ratio of two totals; None (an empty cell) where the denominator is 0."""
    return round(numerator / denominator, RATE_PLACES) if denominator else None


LEVELS = ("Network", "Domain", "Placement", "Targeting", "Special")


def summary_columns(names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The Summary tab's header and column kinds for the metrics `names`."""
    header = [
        "campaign_id",
        "campaign_name",
        "status",
        *TIERS,
        "mapping_confidence",
        *names,
        *(name for name, *_ in RATES),
    ]
    kinds = [
        "id",
        "text",
        "text",
        *("text" for _ in TIERS),
        "confidence",
        *("int" for _ in names),
        *(kind for *_, kind in RATES),
    ]
    return header, kinds


def daily_columns(names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The Daily tab's header and column kinds for the metrics `names`."""
    header = ["date", "campaign_id", "campaign_name", *TIERS, *names]
    kinds = ["date", "id", "text", *("text" for _ in TIERS), *("int" for _ in names)]
    return header, kinds


def hierarchy_columns(names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The Hierarchy tab's header and column kinds for the metrics `names`."""
    header = ["level", *TIERS, "campaigns", *names]
    kinds = ["text", *("text" for _ in TIERS), "int", *("int" for _ in names)]
    return header, kinds


def _add(total: list[int], values: tuple[int, ...] | list[int]) -> None:
    for index, value in enumerate(values):
        total[index] += value


def report_totals(
    infos: dict[int, CampaignInfo], days: list[tuple[Any, ...]], width: int
) -> dict[int, list[int]]:
    """Each reported campaign's totals of its `width` metrics, by id: every campaign
    with hours in the period, and every campaign not deleted even without any, so a
    silent one shows as zeros."""
    totals = {
        campaign_id: [0] * width
        for campaign_id, info in infos.items()
        if info.status != "deleted"
    }
    for _, campaign_id, *values in days:
        _add(totals.setdefault(campaign_id, [0] * width), values)
    return dict(sorted(totals.items()))


def summary_tab(
    infos: dict[int, CampaignInfo],
    totals: dict[int, list[int]],
    names: tuple[str, ...],
) -> Tab:
    """One row per reported campaign with its tiers, totals and rates."""
    rows = []
    index = {metric: position for position, metric in enumerate(names)}
    for campaign_id, values in totals.items():
        info = infos[campaign_id]
        rates = [rate(values[index[n]], values[index[d]]) for _, n, d, _ in RATES]
        rows.append(
            [
                info.id,
                info.name,
                info.status,
                *info.tiers,
                info.confidence,
                *values,
                *rates,
            ]
        )
    header, kinds = summary_columns(names)
    return Tab("Summary", header, rows, kinds)


def daily_tab(
    infos: dict[int, CampaignInfo],
    days: list[tuple[Any, ...]],
    names: tuple[str, ...],
) -> Tab:
    """One row per campaign and day with stored hours, by day then campaign."""
    rows = []
    for day, campaign_id, *values in sorted(days, key=lambda row: (row[0], row[1])):
        info = infos[campaign_id]
        rows.append(
            [date.fromisoformat(day), campaign_id, info.name, *info.tiers, *values]
        )
    header, kinds = daily_columns(names)
    return Tab("Daily", header, rows, kinds)


def hierarchy_tab(
    infos: dict[int, CampaignInfo],
    totals: dict[int, list[int]],
    names: tuple[str, ...],
) -> Tab:
    """Totals rolled up the five tiers: a subtotal row at each level, in tier order
    (alphabetical at each level), and a grand total last that equals the Summary's sum.

    A row at level k names the first k tiers and leaves the deeper ones empty.
    """
    width = len(TIERS)
    # Every prefix of each campaign's tiers gets the campaign's totals.
    groups: dict[tuple[str, ...], tuple[set[int], list[int]]] = {}
    grand: tuple[set[int], list[int]] = (set(), [0] * len(names))
    for campaign_id, values in totals.items():
        tiers = infos[campaign_id].tiers
        for depth in range(1, width + 1):
            members, total = groups.setdefault(tiers[:depth], (set(), [0] * len(names)))
            members.add(campaign_id)
            _add(total, values)
        grand[0].add(campaign_id)
        _add(grand[1], values)

    rows = []
    for key in sorted(groups):
        members, total = groups[key]
        padding = [None] * (width - len(key))
        rows.append([LEVELS[len(key) - 1], *key, *padding, len(members), *total])
    rows.append(["Total", *([None] * width), len(grand[0]), *grand[1]])
    header, kinds = hierarchy_columns(names)
    return Tab("Hierarchy", header, rows, kinds)


def build_tabs(
    conn: sqlite3.Connection, period: ReportPeriod, names: tuple[str, ...] = TAB_NAMES
) -> list[Tab]:
    """The tabs asked for, in the order of TAB_NAMES, from one read of daily totals.

    Every metric the warehouse holds is a column, the added ones after the built-ins.
    """
    counted = metrics.of(conn)
    infos = campaign_infos(conn)
    days = list(daily_totals(conn, period, counted))
    totals = report_totals(infos, days, len(counted))

    builders = {
        "Summary": lambda: summary_tab(infos, totals, counted),
        "Daily": lambda: daily_tab(infos, days, counted),
        "Hierarchy": lambda: hierarchy_tab(infos, totals, counted),
    }
    return [builders[name]() for name in TAB_NAMES if name in names]


def held_days(conn: sqlite3.Connection, zone: ZoneInfo) -> tuple[date, date] | None:
    """The first and last day, in `zone`, with stored hours; None for an empty store."""
    # Each campaign's first and last hour are one seek each at the ends of its key range.
    first, last = conn.execute(
        "SELECT min(first), max(last) FROM (SELECT "
        "(SELECT min(unix_hour) FROM hourly_data AS d WHERE d.campaign_id = c.id) "
        "AS first, "
        "(SELECT max(unix_hour) FROM hourly_data AS d WHERE d.campaign_id = c.id) "
        "AS last FROM campaigns AS c)"
    ).fetchone()
    if first is None:
        return None
    return _hour_day(first, zone), _hour_day(last, zone)


def _hour_day(unix_hour: int, zone: ZoneInfo) -> date:
    """The day an hour belongs to in `zone`, by the rule of `day_spans`."""
    moment = datetime.fromtimestamp(unix_hour * 3600, zone)
    # Off the whole hour, the hour holding midnight belongs to the day midnight starts.
    following = datetime.fromtimestamp((unix_hour + 1) * 3600 - 1, zone).date()
    return following if following != moment.date() else moment.date()
