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
from peachdw.status import check_problems, collect_status
from peachdw.sync import (
    process_alive,
)

# -- status ---------------------------------------------------------------------------


@cli.command()
@global_options
@click.option(
    "--check",
    is_flag=True,
    help="For cron: print one line per problem and exit 1 if there is any.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status(ctx: click.Context, check: bool, as_json: bool) -> None:
    """Show the last syncs, the campaigns and the data the warehouse holds."""
    _, settings = setup(ctx)
    if not (check or as_json):
        show_status(settings)
        return

    conn = db.open_warehouse(
        settings.database.path, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(collect_status(conn)), indent=2))
    problems = (
        check_problems(
            conn, max_lag_hours=settings.quality.max_lag_hours, now_hour=current_hour()
        )
        if check
        else []
    )
    conn.close()

    for problem in problems:
        click.echo(f"PROBLEM: {problem}")
    if problems:
        ctx.exit(1)
    # Silent under cron, so that any mail it sends is an alert.
    if check and sys.stdout.isatty():
        click.echo("OK: the last sync succeeded and the data is fresh.")


def show_status(settings: Settings) -> None:
    conn = db.open_warehouse(
        settings.database.path, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    state = collect_status(conn)
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
