"""Commands that read the warehouse: status."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click
from rich.table import Table

from peachdw import db, rules
from peachdw.cli.base import (
    cli,
    console,
    global_options,
    setup,
)
from peachdw.config import Settings
from peachdw.hours import (
    current_hour,
    hour_text,
)
from peachdw.quality import as_json as as_json_value
from peachdw.status import (
    ToLookInto,
    check_problems,
    collect_detailed,
    collect_status,
    plausibility_rules,
    reconciliation_problems,
    to_look_into,
)
from peachdw.sync import (
    process_alive,
)

#: `status --check` prints at most this many PROBLEM lines, then how many more there are.
MAX_PROBLEM_LINES = 100
#: Rows of the differences table `status --detailed` shows; --json has them all.
MAX_TABLE_ROWS = 100
#: Rows of the never-read campaign-days table `status --detailed` shows.
MAX_GAP_ROWS = 30

# -- status ---------------------------------------------------------------------------


@cli.command()
@global_options
@click.option(
    "--check",
    is_flag=True,
    help="For cron: print one line per problem and exit 1 if there is any.",
)
@click.option(
    "--detailed",
    is_flag=True,
    help="Freshness, completeness, reconciliation with the API's reports, mapping, "
    "plausibility, drift and a quality score.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status(ctx: click.Context, check: bool, detailed: bool, as_json: bool) -> None:
    """Show the last syncs, the campaigns and the data the warehouse holds."""
    _, settings = setup(ctx)
    if not (check or as_json or detailed):
        show_status(settings)
        return

    conn = db.open_warehouse(
        settings.database.path, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    now_hour = current_hour()
    quality_settings = settings.quality
    if detailed:
        state = collect_detailed(
            conn,
            now_hour=now_hour,
            zone=settings.reporting.zone(),
            days=quality_settings.reconcile_days,
            max_lag_hours=quality_settings.max_lag_hours,
            tolerance=quality_settings.tolerance,
            plausibility=quality_settings.plausibility,
        )
    else:
        state = dataclasses.asdict(collect_status(conn)) if as_json else {}
    problems = []
    if check:
        # A rule that names no metric fails the check as it fails --detailed: a cron job
        # that only checks would otherwise never hear of it.
        plausibility_rules(conn, quality_settings.plausibility)
        problems = check_problems(
            conn, max_lag_hours=quality_settings.max_lag_hours, now_hour=now_hour
        ) + reconciliation_problems(
            conn,
            now_hour=now_hour,
            days=quality_settings.reconcile_days,
            tolerance=quality_settings.tolerance,
        )
    conn.close()

    if as_json:
        # One JSON document: with --check, the problems are part of it.
        if check:
            state["problems"] = problems
        click.echo(json.dumps(as_json_value(state), indent=2))
    elif detailed:
        show_detailed(state)
    if not as_json:
        for problem in problems[:MAX_PROBLEM_LINES]:
            click.echo(f"PROBLEM: {problem}")
        if len(problems) > MAX_PROBLEM_LINES:
            click.echo(
                f"PROBLEM: ... and {len(problems) - MAX_PROBLEM_LINES:,} more; "
                "`peachdw status --check --json` lists them all."
            )
    if problems:
        ctx.exit(1)
    # Silent under cron, so that any mail it sends is an alert.
    if check and sys.stdout.isatty():
        click.echo(
            "OK: the last sync succeeded, the data is fresh and agrees with the API's "
            "reports."
        )


def _percent(share: float) -> str:
    """`99.8%`: whole only when it is, so that a few broken rows never read as 100%."""
    if share in (0, 1):
        return f"{share:.0%}"
    return f"{min(max(share * 100, 0.1), 99.9):.1f}%"


def show_detailed(state: dict[str, Any]) -> None:
    score = state["score"]
    parts = ", ".join(
        f"{name} {'-' if share is None else _percent(share)} (weight {weight})"
        for (name, share), weight in zip(
            state["score_parts"].items(), state["score_weights"].values(), strict=True
        )
    )
    console.print(
        f"Data quality score: {'-' if score is None else score} of 100 ({parts}); "
        "formula in docs/quality.md."
    )

    fresh = state["freshness"]
    if fresh["newest_synced_hour"] is None:
        console.print("Freshness: nothing synced yet; run `peachdw sync`.")
    else:
        console.print(
            f"Freshness: the newest synced hour is {fresh['newest_synced_hour']}, "
            f"{fresh['lag_hours']} hours ago (limit {fresh['max_lag_hours']})."
        )
    if fresh["serving_campaigns"]:
        # Never read first, then the most hours behind; the up-to-date ones are left out.
        behind = sorted(
            (row for row in fresh["campaigns"] if row["lag_hours"] != 0),
            key=lambda row: (row["lag_hours"] is not None, -(row["lag_hours"] or 0)),
        )
        worst = ", ".join(
            f"{row['id']} ("
            + ("never read" if row["lag_hours"] is None else f"{row['lag_hours']} h")
            + ")"
            for row in behind[:5]
        )
        console.print(
            f"Serving campaigns read within {fresh['max_lag_hours']} hours: "
            f"{fresh['serving_campaigns_within_max_lag']} of "
            f"{fresh['serving_campaigns']}"
            + (f"; most behind: {worst} (all: --json)." if worst else ".")
        )
    quiet = fresh["quiet_serving_campaigns"]
    if quiet:
        table = Table(
            title="Serving campaigns with no hours in the last 24 (latest hour)"
        )
        for column in ("id", "name", "latest hour", "lag hours"):
            table.add_column(column)
        for row in quiet[:20]:
            table.add_row(
                str(row["id"]),
                row["name"],
                row["latest_hour"] or "never",
                "-" if row["lag_hours"] is None else str(row["lag_hours"]),
            )
        console.print(table)

    done = state["completeness"]
    console.print(
        f"Completeness, {done['first_day']} to {done['last_day']} ({done['timezone']}): "
        f"{done['campaign_hours_missing']:,} of {done['campaign_hours_expected']:,} "
        "serving campaign-hours never read."
    )
    if done["gaps"]:
        table = Table(
            title="Campaign-days with hours never read (sync --heal reads them)"
        )
        for column in ("campaign", "day", "hours in day", "hours missing"):
            table.add_column(column)
        for gap in done["gaps"][:MAX_GAP_ROWS]:
            table.add_row(
                str(gap.campaign_id),
                gap.day,
                str(gap.hours_in_day),
                str(gap.missing_hours),
            )
        console.print(table)
        hidden = len(done["gaps"]) - MAX_GAP_ROWS
        if hidden > 0:
            console.print(
                f"... and {hidden:,} more campaign-days with hours never read; "
                "`peachdw status --detailed --json` lists them all."
            )

    recon = state["reconciliation"]
    if not recon["days_with_reports"]:
        console.print(
            "Reconciliation: no API reports kept yet; the next `peachdw sync` reads them."
        )
    else:
        healed = recon["healed_campaign_days"]
        console.print(
            f"Reconciliation with the API's reports, {recon['first_day']} to "
            f"{recon['last_day']} (UTC days): {recon['differing_campaign_days']} of "
            f"{recon['campaign_days']} campaign-days differ"
            + (
                f", {healed} of them already re-read by a heal (the API's hours and its "
                "own report disagree)."
                if healed
                else "."
            )
        )
    differences = recon["differences"]
    _differences_table(
        [d for d in differences if not d["healed"]],
        "Differences (warehouse - API); fix with `peachdw sync --heal`",
        "differences",
    )
    _differences_table(
        [d for d in differences if d["healed"]],
        "Differences a heal already re-read (warehouse - API): the API's hours and its "
        "own report disagree, and another heal reads the same numbers; ask the API's "
        "owners",
        "differences a heal already re-read",
        heal_column=True,
    )

    mapping = state["mapping"]
    console.print(
        "Mapping confidence: "
        + ", ".join(f"{label}: {n}" for label, n in mapping["distribution"].items())
    )
    if mapping["to_check"]:
        console.print(
            campaigns_table(
                mapping["to_check"][:20],
                "Campaigns to check (first 20; all: peachdw hierarchy unmapped)",
            )
        )

    plausible = state["plausibility"]
    if not plausible["by_rule"]:
        console.print("Plausibility: no rules set (quality.plausibility).")
    else:
        console.print(
            f"Plausibility: {plausible['rows_violating']:,} of "
            f"{plausible['rows_checked']:,} rows break a rule ("
            + "; ".join(f"{rule}: {n}" for rule, n in plausible["by_rule"].items())
            + "); `peachdw debug-campaign ID` lists them."
        )

    syncs = Table(title="Recent syncs: rejected rows and restated hours")
    for column in (
        "id",
        "type",
        "status",
        "started",
        "rejected",
        "restated",
        "back to",
    ):
        syncs.add_column(column)
    for row in state["recent_syncs"]:
        syncs.add_row(
            str(row["id"]),
            row["sync_type"],
            row["status"],
            row["started_at"],
            str(row["records_rejected"]),
            str(row["records_restated"]),
            row["restated_oldest_hour"] or "-",
        )
    console.print(syncs)

    if state["schema_drift"]:
        drift = Table(title="Fields the API sends that the warehouse does not store")
        for column in ("endpoint", "field", "first seen", "last seen", "times"):
            drift.add_column(column)
        for row in state["schema_drift"]:
            drift.add_row(
                row["endpoint"],
                row["field"],
                row["first_seen_at"],
                row["last_seen_at"],
                str(row["occurrences"]),
            )
        console.print(drift)
        console.print(
            "A field of /admin/metrics becomes a metric that every sync stores with "
            "`peachdw metrics add FIELD`."
        )
    else:
        console.print(
            "Schema drift: the API sends no field the warehouse does not know."
        )


def _differences_table(
    rows: list[dict[str, Any]], title: str, what: str, *, heal_column: bool = False
) -> None:
    """The first MAX_TABLE_ROWS differences under `title`, and how many more there are."""
    if not rows:
        return
    table = Table(title=title)
    columns = ["campaign", "day", "metric", "warehouse", "API", "difference"]
    for column in columns + (["heal"] if heal_column else []):
        table.add_column(column)
    for d in rows[:MAX_TABLE_ROWS]:
        cells = [
            str(d["campaign_id"]),
            d["day"],
            d["metric"],
            f"{d['warehouse']:,}",
            f"{d['api']:,}",
            f"{d['delta']:+,}",
        ]
        table.add_row(*cells, *([str(d["heal_sync_id"])] if heal_column else []))
    console.print(table)
    hidden = len(rows) - MAX_TABLE_ROWS
    if hidden > 0:
        console.print(
            f"... and {hidden:,} more {what}; "
            "`peachdw status --detailed --json` lists them all."
        )


def show_status(settings: Settings) -> None:
    conn = db.open_warehouse(
        settings.database.path, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    state = collect_status(conn)
    found = to_look_into(
        conn,
        now_hour=current_hour(),
        zone=settings.reporting.zone(),
        days=settings.quality.reconcile_days,
        tolerance=settings.quality.tolerance,
        plausibility=settings.quality.plausibility,
    )
    conn.close()

    overview = Table(title=f"Warehouse {settings.database.path}", show_header=False)
    overview.add_row("schema version", str(state.schema_version))
    overview.add_row(
        "campaigns",
        f"{state.campaigns_serving} serving, {state.campaigns_paused} paused, "
        f"{state.campaigns_deleted} deleted",
    )
    overview.add_row("hourly rows", f"{state.hourly_rows:,}")
    overview.add_row(
        "hours held",
        f"{hour_text(state.first_hour)} to {hour_text(state.latest_hour)}",
    )
    overview.add_row(
        "hierarchy",
        f"{state.mapped} mapped, {len(state.unmapped)} to check (listed below)",
    )
    console.print(overview)

    syncs = Table(title="Last syncs")
    for column in (
        "id",
        "type",
        "status",
        "started",
        "rows new/changed/same/rejected",
        "restated back to",
        "API calls/retries",
    ):
        syncs.add_column(column)
    for row in state.syncs:
        syncs.add_row(
            str(row["id"]),
            row["sync_type"],
            row["status"],
            row["started_at"],
            f"{row['records_inserted']}/{row['records_updated']}/"
            f"{row['records_unchanged']}/{row['records_rejected']}",
            hour_text(row["restated_oldest_hour"]),
            f"{row['api_calls']}/{row['api_retries']}",
        )
    console.print(syncs)
    latest = state.syncs[0] if state.syncs else None
    if latest and latest["status"] == "running" and not process_alive(latest["pid"]):
        console.print(
            f"Sync {latest['id']} is marked running but its process {latest['pid']} is "
            "gone; the next sync marks it interrupted and keeps its finished windows."
        )
    elif latest and latest["status"] not in ("success", "running"):
        console.print(
            f"Last sync {latest['id']} ({latest['status']}): {latest['error_message']}"
        )

    if state.rejections:
        rejected = Table(
            title="Rows the last sync rejected, by field (see rejected_rows)"
        )
        rejected.add_column("field or reason")
        rejected.add_column("rows", justify="right")
        for reason, count in state.rejections:
            rejected.add_row(reason, str(count))
        console.print(rejected)

    if state.unmapped:
        console.print(
            campaigns_table(
                state.unmapped[:20],
                "Campaigns to check: a tier Unknown or confidence under 0.8, "
                "most sessions first (first 20; all: peachdw hierarchy unmapped)",
            )
        )
    line = look_into_line(found, settings.quality.reconcile_days)
    if line:
        console.print(line)


def look_into_line(found: ToLookInto, days: int) -> str | None:
    """One line on what `status --detailed` would show, or None if there is nothing."""
    parts = []
    if found.differing_campaign_days:
        healed = found.healed_campaign_days
        parts.append(
            f"{found.differing_campaign_days} campaign-day(s) differ from the API's "
            "reports"
            + (
                f" ({healed} already re-read by a heal: the API disagrees with itself)"
                if healed
                else ""
            )
        )
    if found.broken_rule:
        parts.append(
            f"the plausibility rule {found.broken_rule!r} names no metric: fix "
            "quality.plausibility"
        )
    elif found.rows_violating:
        parts.append(f"{found.rows_violating:,} row(s) break a plausibility rule")
    if found.drift_fields:
        parts.append(
            f"{found.drift_fields} field(s) the API sends are not stored (schema drift)"
        )
    if not parts:
        return None
    # --detailed refuses a broken rule, so it is not where to look for that one.
    shown = len(parts) - (1 if found.broken_rule else 0)
    return (
        f"To look into, over the last {days} days: "
        + "; ".join(parts)
        + (". `peachdw status --detailed` shows the details." if shown else ".")
    )


def campaigns_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "name", "sessions", "confidence", "unknown tiers"):
        table.add_column(column)
    for row in rows:
        missing = [
            t for t in rules.TIERS if (row.get(t) or rules.FALLBACK) == rules.FALLBACK
        ]
        confidence = row["mapping_confidence"]
        table.add_row(
            str(row["id"]),
            row["name"],
            f"{row['sessions']:,}",
            "-" if confidence is None else f"{confidence:.2f}",
            ", ".join(missing),
        )
    return table
