"""The metrics commands: list, and add a field the API sends as a new metric."""

from __future__ import annotations

import json
from contextlib import ExitStack

import click
from rich.table import Table

from peachdw import db, metrics
from peachdw.cli.base import cli, console, global_options, setup
from peachdw.lock import SyncLock
from peachdw.quality import as_json as as_json_value
from peachdw.report import held_days

# -- metrics --------------------------------------------------------------------------


@cli.group("metrics")
@global_options
def metrics_group() -> None:
    """The metrics the warehouse stores: the 14 built-in ones and those added."""


@metrics_group.command("list")
@global_options
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def metrics_list(ctx: click.Context, as_json: bool) -> None:
    """Show every metric, and the fields the API sends that are not metrics yet."""
    _, settings = setup(ctx)
    conn = db.open_warehouse(
        settings.database.path, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    found, unknown = metrics.listing(conn)
    conn.close()

    if as_json:
        state = {"metrics": found, "unknown_fields": unknown}
        click.echo(json.dumps(as_json_value(state), indent=2))
        return

    table = Table(title=f"Metrics of {settings.database.path}")
    for column in ("metric", "kind", "added", "sent by the API before, since"):
        table.add_column(column)
    for metric in found:
        table.add_row(
            metric.name,
            metric.kind,
            metric.added_at or "",
            metric.first_seen_at or ("" if metric.kind == "built-in" else "no"),
        )
    console.print(table)

    if not unknown:
        console.print(
            "The API sends no metrics field that the warehouse does not store."
        )
        return
    fields = Table(title=f"Fields of {metrics.METRICS_ENDPOINT} that are not metrics")
    for column in ("field", "first seen", "last seen", "rows read, re-reads included"):
        fields.add_column(column)
    for field in unknown:
        fields.add_row(
            field.name,
            field.seen.first_seen_at,
            field.seen.last_seen_at,
            f"{field.seen.occurrences:,}",
        )
    console.print(fields)
    console.print(
        "`peachdw metrics add FIELD` makes one a metric that every sync stores."
    )


@metrics_group.command("add")
@global_options
@click.argument("name")
@click.option(
    "--force",
    is_flag=True,
    help="Add NAME even though the API was never seen sending it (a metric cannot be "
    "removed).",
)
@click.pass_context
def metrics_add(ctx: click.Context, name: str, force: bool) -> None:
    """Store NAME, an integer field of /admin/metrics, as a new metric.

    Adds the column to hourly_data and daily_totals in one transaction (every stored row
    is kept and reads 0), after which every sync stores the field, the rollup sums it and
    every export shows it. Hours stored before are not read again by themselves: the
    command says how. NAME must be a field the API was seen sending (`peachdw metrics
    list`), unless --force. Refused while a sync runs, as a second sync is.
    """
    options, settings = setup(ctx)
    path = settings.database.path
    with ExitStack() as stack:
        conn = db.open_warehouse(
            path, busy_timeout_ms=settings.database.busy_timeout_ms
        )
        stack.callback(conn.close)
        # A bad name is refused as such, before the lock, even while a sync runs.
        metrics.check_name(conn, name, force=force)
        if not options.dry_run:
            # A sync reads the metrics once, as it starts: none may run meanwhile.
            stack.enter_context(SyncLock(path, f"peachdw metrics add {name}"))
        added = metrics.add(conn, name, dry_run=options.dry_run, force=force)
        held = held_days(conn, settings.reporting.zone())

    if options.dry_run:
        console.print(f"Would add the metric {name} in one transaction:")
        for statement in added.statements:
            # Whole, never wrapped, so it can be copied.
            console.print(f"  {statement};", soft_wrap=True)
        console.print(
            f"  and record it in metric_definitions. Kept, each at 0 for {name}: "
            f"{added.hourly_rows:,} rows of hourly_data, {added.daily_rows:,} of "
            "daily_totals."
        )
        if added.seen is None:
            console.print(
                f"The API has not been seen sending {name}; hours without it store 0."
            )
        console.print("Nothing was written.")
        return

    console.print(
        f"Added the metric {name}: a column of hourly_data ({added.hourly_rows:,} rows "
        f"kept) and of daily_totals ({added.daily_rows:,} rows kept), 0 in every row "
        "stored so far. From now on every sync stores it and every export shows it."
    )
    if added.seen is None:
        console.print(
            f"The API has not been seen sending {name}; hours without it store 0."
        )
    else:
        console.print(
            f"The API has sent {name} since {added.seen.first_seen_at}, in "
            f"{added.seen.occurrences:,} rows read (an hour read again counts again)."
        )
    if held is not None and added.seen is not None:
        first, last = held
        console.print(
            f"Hours stored before now hold 0 for {name}; to fill them, read them again:"
        )
        # The same warehouse and API as this command, when they are not the defaults.
        where = "".join(
            f" {flag} {value}"
            for flag, value in (
                ("--db-path", options.db_path),
                ("--api-url", options.api_url),
                ("--config", options.config),
            )
            if value
        )
        console.print(
            f"  peachdw{where} sync-historical --start-date {first.isoformat()} "
            f"--end-date {last.isoformat()}",
            soft_wrap=True,
        )
        console.print(
            f"Hours read again that carry {name} count as updated and restated in that "
            "sync's figures."
        )
