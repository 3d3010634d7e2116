"""What the warehouse holds and how the last syncs went, as plain data for the CLI."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from peachdw.hours import hour_text
from peachdw.rules import FALLBACK, TIERS
from peachdw.sync import LEDGER_COUNTERS

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
    )


def check_problems(
    conn: sqlite3.Connection, *, max_lag_hours: int, now_hour: int
) -> list[str]:
    """One sentence per reason to alert: stale data, or a last sync that did not succeed.

    Freshness is the end of the newest finished window of any sync, so a campaign with no
    traffic does not look stale.
    """
    problems = []
    latest = conn.execute(
        "SELECT id, status, error_message FROM sync_history ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if latest is None:
        return ["No sync has run yet: run `peachdw sync`."]
    if latest["status"] not in ("success", "running"):
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
