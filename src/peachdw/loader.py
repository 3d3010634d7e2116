"""Writing validated records into the warehouse.

The loader knows nothing of HTTP: it takes plain lists of records, so it can be tested and
benchmarked on its own. Writes are `INSERT ... ON CONFLICT DO UPDATE`, never `INSERT OR
REPLACE`, which deletes the old row and resets every column it does not name
(https://sqlite.org/lang_conflict.html). A row whose values did not change is not written.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from peachdw import rollup
from peachdw.db import utc_now
from peachdw.metrics import BUILTIN_METRICS
from peachdw.records import (
    CAMPAIGN_FIELDS,
    Campaign,
    HourlyRow,
    MetricsWindow,
    Rejection,
    Row,
)

log = logging.getLogger(__name__)

#: A listing missing more than this share of the active campaigns (and more than the
#: floor) soft-deletes none of them.
MASS_VANISH_SHARE = 0.5
MASS_VANISH_FLOOR = 5

#: Rejected rows kept per window in `rejected_rows`; all of them are counted.
MAX_REJECTIONS_STORED = 1000


@functools.lru_cache(maxsize=64)
def _hourly_sql(metrics: tuple[str, ...], sync_id: int | None, *, upsert: bool) -> str:
    """The insert (or upsert) of rows of `metrics` for one sync.

    The sync id is the same on every row, so it is written into the statement (an integer
    the warehouse made, never input) and the rows go to SQLite as they are, without
    building a new tuple for each.
    """
    lineage = "NULL" if sync_id is None else str(int(sync_id))
    columns = ("campaign_id", "unix_hour", *metrics)
    placeholders = ", ".join("?" * len(columns))
    updates = ", ".join(f"{name} = excluded.{name}" for name in (*metrics, "sync_id"))
    sql = (
        f"INSERT INTO hourly_data ({', '.join(columns)}, sync_id) "
        f"VALUES ({placeholders}, {lineage})"
    )
    if upsert:
        sql += f" ON CONFLICT (campaign_id, unix_hour) DO UPDATE SET {updates}"
    return sql


@functools.lru_cache(maxsize=16)
def _stored_hours_sql(metrics: tuple[str, ...], one_campaign: bool) -> str:
    # Driven from campaigns so each campaign is one seek on the primary key. CROSS JOIN
    # fixes that order: without statistics the planner may scan the whole table instead
    # (https://sqlite.org/optoverview.html#manual_control_of_query_plans_using_cross_join).
    sql = (
        f"SELECT h.campaign_id, h.unix_hour, {', '.join('h.' + m for m in metrics)} "
        "FROM campaigns AS c CROSS JOIN hourly_data AS h ON h.campaign_id = c.id "
        "WHERE h.unix_hour >= ? AND h.unix_hour < ?"
    )
    return sql + " AND c.id = ?" if one_campaign else sql


_DELETE_HOURLY = "DELETE FROM hourly_data WHERE campaign_id = ? AND unix_hour = ?"


@dataclass
class HourlyPlan:
    """What writing one window would do, decided before anything is written."""

    #: The metrics of every row and stored value below, in order (the window's).
    metrics: tuple[str, ...] = BUILTIN_METRICS
    #: Hours not stored yet, stored hours whose values changed, and stored hours the
    #: window now reads as zeros.
    inserts: list[Row] = field(default_factory=list)
    updates: list[Row] = field(default_factory=list)
    deletes: list[tuple[int, int]] = field(default_factory=list)
    unchanged: int = 0
    #: Rows the response itself rejected, and rows for campaigns the listing lacks.
    window_rejected: list[Rejection] = field(default_factory=list)
    unknown_campaign: list[Rejection] = field(default_factory=list)
    #: The oldest stored hour this window changes (updates or zeroes), if any.
    oldest_changed_hour: int | None = None
    #: The stored values of the hours it updates or deletes, by (campaign, hour): what
    #: the write takes away, which the daily rollup subtracts (rollup.apply).
    previous: dict[tuple[int, int], tuple] = field(default_factory=dict)

    @property
    def inserted(self) -> int:
        return len(self.inserts)

    @property
    def updated(self) -> int:
        return len(self.updates)

    @property
    def zeroed(self) -> int:
        return len(self.deletes)

    @property
    def changed(self) -> int:
        """Stored hours this window changes: restatements by the API."""
        return len(self.updates) + len(self.deletes)

    @property
    def rejected(self) -> list[Rejection]:
        return [*self.window_rejected, *self.unknown_campaign]


@dataclass
class CampaignCounts:
    seen: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    changed_ids: list[int] = field(default_factory=list)
    #: Campaigns missing from the listing that were kept, because too many went missing.
    vanished_kept: int = 0


def plan_hourly(
    conn: sqlite3.Connection, window: MetricsWindow, known_campaigns: set[int]
) -> HourlyPlan:
    """Compare a window with what is stored and decide every write.

    The contract reads a missing hour as zeros, so an all-zero hour is never stored, and a
    stored hour that the window no longer carries (and did not reject) is deleted, for the
    campaigns the window reports on.
    """
    plan = HourlyPlan(metrics=window.metrics, window_rejected=window.rejected)
    zero = (0,) * len(window.metrics)
    stored = _stored_hours(conn, window)
    rows = window.rows
    if not known_campaigns.issuperset({row[0] for row in rows}):
        rows = _drop_unknown_campaigns(rows, known_campaigns, plan)

    if not stored:
        # A window read for the first time: every hour with activity is new.
        plan.inserts = [row for row in rows if row[2:] != zero]
        plan.unchanged = len(rows) - len(plan.inserts)
        return plan

    changed_hours = []
    for row in rows:
        key = (row[0], row[1])
        values = row[2:]
        previous = stored.pop(key, None)
        if previous == values or (previous is None and values == zero):
            plan.unchanged += 1
        elif previous is None:
            plan.inserts.append(row)
        elif values == zero:
            plan.deletes.append(key)
            plan.previous[key] = previous
        else:
            plan.updates.append(row)
            plan.previous[key] = previous
            changed_hours.append(row[1])

    if window.has_unkeyed_rejections:
        # A rejected row we cannot place might be any stored hour: zero none of them.
        log.warning(
            "Window %d-%d has rejected rows without a campaign and hour; "
            "stored hours it left out are kept",
            window.start_hour,
            window.end_hour,
        )
    else:
        # Only for campaigns the response does report on: a campaign absent from the
        # whole response (deleted, or filtered out by the API) keeps its hours.
        reported = {row[0] for row in rows}
        kept = window.rejected_keys
        for key, previous in stored.items():
            if key[0] in reported and key not in kept:
                plan.deletes.append(key)
                plan.previous[key] = previous

    changed_hours.extend(hour for _, hour in plan.deletes)
    plan.oldest_changed_hour = min(changed_hours, default=None)
    return plan


def _drop_unknown_campaigns(
    rows: list[Row], known_campaigns: set[int], plan: HourlyPlan
) -> list[Row]:
    kept = []
    for row in rows:
        if row[0] in known_campaigns:
            kept.append(row)
            continue
        plan.unknown_campaign.append(
            Rejection(
                f"campaign {row[0]} is not in the campaign listing",
                row[0],
                row[1],
                "campaign_id",
            )
        )
    return kept


def _stored_hours(
    conn: sqlite3.Connection, window: MetricsWindow
) -> dict[tuple[int, int], tuple]:
    sql = _stored_hours_sql(window.metrics, window.campaign_id is not None)
    params: list[int] = [window.start_hour, window.end_hour]
    if window.campaign_id is not None:
        params.append(window.campaign_id)
    return {(r[0], r[1]): tuple(r[2:]) for r in conn.execute(sql, params)}


def apply_hourly(
    conn: sqlite3.Connection, plan: HourlyPlan, sync_id: int | None
) -> None:
    """Carry out a plan inside the caller's transaction, and keep the daily rollup in
    step with it there, in the zone the rollup is built in (rollup.py)."""
    # New hours take a plain INSERT: the plan was made inside this write transaction, so
    # they cannot exist, and if one did the insert would fail loudly rather than replace.
    # It is a third faster than the upsert, which changed hours take.
    if plan.inserts:
        conn.executemany(_hourly_sql(plan.metrics, sync_id, upsert=False), plan.inserts)
    if plan.updates:
        conn.executemany(_hourly_sql(plan.metrics, sync_id, upsert=True), plan.updates)
    if plan.deletes:
        conn.executemany(_DELETE_HOURLY, plan.deletes)

    zone = rollup.built_zone(conn)
    if zone is not None:
        rollup.apply(conn, plan, zone)


def record_rejections(
    conn: sqlite3.Connection, sync_id: int, rejections: Iterable[Rejection]
) -> int:
    """Store why rows were rejected (up to a cap) and return how many there were."""
    rejections = list(rejections)
    conn.executemany(
        "INSERT INTO rejected_rows (sync_id, campaign_id, unix_hour, field, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (sync_id, r.campaign_id, r.unix_hour, r.field, r.reason)
            for r in rejections[:MAX_REJECTIONS_STORED]
        ],
    )
    return len(rejections)


def record_drift(
    conn: sqlite3.Connection, endpoint: str, fields: Counter[str], sync_id: int | None
) -> None:
    """Remember fields the API sent that the warehouse does not know yet."""
    if not fields:
        return
    now = utc_now()
    conn.executemany(
        "INSERT INTO schema_drift (endpoint, field, first_seen_at, last_seen_at, "
        "first_sync_id, last_sync_id, occurrences) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (endpoint, field) DO UPDATE SET last_seen_at = excluded.last_seen_at, "
        "last_sync_id = excluded.last_sync_id, "
        "occurrences = occurrences + excluded.occurrences",
        [(endpoint, name, now, now, sync_id, sync_id, n) for name, n in fields.items()],
    )
    for name, count in fields.items():
        log.warning(
            "The API sent a field the warehouse does not know: %s.%s (%d times)",
            endpoint,
            name,
            count,
        )


def upsert_campaigns(
    conn: sqlite3.Connection,
    campaigns: list[Campaign],
    sync_id: int | None,
    *,
    listing_complete: bool = True,
    dry_run: bool = False,
) -> CampaignCounts:
    """Insert new campaigns, update changed ones and soft-delete vanished ones.

    A field the API did not send keeps its stored value. A campaign gone from a complete
    listing, or sent with `deleted_at`, is marked deleted; its row and hours stay.
    """
    counts = CampaignCounts(seen=len(campaigns))
    stored = {
        row["id"]: dict(row)
        for row in conn.execute(
            f"SELECT {', '.join(CAMPAIGN_FIELDS)}, is_deleted FROM campaigns"
        )
    }

    for campaign in campaigns:
        sent = {name: getattr(campaign, name) for name in campaign.model_fields_set}
        sent["id"] = campaign.id
        if "is_serving" in sent:
            sent["is_serving"] = int(sent["is_serving"])
        previous = stored.get(campaign.id)
        merged = {**(previous or {}), **sent}
        sent["is_deleted"] = int(merged.get("deleted_at") is not None)

        if previous is None:
            counts.inserted += 1
            counts.changed_ids.append(campaign.id)
        elif any(previous.get(name) != value for name, value in sent.items()):
            counts.updated += 1
            counts.changed_ids.append(campaign.id)
            if sent["is_deleted"] and not previous["is_deleted"]:
                counts.deleted += 1
        else:
            counts.unchanged += 1
            continue

        if not dry_run:
            _upsert_campaign(conn, sent, sync_id)

    if listing_complete:
        listed = {campaign.id for campaign in campaigns}
        vanished = [
            cid
            for cid, row in stored.items()
            if cid not in listed and not row["is_deleted"]
        ]
        active = sum(1 for row in stored.values() if not row["is_deleted"])
        if len(vanished) > max(MASS_VANISH_FLOOR, active * MASS_VANISH_SHARE):
            # Half the campaigns gone at once is more likely a different API or a
            # broken listing than a marketing decision: delete nothing, say so.
            log.warning(
                "%d of %d active campaigns are missing from the listing; none are "
                "marked deleted. Check api.base_url; if they really are gone, mark "
                "them in the API.",
                len(vanished),
                active,
            )
            counts.vanished_kept = len(vanished)
            vanished = []
        counts.deleted += len(vanished)
        if vanished and not dry_run:
            conn.executemany(
                "UPDATE campaigns SET is_deleted = 1, "
                "deleted_at = COALESCE(deleted_at, ?), last_sync_id = ? WHERE id = ?",
                [(utc_now(), sync_id, cid) for cid in vanished],
            )
    return counts


def _upsert_campaign(
    conn: sqlite3.Connection, values: dict, sync_id: int | None
) -> None:
    columns = [*values, "first_sync_id", "last_sync_id"]
    updates = [name for name in values if name != "id"] + ["last_sync_id"]
    conn.execute(
        f"INSERT INTO campaigns ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) "
        "ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in updates),
        [*values.values(), sync_id, sync_id],
    )


def known_campaign_ids(conn: sqlite3.Connection) -> set[int]:
    return {row[0] for row in conn.execute("SELECT id FROM campaigns")}


__all__ = [
    "CampaignCounts",
    "HourlyPlan",
    "HourlyRow",
    "apply_hourly",
    "plan_hourly",
    "record_drift",
    "record_rejections",
    "upsert_campaigns",
]
