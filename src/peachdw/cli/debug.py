"""`peachdw debug-campaign ID`: everything the warehouse knows about one campaign."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from peachdw import db, metrics, quality
from peachdw.cli.base import CAMPAIGN_ID, cli, console, global_options, setup
from peachdw.errors import PeachDWError
from peachdw.hours import current_hour, day_spans, hour_text
from peachdw.metrics import REPORT_METRICS
from peachdw.report import hourly_day_sums
from peachdw.rules import TIERS

#: Days of the coverage grid.
GRID_DAYS = 14
#: One character per hour of the grid.
GRID_KEY = {
    "data": "#",  # stored hour with activity
    "quiet": ".",  # read, nothing happened (the API sends no row for a quiet hour)
    "unread": "?",  # no finished sync window covered this hour
    "before": "-",  # before the warehouse's first synced hour
    "implausible": "!",  # stored, but breaks a plausibility rule
    "future": " ",  # not complete yet
}


@cli.command("debug-campaign")
@global_options
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.option("--json", "as_json", is_flag=True, help="Print it all as JSON.")
@click.pass_context
def debug_campaign(ctx: click.Context, campaign_id: int, as_json: bool) -> None:
    """Show one campaign: its record, mapping and rules, a coverage grid of the last 14
    days, its last 48 hours, its totals against the API's reports, rule violations and
    the syncs that touched it."""
    _, settings = setup(ctx)
    conn = db.open_warehouse(
        settings.database.path, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    record = conn.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
    row = record.fetchone()
    if row is None:
        raise PeachDWError(
            f"Campaign {campaign_id} is not in the warehouse; `peachdw export --tab "
            "summary --output -` lists the ids it holds, and `peachdw sync` brings in "
            "new ones."
        )
    now_hour = current_hour()
    zone = settings.reporting.zone()
    names = metrics.of(conn)
    # The syncs listed are those of the grid's days: from midnight GRID_DAYS - 1 ago.
    today = datetime.fromtimestamp(now_hour * 3600, zone).date()
    state_start = day_spans(today - timedelta(days=GRID_DAYS - 1), today, zone)[0][1]
    rules = [quality.parse_rule(text, names) for text in settings.quality.plausibility]
    state = {
        "campaign": dict(row),
        "mapping": _mapping(conn, campaign_id),
        "grid": _grid(conn, campaign_id, now_hour, zone, rules),
        "added_metrics": metrics.added(conn),
        "last_48_hours": _recent(conn, campaign_id, now_hour, names),
        "reconciliation": _reconciliation(conn, campaign_id, now_hour, settings),
        "violations": quality.violations(
            conn, rules, 0, now_hour + 1, campaign_id=campaign_id, limit=50
        )[1],
        "syncs": _syncs(conn, campaign_id, state_start),
    }
    conn.close()
    if as_json:
        click.echo(json.dumps(quality.as_json(state), indent=2))
        return
    _show(state, zone.key)


def _mapping(conn: sqlite3.Connection, campaign_id: int) -> list[dict[str, Any]]:
    """Each tier, its value and the rule that set it (none: the fallback)."""
    mapping = conn.execute(
        "SELECT * FROM campaign_hierarchy WHERE campaign_id = ?", (campaign_id,)
    ).fetchone()
    if mapping is None:
        return []
    tiers = []
    for tier in TIERS:
        rule = conn.execute(
            "SELECT id, rule_key, match_type, pattern, priority FROM hierarchy_rules "
            "WHERE id = ?",
            (mapping[f"{tier}_rule_id"],),
        ).fetchone()
        tiers.append(
            {
                "tier": tier,
                "value": mapping[tier],
                "rule": dict(rule) if rule else None,
                "confidence": mapping["mapping_confidence"],
            }
        )
    return tiers


def _grid(
    conn: sqlite3.Connection,
    campaign_id: int,
    now_hour: int,
    zone: Any,
    rules: list[quality.PlausibilityRule],
) -> list[dict[str, Any]]:
    """A line per day of the last GRID_DAYS in the reporting zone, a mark per hour."""
    today = datetime.fromtimestamp(now_hour * 3600, zone).date()
    spans = day_spans(today - timedelta(days=GRID_DAYS - 1), today, zone)
    start, end = spans[0][1], spans[-1][2]
    stored = {
        hour
        for (hour,) in conn.execute(
            "SELECT unix_hour FROM hourly_data WHERE campaign_id = ? "
            "AND unix_hour >= ? AND unix_hour < ?",
            (campaign_id, start, end),
        )
    }
    broken = {
        v.unix_hour
        for v in quality.violations(conn, rules, start, end, campaign_id=campaign_id)[1]
    }
    covered = quality.covered_spans(conn, campaign_id)
    begins = quality.coverage_start(conn)
    lines = []
    for day, lo, hi in spans:
        marks = []
        for hour in range(lo, hi):
            if hour >= now_hour:
                mark = "future"
            elif hour in broken:
                mark = "implausible"
            elif hour in stored:
                mark = "data"
            elif begins is None or hour < begins:
                mark = "before"
            elif quality.uncovered(covered, hour, hour + 1):
                mark = "unread"
            else:
                mark = "quiet"
            marks.append(GRID_KEY[mark])
        lines.append({"day": day.isoformat(), "hours": "".join(marks)})
    return lines


def _recent(
    conn: sqlite3.Connection, campaign_id: int, now_hour: int, names: tuple[str, ...]
) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT unix_hour, {', '.join(names)}, sync_id FROM hourly_data "
        "WHERE campaign_id = ? AND unix_hour >= ? ORDER BY unix_hour",
        (campaign_id, now_hour - 48),
    )
    return [{"hour": hour_text(row[0]), **dict(row)} for row in rows]


def _reconciliation(
    conn: sqlite3.Connection, campaign_id: int, now_hour: int, settings: Any
) -> dict[str, Any]:
    """Per UTC day of the last GRID_DAYS with a report kept: the warehouse's and the
    API's totals of the reported metrics, and the differences beyond the tolerance."""
    last = quality.utc_day(now_hour) - timedelta(days=1)
    first = last - timedelta(days=GRID_DAYS - 1)
    found = quality.reconcile(
        conn, first, last, tolerance=settings.quality.tolerance, campaign_id=campaign_id
    )
    days = []
    if found.first_day is not None:
        reported = [
            date.fromisoformat(row[0])
            for row in conn.execute(
                "SELECT day FROM api_report_days WHERE day >= ? AND day <= ? "
                "ORDER BY day",
                (found.first_day, found.last_day),
            )
        ]
        spans = [
            span
            for span in day_spans(reported[0], reported[-1], ZoneInfo("UTC"))
            if span[0] in reported
        ]
        stored = {
            row[0]: tuple(row[2:])
            for row in hourly_day_sums(conn, spans, REPORT_METRICS, campaign_id)
        }
        api = {
            row[0]: tuple(row[1:])
            for row in conn.execute(
                f"SELECT day, {', '.join(REPORT_METRICS)} FROM api_reports "
                "WHERE campaign_id = ? AND day >= ? AND day <= ?",
                (campaign_id, found.first_day, found.last_day),
            )
        }
        # A day the API leaves out, or the warehouse holds no hour of, had no activity.
        zero = (0,) * len(REPORT_METRICS)
        for day, _, _ in spans:
            ours = stored.get(day.isoformat(), zero)
            theirs = api.get(day.isoformat(), zero)
            days.append(
                {
                    "day": day.isoformat(),
                    "warehouse": dict(zip(REPORT_METRICS, ours, strict=True)),
                    "api": dict(zip(REPORT_METRICS, theirs, strict=True)),
                    "difference": {
                        metric: mine - reported
                        for metric, mine, reported in zip(
                            REPORT_METRICS, ours, theirs, strict=True
                        )
                    },
                }
            )
    return {
        "first_day": found.first_day,
        "last_day": found.last_day,
        "days_with_reports": found.days,
        "days": days,
        "differences": found.differences,
    }


def _syncs(
    conn: sqlite3.Connection, campaign_id: int, start_hour: int
) -> list[dict[str, Any]]:
    """Syncs whose rows this campaign's stored hours carry, syncs aimed at it, and syncs
    whose finished windows read it (for all campaigns or for it) from `start_hour` on."""
    return [
        dict(row)
        for row in conn.execute(
            "SELECT s.id, s.sync_type, s.status, s.started_at, "
            "coalesce(t.hours, 0) AS hours_written, "
            "coalesce(r.hours, 0) AS hours_read FROM sync_history AS s "
            "LEFT JOIN (SELECT sync_id, count(*) AS hours FROM hourly_data "
            "WHERE campaign_id = :id GROUP BY sync_id) AS t ON t.sync_id = s.id "
            "LEFT JOIN (SELECT sync_id, sum(end_hour - max(start_hour, :start)) "
            "AS hours FROM sync_windows WHERE status = 'done' "
            "AND (campaign_id IS NULL OR campaign_id = :id) "
            "AND end_hour > :start GROUP BY sync_id) AS r ON r.sync_id = s.id "
            "WHERE t.sync_id IS NOT NULL OR r.sync_id IS NOT NULL OR s.campaign_id = :id "
            "ORDER BY s.id DESC",
            {"id": campaign_id, "start": start_hour},
        )
    ]


def _show(state: dict[str, Any], zone: str) -> None:
    campaign = state["campaign"]
    record = Table(title=f"Campaign {campaign['id']}", show_header=False)
    for key, value in campaign.items():
        record.add_row(key, "" if value is None else str(value))
    console.print(record)

    if state["mapping"]:
        mapping = Table(title="Mapping, and the rule behind each tier")
        for column in ("tier", "value", "rule", "pattern", "priority"):
            mapping.add_column(column)
        for tier in state["mapping"]:
            rule = tier["rule"]
            mapping.add_row(
                tier["tier"],
                tier["value"],
                f"{rule['id']} {rule['rule_key'] or ''}".strip()
                if rule
                else "fallback",
                f"{rule['match_type']}: {rule['pattern']}" if rule else "",
                str(rule["priority"]) if rule else "",
            )
        console.print(mapping)
        console.print(f"Mapping confidence: {state['mapping'][0]['confidence']:.2f}")
    else:
        console.print("Not mapped yet: the next sync maps it.")

    key = ", ".join(f"{mark} {name}" for name, mark in GRID_KEY.items() if mark != " ")
    console.print(
        f"Coverage, last {GRID_DAYS} days in {zone}, hour 0 on the left ({key}):"
    )
    for line in state["grid"]:
        console.print(f"  {line['day']}  {line['hours']}")

    recent = state["last_48_hours"]
    if recent:
        table = Table(title="Last 48 hours (stored; a quiet hour has no row)")
        # The metrics the API reports daily, and every metric added to the warehouse.
        shown = ("hour", *REPORT_METRICS, *state["added_metrics"])
        for column in (*shown, "sync"):
            table.add_column(column)
        for row in recent:
            table.add_row(*(str(row[c]) for c in shown), str(row["sync_id"]))
        console.print(table)
    else:
        console.print("No stored hours in the last 48.")

    recon = state["reconciliation"]
    if not recon["days_with_reports"]:
        console.print("Totals against the API: no API reports kept for recent days.")
    else:
        table = Table(
            title="UTC daily totals against the API's reports: warehouse / API "
            "(difference)"
        )
        for column in ("day", *REPORT_METRICS):
            table.add_column(column)
        for day in recon["days"]:
            table.add_row(
                day["day"],
                *(
                    f"{day['warehouse'][m]:,} / {day['api'][m]:,}"
                    + (f" ({day['difference'][m]:+,})" if day["difference"][m] else "")
                    for m in REPORT_METRICS
                ),
            )
        console.print(table)
        differing = {d.day for d in recon["differences"]}
        console.print(
            f"Totals against the API, {recon['first_day']} to {recon['last_day']}: "
            + (
                f"{len(differing)} day(s) differ beyond quality.tolerance."
                if differing
                else "every day agrees."
            )
        )

    if state["violations"]:
        table = Table(title="Stored hours that break a plausibility rule")
        for column in ("hour", "rule", "values"):
            table.add_column(column)
        for v in state["violations"]:
            values = ", ".join(f"{k}={n}" for k, n in v.values.items())
            table.add_row(hour_text(v.unix_hour), v.rule, values)
        console.print(table)
    else:
        console.print("Plausibility: every stored hour keeps the rules.")

    syncs = Table(
        title=f"Syncs that touched it: wrote its stored hours, or read it in the last "
        f"{GRID_DAYS} days"
    )
    for column in ("id", "type", "status", "started", "hours it wrote", "hours read"):
        syncs.add_column(column)
    for row in state["syncs"][:20]:
        syncs.add_row(
            str(row["id"]),
            row["sync_type"],
            row["status"],
            row["started_at"],
            str(row["hours_written"]),
            str(row["hours_read"]),
        )
    console.print(syncs)
