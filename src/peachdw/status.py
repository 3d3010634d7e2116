"""What the warehouse holds and how the last syncs went, as plain data for the CLI."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from peachdw import metrics, quality
from peachdw.db import utc_now
from peachdw.errors import ConfigError
from peachdw.hours import days_to_hours, hour_iso, hour_text
from peachdw.rules import FALLBACK, TIERS
from peachdw.sync import LEDGER_COUNTERS, process_alive

#: Mappings below this confidence are listed as needing a look.
LOW_CONFIDENCE = 0.8


@dataclass
class WarehouseStatus:
    schema_version: int
    campaigns_serving: int
    campaigns_paused: int
    campaigns_deleted: int
    hourly_rows: int
    first_hour: int | None
    latest_hour: int | None
    syncs: list[dict[str, Any]] = field(default_factory=list)
    unmapped: list[dict[str, Any]] = field(default_factory=list)
    mapped: int = 0
    #: (reason, count) for the rows the latest sync rejected, most frequent first.
    rejections: list[tuple[str, int]] = field(default_factory=list)
    #: first_hour and latest_hour (unix hours) as ISO 8601 UTC times, for people.
    first_hour_utc: str | None = None
    latest_hour_utc: str | None = None


def collect_status(conn: sqlite3.Connection, *, sync_limit: int = 5) -> WarehouseStatus:
    counts = conn.execute(
        "SELECT "
        "coalesce(sum(is_deleted = 0 AND is_serving = 1), 0), "
        "coalesce(sum(is_deleted = 0 AND is_serving = 0), 0), "
        "coalesce(sum(is_deleted = 1), 0) FROM campaigns"
    ).fetchone()
    hours = conn.execute(
        "SELECT count(*), min(unix_hour), max(unix_hour) FROM hourly_data"
    ).fetchone()
    # A sync still running has written only its ledger so far.
    live = ", ".join(
        f"CASE WHEN status = 'running' THEN (SELECT coalesce(sum(w.{name}), 0) "
        f"FROM sync_windows AS w WHERE w.sync_id = s.id) ELSE {name} END AS {name}"
        for name in LEDGER_COUNTERS
    )
    syncs = [
        dict(row)
        for row in conn.execute(
            "SELECT id, sync_type, status, started_at, finished_at, window_start_hour, "
            f"window_end_hour, records_processed, {live}, records_restated, "
            "restated_oldest_hour, api_calls, api_retries, pid, error_message "
            "FROM sync_history AS s ORDER BY id DESC LIMIT ?",
            (sync_limit,),
        )
    ]
    for sync in syncs:
        # Unix hours for tools, ISO 8601 for people reading the JSON; the end is
        # exclusive, as in the columns.
        for column in ("window_start_hour", "window_end_hour", "restated_oldest_hour"):
            sync[column.replace("_hour", "_utc")] = hour_iso(sync[column])
    unmapped = campaigns_to_check(conn)
    mapped = conn.execute("SELECT count(*) FROM campaign_hierarchy").fetchone()[0]
    # Reasons start with the field ("sessions: negative count -3"); group on the kind.
    rejections = [
        (row[0], row[1])
        for row in conn.execute(
            "SELECT CASE WHEN instr(reason, ': ') THEN "
            "substr(reason, 1, instr(reason, ': ') - 1) ELSE reason END AS field, "
            "count(*) FROM rejected_rows "
            "WHERE sync_id = (SELECT max(id) FROM sync_history) "
            "GROUP BY field ORDER BY count(*) DESC, field LIMIT 10"
        )
    ]
    return WarehouseStatus(
        schema_version=conn.execute("PRAGMA user_version").fetchone()[0],
        campaigns_serving=counts[0],
        campaigns_paused=counts[1],
        campaigns_deleted=counts[2],
        hourly_rows=hours[0],
        first_hour=hours[1],
        latest_hour=hours[2],
        syncs=syncs,
        unmapped=unmapped,
        mapped=mapped,
        rejections=rejections,
        first_hour_utc=hour_iso(hours[1]),
        latest_hour_utc=hour_iso(hours[2]),
    )


def check_problems(
    conn: sqlite3.Connection, *, max_lag_hours: int, now_hour: int
) -> list[str]:
    """One sentence per reason to alert: stale data, or a last sync that did not succeed
    (including one marked running whose process is gone, and a heal that ended
    unresolved).

    Freshness is the end of the newest finished window of any sync, so a campaign with no
    traffic does not look stale.
    """
    problems = []
    latest = conn.execute(
        "SELECT id, status, pid, error_message FROM sync_history "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if latest is None:
        return ["No sync has run yet: run `peachdw sync`."]
    if latest["status"] == "running" and not process_alive(latest["pid"]):
        # Killed with -9 or crashed: nothing closed its row, and it never will.
        problems.append(
            f"The last sync ({latest['id']}) is marked running but its process "
            f"{latest['pid']} is gone: it was killed or crashed; the next sync marks it "
            "interrupted and resumes."
        )
    elif latest["status"] == "unresolved":
        # A heal that read all it planned: its message says why it could not settle
        # everything (the API disagreeing with itself, or hours still never read).
        problems.append(
            f"The last sync, heal {latest['id']}, ended unresolved: "
            f"{latest['error_message']}"
        )
    elif latest["status"] not in ("success", "running"):
        problems.append(
            f"The last sync ({latest['id']}) ended {latest['status']}: "
            f"{latest['error_message'] or 'no reason recorded'}"
        )

    synced_to = conn.execute(
        "SELECT max(end_hour) FROM sync_windows WHERE status = 'done'"
    ).fetchone()[0]
    if synced_to is None:
        problems.append("No hour has been synced yet: run `peachdw sync`.")
    elif now_hour - synced_to > max_lag_hours:
        problems.append(
            f"Data is {now_hour - synced_to} hours old (newest synced hour ends "
            f"{hour_text(synced_to)}), more than quality.max_lag_hours ({max_lag_hours})."
        )
    return problems


def campaign_freshness(conn: sqlite3.Connection, now_hour: int) -> list[dict[str, Any]]:
    """For every serving campaign: its latest complete hour, the last hour of the newest
    finished window that read it (for all campaigns, or for it alone), how many hours
    that lags behind now, and its newest stored hour (a quiet campaign stores none)."""
    rows = conn.execute(
        "SELECT c.id, c.name, (SELECT max(w.end_hour) FROM sync_windows AS w "
        "WHERE w.status = 'done' AND (w.campaign_id IS NULL OR w.campaign_id = c.id)), "
        "(SELECT max(d.unix_hour) FROM hourly_data AS d WHERE d.campaign_id = c.id) "
        "FROM campaigns AS c WHERE c.is_serving AND NOT c.is_deleted ORDER BY c.id"
    )
    return [
        {
            "id": campaign_id,
            "name": name,
            # Windows' ends are exclusive: the last hour read is the one before.
            "latest_complete_hour": None if read_to is None else hour_text(read_to - 1),
            "lag_hours": None if read_to is None else now_hour - read_to,
            "latest_stored_hour": None if stored is None else hour_text(stored),
            "stored_lag_hours": None if stored is None else now_hour - stored - 1,
        }
        for campaign_id, name, read_to, stored in rows
    ]


def campaigns_to_check(
    conn: sqlite3.Connection, limit: int | None = None
) -> list[dict[str, Any]]:
    """Live campaigns with a fallback tier or a low confidence, most sessions first."""
    fallback_test = " OR ".join(f"h.{tier} = :fallback" for tier in TIERS)
    sql = (
        "SELECT c.id, c.name, h.mapping_confidence, "
        + ", ".join(f"h.{tier}" for tier in TIERS)
        + ", (SELECT coalesce(sum(d.sessions), 0) FROM hourly_data AS d "
        "WHERE d.campaign_id = c.id) AS sessions "
        "FROM campaigns AS c LEFT JOIN campaign_hierarchy AS h ON h.campaign_id = c.id "
        "WHERE c.is_deleted = 0 AND (h.campaign_id IS NULL "
        f"OR h.mapping_confidence < :low OR {fallback_test}) "
        "ORDER BY sessions DESC, c.id"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [
        dict(row)
        for row in conn.execute(sql, {"low": LOW_CONFIDENCE, "fallback": FALLBACK})
    ]


# -- status --detailed ----------------------------------------------------------------

#: Buckets of mapping confidence shown by `status --detailed`, highest first.
CONFIDENCE_BUCKETS = ((0.9, "0.9 to 1.0"), (0.8, "0.8 to 0.9"), (0.5, "0.5 to 0.8"))


def collect_detailed(
    conn: sqlite3.Connection,
    *,
    now_hour: int,
    zone: ZoneInfo,
    days: int,
    max_lag_hours: int,
    tolerance: float,
    plausibility: list[str],
) -> dict[str, Any]:
    """Everything `status --detailed` shows, as plain data (its --json document)."""
    first, last = quality.quality_days(now_hour, days, zone)
    start, end = days_to_hours(first, last, zone)

    synced_to = conn.execute(
        "SELECT max(end_hour) FROM sync_windows WHERE status = 'done'"
    ).fetchone()[0]
    serving = campaign_freshness(conn, now_hour)
    # Serving campaigns with no stored hour in the last 24: quiet, or broken.
    campaigns = [
        {
            "id": row["id"],
            "name": row["name"],
            "latest_hour": row["latest_stored_hour"],
            "lag_hours": row["stored_lag_hours"],
        }
        for row in serving
        if row["stored_lag_hours"] is None or row["stored_lag_hours"] > 24
    ]
    lag = None if synced_to is None else now_hour - synced_to
    freshness = {
        # The newest hour a finished window read (the windows' ends are exclusive).
        "newest_synced_hour": None if synced_to is None else hour_text(synced_to - 1),
        "lag_hours": lag,
        "max_lag_hours": max_lag_hours,
        "serving_campaigns": len(serving),
        "serving_campaigns_within_max_lag": sum(
            row["lag_hours"] is not None and row["lag_hours"] <= max_lag_hours
            for row in serving
        ),
        "campaigns": serving,
        "quiet_serving_campaigns": campaigns,
    }

    expected, gaps = quality.completeness(conn, first, last, zone, now_hour)
    missing = sum(gap.missing_hours for gap in gaps)
    completeness = {
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "timezone": zone.key,
        "campaign_hours_expected": expected,
        "campaign_hours_missing": missing,
        "gaps": gaps,
    }

    utc_first, utc_last = quality.report_days(now_hour, days) or (first, last)
    found = quality.reconcile(conn, utc_first, utc_last, tolerance=tolerance)
    healed = quality.healed_campaign_days(conn, found.differing_campaign_days)
    reconciliation = {
        "first_day": found.first_day,
        "last_day": found.last_day,
        "days_with_reports": found.days,
        "campaign_days": found.campaign_days,
        "tolerance": tolerance,
        "differing_campaign_days": len(found.differing_campaign_days),
        # Of those, the ones a heal already re-read: the API disagrees with itself.
        "healed_campaign_days": len(healed),
        "differences": [
            {
                **asdict(d),
                "delta": d.delta,
                "healed": (d.campaign_id, d.day) in healed,
                "heal_sync_id": healed.get((d.campaign_id, d.day)),
                "remedy": difference_remedy(healed.get((d.campaign_id, d.day))),
            }
            for d in found.differences
        ],
    }

    mapped = conn.execute(
        "SELECT h.mapping_confidence FROM campaigns AS c "
        "LEFT JOIN campaign_hierarchy AS h ON h.campaign_id = c.id "
        "WHERE NOT c.is_deleted"
    ).fetchall()
    distribution = {label: 0 for _, label in CONFIDENCE_BUCKETS}
    distribution["below 0.5"] = 0
    distribution["not mapped"] = 0
    for (confidence,) in mapped:
        if confidence is None:
            distribution["not mapped"] += 1
            continue
        label = next(
            (label for floor, label in CONFIDENCE_BUCKETS if confidence >= floor),
            "below 0.5",
        )
        distribution[label] += 1
    to_check = campaigns_to_check(conn)
    mapping = {"distribution": distribution, "to_check": to_check}

    rules = plausibility_rules(conn, plausibility)
    counts, _ = quality.violations(conn, rules, start, end)
    rows_checked = conn.execute(
        "SELECT count(*) FROM campaigns AS c CROSS JOIN hourly_data AS d "
        "ON d.campaign_id = c.id WHERE d.unix_hour >= ? AND d.unix_hour < ?",
        (start, end),
    ).fetchone()[0]
    violating = violating_rows(conn, rules, start, end)
    plausible = {
        "rows_checked": rows_checked,
        "rows_violating": violating,
        "by_rule": counts,
    }

    syncs = [
        dict(row)
        for row in conn.execute(
            "SELECT id, sync_type, status, started_at, records_rejected, "
            "records_restated, restated_oldest_hour FROM sync_history "
            "ORDER BY id DESC LIMIT 10"
        )
    ]
    for row in syncs:
        oldest = row["restated_oldest_hour"]
        row["restated_oldest_hour"] = None if oldest is None else hour_text(oldest)
    drift = drift_fields(conn)

    all_campaigns = len(mapped)
    parts = {
        "freshness": None if lag is None else float(lag <= max_lag_hours),
        "completeness": 1 - missing / expected if expected else None,
        "reconciliation": (
            1 - len(found.differing_campaign_days) / found.campaign_days
            if found.campaign_days
            else None
        ),
        "plausibility": (
            1 - violating / rows_checked if rows_checked and rules else None
        ),
        "mapping": (1 - len(to_check) / all_campaigns if all_campaigns else None),
    }
    return {
        "generated_at": utc_now(),
        "score": quality.score(parts),
        "score_parts": {
            name: None if share is None else round(share, 4)
            for name, share in parts.items()
        },
        "score_weights": quality.SCORE_WEIGHTS,
        "freshness": freshness,
        "completeness": completeness,
        "reconciliation": reconciliation,
        "mapping": mapping,
        "plausibility": plausible,
        "recent_syncs": syncs,
        "schema_drift": drift,
    }


def violating_rows(
    conn: sqlite3.Connection,
    rules: list[quality.PlausibilityRule],
    start: int,
    end: int,
) -> int:
    """Stored rows of [start, end) that break any of `rules`."""
    if not rules:
        return 0
    return conn.execute(
        "SELECT count(*) FROM campaigns AS c CROSS JOIN hourly_data AS d "
        "ON d.campaign_id = c.id WHERE d.unix_hour >= ? AND d.unix_hour < ? AND ("
        + " OR ".join(f"({rule.violated_sql()})" for rule in rules)
        + ")",
        (start, end),
    ).fetchone()[0]


def drift_fields(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Fields the API sends that the warehouse does not store, newest seen first."""
    # A field that became a metric (metrics.add) is stored, not drift.
    return [
        dict(row)
        for row in conn.execute(
            "SELECT endpoint, field, first_seen_at, last_seen_at, occurrences "
            "FROM schema_drift WHERE adopted_at IS NULL ORDER BY last_seen_at DESC"
        )
    ]


@dataclass
class ToLookInto:
    """What plain `status` mentions in one line, for `status --detailed` to show: the
    same checks over the same days, counted only."""

    differing_campaign_days: int = 0
    #: Of those, the ones a heal already re-read (the API disagrees with itself).
    healed_campaign_days: int = 0
    drift_fields: int = 0
    rows_violating: int = 0
    #: A rule of quality.plausibility that names no metric of the warehouse, if any.
    broken_rule: str | None = None


def to_look_into(
    conn: sqlite3.Connection,
    *,
    now_hour: int,
    zone: ZoneInfo,
    days: int,
    tolerance: float,
    plausibility: list[str],
) -> ToLookInto:
    """Counts of the reconciliation differences, drift and rule violations that
    `status --detailed` lists, over its days. Each check covers `days` days only, so
    this stays as quick on a year of data as on a week."""
    found = ToLookInto(drift_fields=len(drift_fields(conn)))
    window = quality.report_days(now_hour, days)
    if window is not None:
        differing = quality.reconcile(
            conn, *window, tolerance=tolerance
        ).differing_campaign_days
        found.differing_campaign_days = len(differing)
        found.healed_campaign_days = len(quality.healed_campaign_days(conn, differing))
    names = metrics.of(conn)
    rules = []
    for text in plausibility:
        try:
            rules.append(quality.parse_rule(text, names))
        except ConfigError:
            found.broken_rule = text
            return found
    first, last = quality.quality_days(now_hour, days, zone)
    found.rows_violating = violating_rows(
        conn, rules, *days_to_hours(first, last, zone)
    )
    return found


def plausibility_rules(
    conn: sqlite3.Connection, texts: list[str]
) -> list[quality.PlausibilityRule]:
    """The rules of quality.plausibility, checked against this warehouse's metrics; a
    rule naming anything else raises ConfigError with one line that names it."""
    names = metrics.of(conn)
    return [quality.parse_rule(text, names) for text in texts]


def reconciliation_problems(
    conn: sqlite3.Connection, *, now_hour: int, days: int, tolerance: float
) -> list[str]:
    """One sentence per campaign, day and metric whose sum differs from the API's report.

    Its remedy is a heal, unless a heal already re-read that campaign-day after (or with)
    the report figures held now (`quality.healed_campaign_days`): then the API's own
    hours and report disagree, and another heal would only read the same numbers again.
    """
    window = quality.report_days(now_hour, days)
    if window is None:
        return []
    found = quality.reconcile(conn, *window, tolerance=tolerance)
    healed = quality.healed_campaign_days(conn, found.differing_campaign_days)

    # A day with hours no sync has read falls short for every campaign active in
    # them: one line for the day, not one per campaign and metric.
    spans: dict[int, list[tuple[int, int]]] = {}
    unread: dict[tuple[int, str], int] = {}
    short: dict[str, dict[int, int]] = {}  # day -> {campaign: hours never read}
    problems = []
    for d in found.differences:
        key = (d.campaign_id, d.day)
        if key not in unread:
            if d.campaign_id not in spans:
                spans[d.campaign_id] = quality.covered_spans(conn, d.campaign_id)
            day = date.fromisoformat(d.day)
            unread[key] = quality.uncovered(
                spans[d.campaign_id], *days_to_hours(day, day)
            )
        if unread[key]:
            short.setdefault(d.day, {})[d.campaign_id] = unread[key]
            continue
        remedy = difference_remedy(healed.get(key))
        problems.append(
            f"Campaign {d.campaign_id} on {d.day}: {d.metric} is {d.warehouse:,} in the "
            f"warehouse and {d.api:,} in the API's report ({d.delta:+,}); {remedy}"
        )
    return [
        f"On {day} (UTC), {max(campaigns.values())} hour(s) were never read by a sync, "
        f"so {len(campaigns)} campaign(s) fall short of the API's report for the day; "
        "run `peachdw sync --heal`."
        for day, campaigns in sorted(short.items())
    ] + problems


def difference_remedy(heal: int | None) -> str:
    """What to do about a difference: heal, or, when heal `heal` already re-read the
    campaign-day with the report held now, ask the API's owners."""
    if heal is None:
        return "run `peachdw sync --heal`."
    return (
        f"heal {heal} re-read that day and it still differs: the API's hours and its own "
        "report disagree; ask the API's owners."
    )
