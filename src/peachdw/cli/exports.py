"""Commands that write reports: export, export-month and export-daterange."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from peachdw import db
from peachdw.cli.base import cli, console, global_options, log, parse_day, setup
from peachdw.config import Settings
from peachdw.errors import PeachDWError
from peachdw.export import (
    FORMATS,
    CsvWriter,
    ExportResult,
    Writer,
    export_report,
    record_refusal,
)
from peachdw.export import file_stem as export_file_stem
from peachdw.hours import current_hour, month_days, parse_month
from peachdw.quality import describe_short_days, short_days
from peachdw.report import TAB_NAMES, ReportPeriod, build_tabs, held_days

#: Suffixes of spreadsheet workbooks, which a CSV export must not be written under.
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")


def _report_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where the report goes and which tabs it has: the same for every export command."""
    for option in reversed(
        [
            click.option(
                "--tab",
                "tabs",
                multiple=True,
                type=click.Choice(TAB_NAMES, case_sensitive=False),
                help="Only this tab; repeat for several (default: all three).",
            ),
            click.option("--daily", is_flag=True, help="Only the Daily tab."),
            click.option(
                "--output",
                type=click.Path(path_type=Path, allow_dash=True),
                help="CSV: the file for one tab (- for standard output); for several, "
                "report.csv names them report_summary.csv, ... and any other name is a "
                "folder. Excel: the .xlsx file. Default: dated names under "
                "export.directory.",
            ),
            click.option(
                "--spreadsheet-id",
                help="Google Sheets: the spreadsheet to write into "
                "(default: sheets.spreadsheet_id).",
            ),
            click.option(
                "--spreadsheet-title",
                help="Google Sheets: create a new spreadsheet with this title "
                "(OAuth user credentials only).",
            ),
        ]
    ):
        command = option(command)
    return command


def _format_option(default: str) -> Callable[..., Any]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="csv: one file per tab; xlsx: one Excel workbook; sheets: Google Sheets.",
    )


@cli.command()
@global_options
@_format_option("csv")
@click.option("--start-date", help="First day, YYYY-MM-DD (default: first held).")
@click.option("--end-date", help="Last day, YYYY-MM-DD, inclusive (default: latest).")
@_report_options
@click.pass_context
def export(
    ctx: click.Context, start_date: str | None, end_date: str | None, **kw: Any
) -> None:
    """Write the report (Summary, Daily and Hierarchy tabs) for a period.

    Days are cut in reporting.timezone. Without dates, the report covers every day
    the warehouse holds.
    """
    options, settings = setup(ctx)
    first = parse_day(start_date, "--start-date")
    last = parse_day(end_date, "--end-date")
    run_export(settings, first, last, dry_run=options.dry_run, **kw)


@cli.command("export-month")
@global_options
@_format_option("xlsx")
@click.option("--month", required=True, help="Month name or number, e.g. August or 8.")
@click.option("--year", required=True, type=click.IntRange(2000, 2100), help="Year.")
@_report_options
@click.pass_context
def export_month(ctx: click.Context, month: str, year: int, **kw: Any) -> None:
    """Write the report for one calendar month in reporting.timezone."""
    options, settings = setup(ctx)
    try:
        number = parse_month(month)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from None
    first, last = month_days(year, number)
    run_export(settings, first, last, dry_run=options.dry_run, **kw)


@cli.command("export-daterange")
@global_options
@_format_option("sheets")
@click.option("--start-date", required=True, help="First day, YYYY-MM-DD.")
@click.option("--end-date", required=True, help="Last day, YYYY-MM-DD, inclusive.")
@_report_options
@click.pass_context
def export_daterange(
    ctx: click.Context, start_date: str, end_date: str, **kw: Any
) -> None:
    """Write the report for a range of days, by default to Google Sheets.

    Sheets needs credentials once (sheets.credentials; docs/exports.md says how);
    --format xlsx or csv writes a file instead.
    """
    options, settings = setup(ctx)
    first = parse_day(start_date, "--start-date")
    last = parse_day(end_date, "--end-date")
    run_export(settings, first, last, dry_run=options.dry_run, **kw)


def run_export(
    settings: Settings,
    first: date | None,
    last: date | None,
    *,
    fmt: str,
    tabs: tuple[str, ...] = (),
    daily: bool = False,
    output: Path | None = None,
    spreadsheet_id: str | None = None,
    spreadsheet_title: str | None = None,
    dry_run: bool = False,
) -> ExportResult | None:
    """Export the period first..last (either end may be None: what the store holds)."""
    names = _tab_names(tabs, daily)
    if first and last and first > last:
        raise click.BadParameter("--start-date is after --end-date.")
    if output is not None and fmt == "sheets":
        raise click.BadParameter("--output is for csv and xlsx; Sheets go by id.")
    if (spreadsheet_id or spreadsheet_title) and fmt != "sheets":
        raise click.BadParameter(
            "--spreadsheet-id and --spreadsheet-title need --format sheets."
        )
    if spreadsheet_id and spreadsheet_title:
        raise click.BadParameter(
            "--spreadsheet-id writes into a spreadsheet, --spreadsheet-title creates "
            "one; give one of them."
        )
    if (
        fmt == "csv"
        and output is not None
        and output.suffix.lower() in WORKBOOK_SUFFIXES
    ):
        raise click.BadParameter(
            f"{output} names a workbook but --format is csv; add --format xlsx, or "
            "give a .csv file or a folder.",
            param_hint="--output",
        )
    if (
        fmt == "xlsx"
        and output is not None
        and output != Path("-")
        and output.suffix
        and output.suffix.lower() != ".xlsx"
        and not output.is_dir()
    ):
        raise click.BadParameter(
            f"{output} does not end in .xlsx, by which Excel opens workbooks; name a "
            ".xlsx file or a folder.",
            param_hint="--output",
        )
    if fmt == "xlsx" and output == Path("-"):
        raise click.BadParameter(
            "an Excel workbook cannot go to standard output; give a .xlsx file, or "
            "use --format csv with one --tab."
        )

    conn = db.open_warehouse(
        settings.database.path, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    zone = settings.reporting.zone()
    held = held_days(conn, zone)
    today = datetime.now(zone).date()
    period_first = first or (held[0] if held else today)
    period_last = last or (held[1] if held else today)
    if period_first > period_last:
        conn.close()
        bound = "the last day the warehouse holds" if held else "today"
        if first is not None:
            raise click.BadParameter(
                f"{first} is after {bound} ({period_last}); give --end-date as well.",
                param_hint="--start-date",
            )
        bound = "the first day the warehouse holds" if held else "today"
        raise click.BadParameter(
            f"{last} is before {bound} ({period_first}); give --start-date as well.",
            param_hint="--end-date",
        )
    period = ReportPeriod(period_first, period_last, zone)
    warn_short_days(conn, period, held)

    # With the report on standard output, everything else goes to stderr.
    say = Console(stderr=True, highlight=False) if output == Path("-") else console
    days = f"{period.first} to {period.last}, days in {zone.key}"
    title = spreadsheet_title or f"Peach AI campaigns {period.first} to {period.last}"
    try:
        writer = make_writer(
            settings,
            fmt,
            names,
            period,
            output,
            spreadsheet_id,
            title,
            create=spreadsheet_title is not None,
        )
    except PeachDWError as exc:
        if not dry_run:
            record_refusal(conn, period, fmt=fmt, tabs=names, error=str(exc))
        elif fmt == "sheets":
            # Show what would be written, then why it would be refused.
            from peachdw.sheets import describe_target

            target = describe_target(
                None
                if spreadsheet_title
                else spreadsheet_id or settings.sheets.spreadsheet_id,
                title,
            )
            _say_dry_run(say, conn, period, names, f"{fmt} to {target}", days)
        conn.close()
        raise
    if dry_run:
        _say_dry_run(say, conn, period, names, f"{fmt} to {writer.target}", days)
        conn.close()
        return None

    result = export_report(conn, period, writer, fmt=fmt, tabs=names)
    conn.close()
    if result.note:
        say.print(
            f"Stopped early: {result.note} (export {result.export_id})",
            soft_wrap=True,
        )
        return result
    counts = ", ".join(
        f"{name} {rows:,} rows" for name, rows in result.tab_rows.items()
    )
    say.print(
        f"Wrote {counts} ({days}) to {result.target} "
        f"in {result.seconds:.2f} s (export {result.export_id}).",
        soft_wrap=True,
    )
    return result


def warn_short_days(
    conn: Any, period: ReportPeriod, held: tuple[date, date] | None
) -> None:
    """Warn about the period's days that no sync has wholly read: their totals are
    short, and a report would otherwise show them as quiet days."""
    short = short_days(conn, period, current_hour())
    if not short:
        return

    if short[0].to_come == short[0].hours:
        log.warning(
            "%s to %s has not begun yet, so every total in the report is 0.",
            period.first,
            period.last,
        )
        return
    unread = [item.day for item in short if item.to_come < item.hours - item.read]
    load = (
        f" `peachdw sync-historical --start-date {unread[0]} --end-date {unread[-1]}` "
        "reads the hours missing."
        if unread
        else ""
    )
    days = (period.last - period.first).days + 1
    if len(short) == days and not any(item.read for item in short):
        holds = f"{held[0]} to {held[1]}" if held else "nothing yet"
        log.warning(
            "No hour of %s to %s has been synced, so every total in the report is 0 (the "
            "warehouse holds %s).%s",
            period.first,
            period.last,
            holds,
            load,
        )
        return
    log.warning(
        "Days not wholly synced, whose totals are short: %s.%s",
        describe_short_days(short),
        load,
    )


def _tab_names(tabs: tuple[str, ...], daily: bool) -> tuple[str, ...]:
    if daily and tabs:
        raise click.BadParameter(
            "--daily is the Daily tab alone; give it or --tab, not both "
            "(--tab daily --tab summary for several)."
        )
    asked = {name.lower() for name in tabs}
    if daily:
        asked.add("daily")
    return tuple(name for name in TAB_NAMES if not asked or name.lower() in asked)


def _say_dry_run(
    say: Console,
    conn: Any,
    period: ReportPeriod,
    names: tuple[str, ...],
    where: str,
    days: str,
) -> None:
    built = build_tabs(conn, period, names)
    counts = ", ".join(f"{tab.name} {len(tab.rows):,} rows" for tab in built)
    say.print(f"Would write {counts} ({days}) as {where}.", soft_wrap=True)


def make_writer(
    settings: Settings,
    fmt: str,
    tabs: tuple[str, ...],
    period: ReportPeriod,
    output: Path | None,
    spreadsheet_id: str | None,
    title: str,
    create: bool,
) -> Writer:
    directory = settings.export.directory
    if fmt == "csv":
        return CsvWriter(tabs, period, output=output, directory=directory)
    if fmt == "xlsx":
        from peachdw.xlsx import XlsxWriter

        # Like CSV: a name without a suffix, or an existing folder, is a folder.
        if output is not None and (output.is_dir() or not output.suffix):
            directory, output = output, None
        return XlsxWriter(output or directory / f"{export_file_stem(period)}.xlsx")

    from peachdw.sheets import SheetsWriter

    return SheetsWriter.from_settings(
        settings.sheets,
        spreadsheet_id=spreadsheet_id,
        title=title,
        create=create,
    )
