"""Is the data right? Freshness, completeness, reconciliation, plausibility, a score.

- **Reconciliation** compares the warehouse's UTC daily sums with the API's own daily
  totals (`GET /admin/reports`, kept in `api_reports` by every sync), metric by metric.
- **Completeness** counts, for every serving campaign and day (in the reporting time
  zone), the hours that no finished sync window covered.
- **Plausibility** runs configurable rules such as
  `total_accounts = email_accounts + google_accounts` over the stored rows.
- **The score** (0 to 100) weighs these with freshness and mapping; the formula is in
  docs/quality.md and every part is shown.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from peachdw.db import utc_now
from peachdw.errors import ConfigError
from peachdw.hours import day_spans, days_to_hours, merge_spans
from peachdw.metrics import BUILTIN_METRICS, REPORT_METRICS
from peachdw.report import ReportPeriod, hourly_day_sums

#: Rules every row of the sandbox, and of the real API, should satisfy.
DEFAULT_PLAUSIBILITY = (
    "total_accounts = email_accounts + google_accounts",
    "total_user_chats = companion_chats + chat_room_user_chats",
    "registrations <= sessions",
)
_UNIX_DAY = date(1970, 1, 1)
#: Weight of each part of the score; they add up to 100.
SCORE_WEIGHTS = {
    "freshness": 20,
    "completeness": 25,
    "reconciliation": 30,
    "plausibility": 15,
    "mapping": 10,
}
_RULE = re.compile(
    r"^\s*([a-z_][a-z0-9_]*)\s*(<=|>=|=|<|>)\s*"
    r"([a-z_][a-z0-9_]*(?:\s*\+\s*[a-z_][a-z0-9_]*)*)\s*$"
)


# -- reports kept from the API -------------------------------------------------------


def store_reports(
    conn: sqlite3.Connection,
    rows: list[dict[str, Any]],
    first: date,
    last: date,
    sync_id: int | None,
) -> int:
    """Keep the API's daily totals for the UTC days first..last, replacing older ones.

    A campaign-day the API leaves out had no activity. Rows for unknown campaigns, or
    that are not the contract's shape, are skipped. A figure read again unchanged keeps
    the sync that first read it (`figures_sync_id`), and so does a day whose report is
    unchanged as a whole: `healed_campaign_days` compares heals with it. Returns the
    rows stored.
    """
    known = {row[0] for row in conn.execute("SELECT id FROM campaigns")}
    fetched = utc_now()
    columns = ", ".join(REPORT_METRICS)
    span = (first.isoformat(), last.isoformat())
    before: dict[tuple[int, str], tuple[tuple[int, ...], int | None]] = {
        (row[0], row[1]): (tuple(row[2:-1]), row[-1])
        for row in conn.execute(
            f"SELECT campaign_id, day, {columns}, figures_sync_id FROM api_reports "
            "WHERE day >= ? AND day <= ?",
            span,
        )
    }
    days_before = dict(
        conn.execute(
            "SELECT day, figures_sync_id FROM api_report_days "
            "WHERE day >= ? AND day <= ?",
            span,
        ).fetchall()
    )

    figures: dict[tuple[int, str], tuple[int, ...]] = {}
    for row in rows:
        try:
            campaign_id = row["campaign_id"]
            day = date.fromisoformat(row["date"])
            values = tuple(row[metric] for metric in REPORT_METRICS)
        except (KeyError, TypeError, ValueError):
            continue
        valid = all(isinstance(v, int) and v >= 0 for v in values)
        if campaign_id in known and first <= day <= last and valid:
            figures[(campaign_id, day.isoformat())] = values
    kept = []
    for key, values in figures.items():
        old = before.get(key)
        since = old[1] if old is not None and old[0] == values else sync_id
        kept.append((*key, *values, fetched, sync_id, since))

    conn.execute("DELETE FROM api_reports WHERE day >= ? AND day <= ?", span)
    marks = ", ".join("?" for _ in REPORT_METRICS)
    conn.executemany(
        f"INSERT INTO api_reports (campaign_id, day, {columns}, fetched_at, sync_id, "
        f"figures_sync_id) VALUES (?, ?, {marks}, ?, ?, ?)",
        kept,
    )
    old_days: dict[str, dict[int, tuple[int, ...]]] = defaultdict(dict)
    for (campaign_id, text), (values, _) in before.items():
        old_days[text][campaign_id] = values
    new_days: dict[str, dict[int, tuple[int, ...]]] = defaultdict(dict)
    for (campaign_id, text), values in figures.items():
        new_days[text][campaign_id] = values
    day = first
    while day <= last:
        text = day.isoformat()
        same = text in days_before and old_days[text] == new_days[text]
        since = days_before[text] if same else sync_id
        conn.execute(
            "INSERT INTO api_report_days (day, fetched_at, sync_id, figures_sync_id) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (day) DO UPDATE SET fetched_at = excluded.fetched_at, "
            "sync_id = excluded.sync_id, figures_sync_id = excluded.figures_sync_id",
            (text, fetched, sync_id, since),
        )
        day += timedelta(days=1)
    return len(kept)


def report_days(last_complete_hour: int, days: int) -> tuple[date, date] | None:
    """The last `days` UTC days that ended by `last_complete_hour` (exclusive end)."""
    last = date(1970, 1, 1) + timedelta(days=last_complete_hour // 24 - 1)
    if days < 1:
        return None
    return last - timedelta(days=days - 1), last


# -- reconciliation ------------------------------------------------------------------


@dataclass
class Difference:
    campaign_id: int
    day: str
    metric: str
    warehouse: int
    api: int

    @property
    def delta(self) -> int:
        return self.warehouse - self.api


@dataclass
class Reconciliation:
    first_day: str | None
    last_day: str | None
    days: int = 0
    campaign_days: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def differing_campaign_days(self) -> set[tuple[int, str]]:
        return {(d.campaign_id, d.day) for d in self.differences}


def coverage_start(conn: sqlite3.Connection) -> int | None:
    """The first hour the warehouse read for every campaign: nothing before it is
    expected (loading older days is `sync-historical`'s work)."""
    return conn.execute(
        "SELECT min(start_hour) FROM sync_windows "
        "WHERE status = 'done' AND campaign_id IS NULL"
    ).fetchone()[0]


def reconcile(
    conn: sqlite3.Connection,
    first: date,
    last: date,
    *,
    tolerance: float = 0.0,
    campaign_id: int | None = None,
) -> Reconciliation:
    """The warehouse's UTC daily sums against the API's reports, on the days fetched.

    Days that start before the warehouse's first synced hour are left out. A difference
    counts when it is larger than `tolerance` times the API's figure (0: any difference
    counts).
    """
    begins = coverage_start(conn)
    if begins is None:
        return Reconciliation(None, None)
    first = max(first, _UNIX_DAY + timedelta(days=-(-begins // 24)))
    fetched = [
        date.fromisoformat(row[0])
        for row in conn.execute(
            "SELECT day FROM api_report_days WHERE day >= ? AND day <= ? ORDER BY day",
            (first.isoformat(), last.isoformat()),
        )
    ]
    result = Reconciliation(
        fetched[0].isoformat() if fetched else None,
        fetched[-1].isoformat() if fetched else None,
        len(fetched),
    )
    if not fetched:
        return result

    api: dict[tuple[int, str], tuple[int, ...]] = {}
    scope = "" if campaign_id is None else " AND campaign_id = :campaign"
    for row in conn.execute(
        f"SELECT campaign_id, day, {', '.join(REPORT_METRICS)} FROM api_reports "
        f"WHERE day >= :first AND day <= :last{scope}",
        {
            "first": fetched[0].isoformat(),
            "last": fetched[-1].isoformat(),
            "campaign": campaign_id,
        },
    ):
        api[(row[0], row[1])] = tuple(row[2:])

    days = {day.isoformat() for day in fetched}
    stored: dict[tuple[int, str], tuple[int, ...]] = {}
    spans = day_spans(fetched[0], fetched[-1], ZoneInfo("UTC"))
    for row in hourly_day_sums(conn, spans, REPORT_METRICS, campaign_id):
        if row[0] in days:
            stored[(row[1], row[0])] = tuple(row[2:])

    zero = (0,) * len(REPORT_METRICS)
    keys = sorted(set(api) | set(stored), key=lambda k: (k[1], k[0]))
    result.campaign_days = len(keys)
    for key in keys:
        ours, theirs = stored.get(key, zero), api.get(key, zero)
        for metric, mine, reported in zip(REPORT_METRICS, ours, theirs, strict=True):
            if abs(mine - reported) > tolerance * reported:
                result.differences.append(
                    Difference(key[0], key[1], metric, mine, reported)
                )
    return result


def healed_campaign_days(
    conn: sqlite3.Connection, campaign_days: set[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    """For each (campaign, UTC day) a heal already re-read, that heal's sync id.

    That is the newest heal whose finished windows read every hour of the day for the
    campaign, if it is no older than the sync that first read the report figures held
    now (`figures_sync_id` of the campaign-day, or of the day when the report leaves the
    campaign out). The heal compared the API's hours with the same figures, so a
    difference left is the API's own, and another heal would read the same numbers. The
    ordinary syncs after it read the report again, but figures they find unchanged keep
    their first reader, so they do not hide the heal.
    """
    if not campaign_days:
        return {}
    windows: dict[int, list[tuple[int, int, int | None]]] = defaultdict(list)
    for sync_id, start, end, campaign_id in conn.execute(
        "SELECT w.sync_id, w.start_hour, w.end_hour, w.campaign_id "
        "FROM sync_windows AS w JOIN sync_history AS s ON s.id = w.sync_id "
        "WHERE s.sync_type = 'heal' AND w.status = 'done' ORDER BY w.start_hour"
    ):
        windows[sync_id].append((start, end, campaign_id))
    if not windows:
        return {}

    days = sorted({day for _, day in campaign_days})
    span = (days[0], days[-1])
    day_since = dict(
        conn.execute(
            "SELECT day, figures_sync_id FROM api_report_days "
            "WHERE day >= ? AND day <= ?",
            span,
        ).fetchall()
    )
    row_since = {
        (row[0], row[1]): row[2]
        for row in conn.execute(
            "SELECT campaign_id, day, figures_sync_id FROM api_reports "
            "WHERE day >= ? AND day <= ?",
            span,
        )
    }
    found = {}
    for campaign_id, day in campaign_days:
        key = (campaign_id, day)
        since = row_since[key] if key in row_since else day_since.get(day)
        lo, hi = days_to_hours(date.fromisoformat(day), date.fromisoformat(day))
        for heal in sorted(windows, reverse=True):
            if heal < (since or 0):
                break  # this heal, and every older one, read the hours before the figures
            spans = [
                (start, end)
                for start, end, scope in windows[heal]
                if scope is None or scope == campaign_id
            ]
            if uncovered(spans, lo, hi) == 0:
                found[key] = heal
                break
    return found


# -- completeness --------------------------------------------------------------------


def covered_spans(
    conn: sqlite3.Connection, campaign_id: int | None = None
) -> list[tuple[int, int]]:
    """Hours read by finished sync windows for every campaign (or this one), merged."""
    return merge_spans(
        conn.execute(
            "SELECT start_hour, end_hour FROM sync_windows WHERE status = 'done' "
            "AND (campaign_id IS NULL OR campaign_id IS ?) ORDER BY start_hour",
            (campaign_id,),
        )
    )


def uncovered(spans: list[tuple[int, int]], start: int, end: int) -> int:
    """How many hours of [start, end) no span covers (spans merged, in order)."""
    return sum(hi - lo for lo, hi in uncovered_spans(spans, start, end))


def uncovered_spans(
    spans: list[tuple[int, int]], start: int, end: int
) -> list[tuple[int, int]]:
    """The runs of hours of [start, end) that no span covers (spans merged, in order)."""
    runs = []
    cursor = start
    for lo, hi in spans:
        if hi <= cursor:
            continue
        if lo >= end:
            break
        if lo > cursor:
            runs.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < end:
        runs.append((cursor, end))
    return runs


@dataclass(frozen=True)
class DayCoverage:
    """How much of one report day the syncs have read."""

    day: date
    hours: int
    read: int
    to_come: int

    @property
    def partial(self) -> bool:
        """Some of the day read or over, not all: stated in hours, never merged."""
        return self.to_come < self.hours and (self.read > 0 or self.to_come > 0)

    @property
    def state(self) -> str:
        if self.to_come == self.hours:
            return "still to come"
        if self.read == 0 and self.to_come == 0:
            return "not read"
        return f"{self.read} of {self.hours} hours read"


def short_days(
    conn: sqlite3.Connection, period: ReportPeriod, now_hour: int
) -> list[DayCoverage]:
    """The days of `period` whose totals are short: hours no finished sync window for
    every campaign has read, or hours not over yet (from `now_hour` on).

    Stored hours alone cannot tell a quiet hour from one never read, since hours without
    activity are not stored; the sync ledger (`sync_windows`) can.
    """
    spans = covered_spans(conn)
    short = []
    for day, lo, hi in period.spans():
        past_end = max(lo, min(hi, now_hour))
        read = past_end - lo - uncovered(spans, lo, past_end)
        if read < hi - lo:
            short.append(DayCoverage(day, hi - lo, read, hi - past_end))
    return short


def describe_short_days(short: list[DayCoverage], limit: int = 6) -> str:
    """`2026-11-05 to 2026-11-26 (not read), 2026-12-04 (5 of 24 hours read)`: runs of
    consecutive days in the same state, at most `limit` of them."""
    runs: list[list[DayCoverage]] = []
    for item in short:
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and item.state == last.state
            and (item.day - last.day).days == 1
            and not item.partial
        ):
            runs[-1].append(item)
        else:
            runs.append([item])
    parts = [
        f"{run[0].day}{f' to {run[-1].day}' if len(run) > 1 else ''} ({run[0].state})"
        for run in runs[:limit]
    ]
    if len(runs) > limit:
        parts.append(f"and {len(runs) - limit} more")
    return ", ".join(parts)


@dataclass
class Gap:
    campaign_id: int
    day: str
    hours_in_day: int
    missing_hours: int


def quality_days(now_hour: int, days: int, zone: ZoneInfo) -> tuple[date, date]:
    """The last `days` whole days in `zone` before the day in progress: the days that
    completeness checks (and `sync --heal` reads the unread hours of)."""
    today = datetime.fromtimestamp(now_hour * 3600, zone).date()
    return today - timedelta(days=max(days, 1)), today - timedelta(days=1)


def _serving_day_spans(
    conn: sqlite3.Connection, first: date, last: date, zone: ZoneInfo, end_hour: int
) -> list[tuple[int, str, int, int, list[tuple[int, int]]]]:
    """(campaign, day, first hour, end hour, spans read for it) for every serving
    campaign and day of first..last from the warehouse's first synced hour on."""
    begins = coverage_start(conn)
    if begins is None:
        return []
    global_spans = covered_spans(conn)
    per_campaign = {
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT campaign_id FROM sync_windows "
            "WHERE status = 'done' AND campaign_id IS NOT NULL"
        )
    }
    serving = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM campaigns WHERE is_serving AND NOT is_deleted ORDER BY id"
        )
    ]
    own_spans = {
        campaign_id: covered_spans(conn, campaign_id) for campaign_id in per_campaign
    }
    found = []
    for day, lo, hi in day_spans(first, last, zone):
        lo, hi = max(lo, begins), min(hi, end_hour)
        if hi <= lo:
            continue
        for campaign_id in serving:
            spans = own_spans.get(campaign_id, global_spans)
            found.append((campaign_id, day.isoformat(), lo, hi, spans))
    return found


def completeness(
    conn: sqlite3.Connection, first: date, last: date, zone: ZoneInfo, end_hour: int
) -> tuple[int, list[Gap]]:
    """(campaign-hours expected, gaps) for serving campaigns over the days first..last.

    Hours from `end_hour` on (not complete yet) are not expected.
    """
    expected = 0
    gaps = []
    for campaign_id, day, lo, hi, spans in _serving_day_spans(
        conn, first, last, zone, end_hour
    ):
        expected += hi - lo
        missing = uncovered(spans, lo, hi)
        if missing:
            gaps.append(Gap(campaign_id, day, hi - lo, missing))
    return expected, gaps


def unread_hours(
    conn: sqlite3.Connection, first: date, last: date, zone: ZoneInfo, end_hour: int
) -> list[tuple[int, int]]:
    """The hours `completeness` counts as never read, for any serving campaign, as
    merged [start, end) runs: what `sync --heal` reads for completeness."""
    return merge_spans(
        sorted(
            run
            for _, _, lo, hi, spans in _serving_day_spans(
                conn, first, last, zone, end_hour
            )
            for run in uncovered_spans(spans, lo, hi)
        )
    )


# -- plausibility --------------------------------------------------------------------


@dataclass(frozen=True)
class PlausibilityRule:
    text: str
    left: str
    op: str
    right: tuple[str, ...]

    def violated_sql(self) -> str:
        """A SQL condition true for rows that break the rule (columns of `d`)."""
        right = " + ".join(f"d.{name}" for name in self.right)
        op = {"=": "!=", "<=": ">", ">=": "<", "<": ">=", ">": "<="}[self.op]
        return f"d.{self.left} {op} {right}"


def parse_rule(
    text: str, names: tuple[str, ...] | None = BUILTIN_METRICS
) -> PlausibilityRule:
    """`metric (=|<=|>=|<|>) metric [+ metric ...]`; ConfigError names what is wrong.

    Each name must be one of `names`, the warehouse's metrics (`metrics.of`), which may
    include added ones; None checks the form only, as the settings do before any
    warehouse is open.
    """
    match = _RULE.match(text)
    if not match:
        raise ConfigError(
            f"Plausibility rule {text!r} is not of the form "
            "'metric = metric + metric' (or <=, >=, <, >).",
            key="quality.plausibility",
        )
    left, op, right = match.group(1), match.group(2), match.group(3)
    named = (left, *(part.strip() for part in right.split("+")))
    unknown = [name for name in named if names is not None and name not in names]
    if unknown:
        raise ConfigError(
            f"Plausibility rule {text!r} names {', '.join(unknown)}, not a metric; "
            f"metrics are {', '.join(names or ())}. Fix quality.plausibility, or store "
            "a field the API sends with `peachdw metrics add NAME`.",
            key="quality.plausibility",
        )
    return PlausibilityRule(text.strip(), left, op, named[1:])


@dataclass
class Violation:
    campaign_id: int
    unix_hour: int
    rule: str
    values: dict[str, int]


def violations(
    conn: sqlite3.Connection,
    rules: list[PlausibilityRule],
    start_hour: int,
    end_hour: int,
    *,
    campaign_id: int | None = None,
    limit: int | None = None,
) -> tuple[dict[str, int], list[Violation]]:
    """(count per rule, the violating rows up to `limit` per rule) in [start, end)."""
    counts: dict[str, int] = {}
    found: list[Violation] = []
    scope = "" if campaign_id is None else " AND c.id = :campaign"
    for rule in rules:
        names = (rule.left, *rule.right)
        rows = conn.execute(
            f"SELECT c.id, d.unix_hour, {', '.join(f'd.{n}' for n in names)} "
            "FROM campaigns AS c CROSS JOIN hourly_data AS d ON d.campaign_id = c.id "
            f"WHERE d.unix_hour >= :start AND d.unix_hour < :end{scope} "
            f"AND {rule.violated_sql()} ORDER BY d.unix_hour, c.id",
            {"start": start_hour, "end": end_hour, "campaign": campaign_id},
        ).fetchall()
        counts[rule.text] = len(rows)
        for row in rows[:limit]:
            found.append(
                Violation(
                    row[0], row[1], rule.text, dict(zip(names, row[2:], strict=True))
                )
            )
    return counts, found


# -- the score -----------------------------------------------------------------------


def score(parts: dict[str, float | None]) -> float | None:
    """0 to 100: the weighted mean of the parts that could be measured (each a share
    from 0 to 1); a part with nothing to measure (None) leaves the others' weights."""
    measured = {name: share for name, share in parts.items() if share is not None}
    weight = sum(SCORE_WEIGHTS[name] for name in measured)
    if not weight:
        return None
    total = sum(SCORE_WEIGHTS[name] * share for name, share in measured.items())
    return round(100 * total / weight, 1)


def as_json(value: Any) -> Any:
    """Dataclasses and dates as plain JSON values."""
    if hasattr(value, "__dataclass_fields__"):
        return as_json(asdict(value))
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [as_json(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def utc_day(unix_hour: int) -> date:
    return datetime.fromtimestamp(unix_hour * 3600, UTC).date()
