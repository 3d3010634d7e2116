"""The `peachdw` command line.

The library raises; this module explains. A `PeachDWError` becomes one line on stderr with
a remedy and a non-zero exit (2 for configuration and usage, 1 for the rest); the stack
trace only with --verbose.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import sys
import threading
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from peachdw import __version__, db, rules
from peachdw.client import PeachClient
from peachdw.config import Settings, load_settings
from peachdw.errors import ConfigError, PeachDWError, SyncError
from peachdw.export import Period, default_path, export_csv, held_hours, report_rows
from peachdw.hours import (
    current_hour,
    day_start_hour,
    days_to_hours,
    hour_text,
    month_days,
    parse_month,
    span_text,
)
from peachdw.lock import SyncLock
from peachdw.progress import WindowProgress
from peachdw.status import LOW_CONFIDENCE, campaigns_to_check, collect_status
from peachdw.sync import (
    SyncOptions,
    SyncResult,
    mark_interrupted,
    plan_historical,
    process_alive,
    run_sync,
)

log = logging.getLogger("peachdw")
# Without a terminal (cron, a pipe) Rich would assume 80 columns and cut tables short.
# markup=False: campaign names and patterns are full of [brackets] that are not markup.
console = Console(
    highlight=False, markup=False, width=None if sys.stdout.isatty() else 120
)
#: Where the demo keeps its data unless --db-path says otherwise.
DEMO_DB_PATH = Path("data/datawarehouse.db")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    """The global options, given before or after the command name."""

    config: Path | None = None
    db_path: Path | None = None
    api_url: str | None = None
    api_token: str | None = None
    verbose: bool = False
    dry_run: bool = False


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    options = ctx.ensure_object(Options)
    if value not in (None, False):
        setattr(options, param.name, value)
    return value


_GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--config",),
        {
            "type": click.Path(path_type=Path, dir_okay=False),
            "help": "Settings file (default: config/settings.yaml if it exists).",
        },
    ),
    (
        ("--db-path",),
        {
            "type": click.Path(path_type=Path, dir_okay=False),
            "help": "SQLite file (default: database.path, data/datawarehouse.db).",
        },
    ),
    (("--api-url",), {"help": "Base URL of the Peach AI admin API (api.base_url)."}),
    (
        ("--api-token",),
        {
            "help": "API bearer token; PEACHAI_API_TOKEN keeps it out of the process list."
        },
    ),
    (("--verbose", "-v"), {"is_flag": True, "help": "Debug logs and stack traces."}),
    (
        ("--dry-run",),
        {"is_flag": True, "help": "Show what would happen, write nothing."},
    ),
)


def global_options(command: F) -> F:
    """Accept the global options on a command as well as on the group."""
    for decls, settings in reversed(_GLOBAL_OPTIONS):
        option = click.option(
            *decls, expose_value=False, callback=_remember, **settings
        )
        command = option(command)
    return command


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PeachDWError as exc:
            _fail(ctx, str(exc), exc.exit_code)
        except sqlite3.Error as exc:
            _fail(
                ctx,
                f"Database error: {exc}. Check the file at --db-path, or run "
                "`peachdw init`.",
                1,
            )


def _fail(ctx: click.Context, message: str, code: int) -> None:
    options = ctx.find_object(Options)
    if options and options.verbose:
        traceback.print_exc()
    click.echo(f"Error: {message}", err=True)
    ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(__version__, prog_name="peachdw")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Sync the Peach AI admin API into SQLite, check it and export reports.

    Daily run: `peachdw sync`, then `peachdw status` and `peachdw export --format csv`.
    Try it on the built-in sandbox API with `peachdw demo`.
    """
    ctx.ensure_object(Options)


def _setup(ctx: click.Context) -> tuple[Options, Settings]:
    """Read the settings with every layer and configure logging."""
    options = ctx.ensure_object(Options)
    _configure_logging(options.verbose)
    settings = load_settings(
        options.config,
        overrides={
            "database.path": options.db_path,
            "api.base_url": options.api_url,
            "api.bearer_token": options.api_token,
        },
    )
    return options, settings


def _configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if getattr(root, "_peachdw_configured", False):
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
        return
    if sys.stderr.isatty():
        handler: logging.Handler = RichHandler(
            console=Console(stderr=True), show_path=False, markup=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        # Under cron: plain lines with a timestamp, one per phase or window.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # httpx logs every request at INFO; keep that for --verbose.
    logging.getLogger("httpx").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    root._peachdw_configured = True  # type: ignore[attr-defined]


def _open(settings: Settings, *, dry_run: bool = False) -> sqlite3.Connection:
    """Open the warehouse, creating and migrating it when needed.

    A dry run on a machine with no database yet works on an empty one in memory, so it
    creates no file.
    """
    path = settings.database.path
    if dry_run and not path.exists():
        path = Path(":memory:")
    conn = db.connect(path, busy_timeout_ms=settings.database.busy_timeout_ms)
    db.migrate(conn)
    if not dry_run:
        # A new release may ship changed default rules: bring them in and remap.
        with db.transaction(conn):
            _, updated = rules.load_default_rules(conn)
            if updated:
                rules.map_campaigns(conn)
    return conn


def _client(settings: Settings) -> PeachClient:
    token = settings.token()
    if not token:
        raise ConfigError(
            "No API token: set PEACHAI_API_TOKEN, pass --api-token, or set "
            "api.bearer_token in config/settings.yaml.",
            key="api.bearer_token",
        )
    api = settings.api
    return PeachClient(
        api.base_url,
        token,
        token_source=settings.token_source,
        timeout=api.timeout,
        max_attempts=api.max_attempts,
        max_rate_limit_retries=api.max_rate_limit_retries,
        max_retry_wait=api.max_retry_wait,
        backoff_base=api.backoff_base,
        per_page=api.per_page,
    )


# -- init -----------------------------------------------------------------------------


@cli.command()
@global_options
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the database, or upgrade it in place, and load the default rules."""
    options, settings = _setup(ctx)
    path = settings.database.path
    newest = db.migrations()[-1].version

    if options.dry_run:
        current = db.schema_version(db.connect(path)) if path.exists() else 0
        pending = [m for m in db.migrations() if m.version > current]
        console.print(
            f"Would bring {path} from schema version {current} to {newest} "
            f"({len(pending)} migration(s)) and load the default hierarchy rules."
        )
        return

    conn = db.connect(path, busy_timeout_ms=settings.database.busy_timeout_ms)
    applied = db.migrate(conn)
    with db.transaction(conn):
        inserted, updated = rules.load_default_rules(conn)
    conn.close()
    console.print(
        f"Database ready at {path} (schema version {newest}; "
        f"{len(applied)} migration(s) applied). Default rules: {inserted} added, "
        f"{updated} updated."
    )


# -- sync -----------------------------------------------------------------------------


@cli.command()
@global_options
@click.option(
    "--full",
    is_flag=True,
    help="Re-read from sync.start_date (or sync.initial_days ago), not from the last sync.",
)
@click.pass_context
def sync(ctx: click.Context, full: bool) -> None:
    """Pull campaigns and hourly metrics from the API into the warehouse."""
    options, settings = _setup(ctx)
    start_date = settings.sync.start_date
    sync_options = _sync_options(
        settings,
        dry_run=options.dry_run,
        full=full,
        full_start_hour=day_start_hour(start_date, settings.reporting.zone())
        if start_date
        else None,
    )
    _run(settings, sync_options, "peachdw sync")


@cli.command("sync-historical")
@global_options
@click.option("--start-date", help="First day to load, YYYY-MM-DD.")
@click.option("--end-date", help="Last day to load, YYYY-MM-DD, inclusive.")
@click.option("--month", help="A whole month instead of dates: August, aug or 8.")
@click.option("--year", type=click.IntRange(2000, 2100), help="The year of --month.")
@click.option("--campaign-id", type=click.IntRange(1), help="Load one campaign only.")
@click.option(
    "--test-batches", type=click.IntRange(1), help="Stop after this many windows."
)
@click.option(
    "--resume", is_flag=True, help="Skip windows already done; retry failed ones."
)
@click.pass_context
def sync_historical(
    ctx: click.Context,
    start_date: str | None,
    end_date: str | None,
    month: str | None,
    year: int | None,
    campaign_id: int | None,
    test_batches: int | None,
    resume: bool,
) -> None:
    """Load a range of past days, window by window; stop it any time, --resume it later.

    Days are cut in reporting.timezone (UTC by default). Each window of at most 168 hours
    is written with its ledger entry in one transaction, so a run that is killed or fails
    keeps every finished window, and --resume reads only what is missing.
    """
    options, settings = _setup(ctx)
    first, last = _backfill_days(start_date, end_date, month, year)
    start_hour, end_hour = days_to_hours(first, last, settings.reporting.zone())
    if end_hour > current_hour():
        log.info(
            "%s is not over yet: loading up to the last complete hour, %s.",
            last,
            hour_text(current_hour() - 1),
        )
        end_hour = current_hour()
    if end_hour <= start_hour:
        raise click.BadParameter(
            f"{first} is not in the past yet; nothing to load.", param_hint="dates"
        )

    sync_options = _sync_options(
        settings, dry_run=options.dry_run, test_batches=test_batches
    )
    _run(
        settings,
        sync_options,
        "peachdw sync-historical",
        historical=(start_hour, end_hour, campaign_id, resume),
    )


def _backfill_days(
    start_date: str | None, end_date: str | None, month: str | None, year: int | None
) -> tuple[date, date]:
    if month or year:
        if start_date or end_date:
            raise click.UsageError(
                "Give --month and --year, or --start-date and --end-date."
            )
        if not (month and year):
            raise click.UsageError("--month needs --year, and --year needs --month.")
        try:
            return month_days(year, parse_month(month))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--month") from None

    first = _parse_day(start_date, "--start-date")
    last = _parse_day(end_date, "--end-date")
    if first is None or last is None:
        raise click.UsageError(
            "Say what to load: --start-date and --end-date, or --month and --year."
        )
    if first > last:
        raise click.BadParameter("--start-date is after --end-date.")
    return first, last


def _sync_options(settings: Settings, **overrides: Any) -> SyncOptions:
    return SyncOptions(
        lookback_hours=settings.sync.lookback_hours,
        initial_days=settings.sync.initial_days,
        window_hours=settings.sync.window_hours,
        **overrides,
    )


def _run(
    settings: Settings,
    sync_options: SyncOptions,
    command: str,
    *,
    historical: tuple[int, int, int | None, bool] | None = None,
) -> None:
    """Take the lock, plan, sync with progress, print the summary; raise on failure."""
    client = _client(settings)
    with ExitStack() as stack:
        if not sync_options.dry_run:
            # One writer at a time; a second one is refused at once, having changed nothing.
            stack.enter_context(SyncLock(settings.database.path, command))
        conn = _open(settings, dry_run=sync_options.dry_run)
        stack.callback(conn.close)
        stack.enter_context(client)
        if not sync_options.dry_run:
            mark_interrupted(conn, all_running=True)

        plan = None
        if historical:
            start_hour, end_hour, campaign_id, resume = historical
            plan = plan_historical(
                conn,
                start_hour,
                end_hour,
                window_hours=settings.sync.window_hours,
                campaign_id=campaign_id,
                resume=resume,
            )
        with WindowProgress(client.stats) as progress:
            result = run_sync(
                conn, client, sync_options, plan=plan, on_window=progress.update
            )

    _print_sync(result)
    if result.status != "success":
        rerun = (
            "Run the same `peachdw sync-historical` with --resume to read what is missing."
            if historical
            else "Run `peachdw sync` again; it picks up where this one stopped."
        )
        error = SyncError(_sync_failure(result, rerun))
        if result.status == "interrupted":
            error.exit_code = 130  # the shell's code for a run stopped by Ctrl-C
        raise error


def _sync_failure(result: SyncResult, rerun: str) -> str:
    name = f"Sync {result.sync_id}" if result.sync_id else "The dry run"
    message = f"{name} ended {result.status}: {result.error_message}"
    if result.windows_done:
        message += " Finished windows are kept."
    if result.retry_may_help:
        message += f" {rerun}"
    return message


def _print_sync(result: SyncResult) -> None:
    if result.status == "failed" and not result.windows_done:
        return  # nothing was fetched; the one-line error says why
    title = "Dry run, nothing written" if result.dry_run else f"Sync {result.sync_id}"
    verb = "would be " if result.dry_run else ""
    counts = result.counts
    rows = [
        ("hours", span_text(result.window_start_hour, result.window_end_hour)),
        (
            "windows",
            f"{result.windows_done} done, {len(result.failed_windows)} failed, "
            f"{result.windows_skipped} already done before"
            + (f", campaign {result.campaign_id} only" if result.campaign_id else ""),
        ),
        (
            "campaigns",
            f"{counts['campaigns_seen']} listed, {counts['campaigns_inserted']} new, "
            f"{counts['campaigns_updated']} changed, {counts['campaigns_deleted']} deleted",
        ),
        ("hourly rows received", str(counts["records_processed"])),
        (f"{verb}inserted", str(counts["records_inserted"])),
        (
            f"{verb}updated",
            f"{counts['records_updated']} ({counts['records_zeroed']} back to zero)",
        ),
        ("restated (stored hours the API changed)", str(counts["records_restated"])),
        ("unchanged", str(counts["records_unchanged"])),
        ("rejected", str(counts["records_rejected"])),
        (
            "duplicates / out of window",
            f"{counts['records_duplicate']} / {counts['records_out_of_window']}",
        ),
        ("campaigns mapped", str(result.campaigns_mapped)),
        ("API calls / retries", f"{result.api_calls} / {result.api_retries}"),
        ("time", f"{result.seconds:.1f} s"),
    ]
    rows += [("rejected, e.g.", example) for example in result.rejection_examples]
    rows += [
        ("failed window", f"{span_text(w.start_hour, w.end_hour)}: {w.error}")
        for w in result.failed_windows
    ]

    if result.restated_oldest_hour is not None:
        rows.append(("oldest restated hour", hour_text(result.restated_oldest_hour)))
    if result.note:
        rows.append(("note", result.note))

    table = Table(title=f"{title} ({result.status})", show_header=False)
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


# -- status ---------------------------------------------------------------------------


@cli.command()
@global_options
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show the last syncs, the campaigns and the data the warehouse holds."""
    _, settings = _setup(ctx)
    _show_status(settings)


def _show_status(settings: Settings) -> None:
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
            _campaigns_table(
                state.unmapped[:20],
                "Campaigns to check: a tier Unknown or confidence under 0.8, "
                "most sessions first (first 20; all: peachdw hierarchy unmapped)",
            )
        )


def _campaigns_table(rows: list[dict[str, Any]], title: str) -> Table:
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


# -- export ---------------------------------------------------------------------------


def _parse_day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; use YYYY-MM-DD.", param_hint=flag
        ) from None


@cli.command()
@global_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv"]),
    default="csv",
    show_default=True,
    help="Report format.",
)
@click.option("--daily", is_flag=True, help="One row per campaign and UTC day.")
@click.option("--start-date", help="First UTC day, YYYY-MM-DD (default: first held).")
@click.option(
    "--end-date", help="Last UTC day, YYYY-MM-DD, inclusive (default: latest)."
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="File to write, replaced if it exists; - for standard output "
    "(default: a dated file under export.directory).",
)
@click.pass_context
def export(
    ctx: click.Context,
    fmt: str,
    daily: bool,
    start_date: str | None,
    end_date: str | None,
    output: Path | None,
) -> None:
    """Write a report of campaign totals, with their hierarchy tiers."""
    options, settings = _setup(ctx)
    period = Period(
        _parse_day(start_date, "--start-date"), _parse_day(end_date, "--end-date")
    )
    if period.start and period.end and period.start > period.end:
        raise click.BadParameter("--start-date is after --end-date.")
    _export(settings, period, daily=daily, output=output, dry_run=options.dry_run)


def _export(
    settings: Settings,
    period: Period,
    *,
    daily: bool,
    output: Path | None,
    dry_run: bool,
    fmt: str = "csv",
) -> None:
    report = "daily" if daily else "summary"
    output = output or default_path(settings.export.directory, report, period)
    conn = db.open_warehouse(
        settings.database.path, busy_timeout_ms=settings.database.busy_timeout_ms
    )

    # With the report on standard output, everything else goes to stderr.
    say = Console(stderr=True, highlight=False) if str(output) == "-" else console
    first, last = held_hours(conn, period)
    if first is None:
        everything = held_hours(conn, Period())
        held = (
            span_text(everything[0], everything[1] + 1) if everything[0] else "nothing"
        )
        log.warning("No hourly data in this period; the warehouse holds %s.", held)

    if dry_run:
        _, rows = report_rows(conn, period, daily=daily)
        count = sum(1 for _ in rows)
        say.print(f"Would write {count} {report} rows as {fmt.upper()} to {output}.")
        return

    result = export_csv(conn, daily=daily, period=period, output=output)
    conn.close()
    covered = f"hours {span_text(first, last + 1)}" if first is not None else "no hours"
    say.print(
        f"Wrote {result.rows} {report} rows ({covered}) to {result.path} "
        f"in {result.seconds:.2f} s (export {result.export_id})."
    )


# -- hierarchy ------------------------------------------------------------------------


@cli.group()
@global_options
def hierarchy() -> None:
    """Explain and check how campaign names map to the five tiers."""


@hierarchy.command("test")
@global_options
@click.argument("name", required=False)
@click.option(
    "--campaign-id",
    type=int,
    help="Explain a stored campaign instead: its name, URLs and any override by id.",
)
@click.pass_context
def hierarchy_test(
    ctx: click.Context, name: str | None, campaign_id: int | None
) -> None:
    """Show the tiers NAME would get, the rule behind each and the confidence.

    Uses the rules in the database (read only) or, without one, the default rules. A
    name alone knows nothing of a campaign's URLs or id: use --campaign-id for a stored
    campaign, so rules on those fields and manual overrides show too.
    """
    _, settings = _setup(ctx)
    if (name is None) == (campaign_id is None):
        raise click.UsageError("Give a campaign NAME or --campaign-id, one of the two.")
    path = settings.database.path
    campaign: dict[str, Any] = {"name": name}
    if path.exists():
        conn = db.connect_read_only(path)
        ruleset = rules.RuleSet(rules.stored_rules(conn))
        if campaign_id is not None:
            row = conn.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
            found = row.fetchone()
            if found is None:
                raise click.BadParameter(
                    f"no campaign {campaign_id} in {path}.", param_hint="--campaign-id"
                )
            campaign = dict(found)
            name = campaign["name"]
        conn.close()
        source = f"rules in {path}"
    else:
        if campaign_id is not None:
            raise click.BadParameter(
                f"there is no database at {path} yet.", param_hint="--campaign-id"
            )
        ruleset = rules.RuleSet(rules.default_rules())
        source = "the default rules (no database yet)"

    mapping = ruleset.map(campaign)
    by_id = {rule.id: rule for rule in ruleset.rules if rule.id is not None}
    by_key = {rule.rule_key: rule for rule in ruleset.rules}
    table = Table(title=f"{name} ({source})")
    for column in ("tier", "value", "rule", "matched", "confidence"):
        # Patterns are shown whole, wrapped, never cut short with an ellipsis.
        table.add_column(column, overflow="fold")

    def describe(rule: rules.Rule) -> tuple[str, str, str]:
        label = f"{rule.id or ''} {rule.rule_key or ''}".strip()
        return label, f"{rule.match_type} {rule.pattern}", f"{rule.confidence:g}"

    for tier in rules.TIERS:
        rule = by_id.get(mapping.rule_ids[tier]) or by_key.get(mapping.rule_keys[tier])
        parts = [
            (slot, found)
            for slot, found in mapping.parts.items()
            if slot.startswith(f"{tier}.")
        ]
        if parts:
            table.add_row(tier, mapping.tiers[tier], "joined from its parts:", "", "")
            for slot, (value, part_rule) in parts:
                table.add_row(f"  {slot.split('.', 1)[1]}", value, *describe(part_rule))
        elif rule is None:
            table.add_row(
                tier, mapping.tiers[tier], "fallback: no rule matched", "", "0"
            )
        else:
            table.add_row(tier, mapping.tiers[tier], *describe(rule))
    console.print(table)
    verdict = "ok" if mapping.confidence >= LOW_CONFIDENCE else "needs a rule"
    console.print(f"confidence {mapping.confidence:.2f}: {verdict}")


@hierarchy.group("rules")
@global_options
def hierarchy_rules() -> None:
    """List, add, disable, remove, import and export the mapping rules."""


def _count(number: int, noun: str) -> str:
    """`1 campaign`, `2 campaigns`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _rules_conn(ctx: click.Context) -> tuple[Options, sqlite3.Connection]:
    options, settings = _setup(ctx)
    return options, db.open_warehouse(settings.database.path)


@hierarchy_rules.command("list")
@global_options
@click.option("--all", "show_all", is_flag=True, help="Include disabled rules.")
@click.pass_context
def rules_list(ctx: click.Context, show_all: bool) -> None:
    """Show the rules, highest priority first."""
    _, conn = _rules_conn(ctx)
    stored = rules.stored_rules(conn)
    conn.close()
    shown = [rule for rule in stored if show_all or rule.is_active]
    shown.sort(key=lambda rule: (-rule.priority, rule.id or 0))
    table = Table(title=f"{len(shown)} rules" + ("" if show_all else " (active)"))
    for column in ("id", "key", "on", "priority", "conf.", "match", "pattern", "sets"):
        table.add_column(column, overflow="fold")
    for rule in shown:
        table.add_row(
            str(rule.id),
            rule.rule_key or "",
            "yes" if rule.is_active else "no",
            str(rule.priority),
            f"{rule.confidence:g}",
            f"{rule.match_field} {rule.match_type}",
            rule.pattern,
            ", ".join(f"{tier}={value}" for tier, value in rule.tiers.items()),
        )
    console.print(table)


@hierarchy_rules.command("add")
@global_options
@click.option("--pattern", required=True, help="What to match.")
@click.option(
    "--type",
    "match_type",
    type=click.Choice(rules.MATCH_TYPES),
    default="contains",
    show_default=True,
    help="How to match.",
)
@click.option(
    "--field",
    "match_field",
    type=click.Choice(rules.MATCH_FIELDS),
    default="name",
    show_default=True,
    help="The campaign field to match.",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    required=True,
    metavar="TIER=VALUE",
    help="A tier and its value, such as network=ExoClick; repeat for more tiers.",
)
@click.option("--priority", type=int, default=100, show_default=True)
@click.option(
    "--confidence", type=click.FloatRange(0, 1), default=1.0, show_default=True
)
@click.option("--note", help="Why the rule exists.")
@click.pass_context
def rules_add(
    ctx: click.Context,
    pattern: str,
    match_type: str,
    match_field: str,
    assignments: tuple[str, ...],
    priority: int,
    confidence: float,
    note: str | None,
) -> None:
    """Add a rule. Then `peachdw hierarchy remap --dry-run` shows what it moves."""
    tiers = {}
    for assignment in assignments:
        tier, sep, value = assignment.partition("=")
        if not sep or not value.strip():
            raise click.BadParameter(
                f"{assignment!r} is not TIER=VALUE, such as network=ExoClick.",
                param_hint="--set",
            )
        tiers[tier.strip().lower()] = value.strip()
    rule = rules.Rule(
        pattern=pattern,
        match_type=match_type,
        match_field=match_field,
        tiers=tiers,
        priority=priority,
        confidence=confidence,
        note=note,
    )
    options, conn = _rules_conn(ctx)
    if options.dry_run:
        rules._check(rule)
        console.print("The rule is valid; nothing was stored (--dry-run).")
        return
    with db.transaction(conn):
        rule_id = rules.add_rule(conn, rule)
    conn.close()
    console.print(f"Added rule {rule_id}. {_NEXT_STEP}")


_NEXT_STEP = (
    "Preview: peachdw hierarchy remap --dry-run; apply: peachdw hierarchy remap"
)


def _switch(ctx: click.Context, rule_id: int, active: bool) -> None:
    options, conn = _rules_conn(ctx)
    state = "enabled" if active else "disabled"
    with db.transaction(conn):
        rules.require_rule(conn, rule_id)
        if options.dry_run:
            console.print(
                f"Rule {rule_id} would be {state} (--dry-run: nothing written)."
            )
            return
        rules.set_active(conn, rule_id, active)
    conn.close()
    console.print(f"Rule {rule_id} {state}. {_NEXT_STEP}")


@hierarchy_rules.command("disable")
@global_options
@click.argument("rule_id", type=int)
@click.pass_context
def rules_disable(ctx: click.Context, rule_id: int) -> None:
    """Stop using a rule (it stays listed with --all)."""
    _switch(ctx, rule_id, False)


@hierarchy_rules.command("enable")
@global_options
@click.argument("rule_id", type=int)
@click.pass_context
def rules_enable(ctx: click.Context, rule_id: int) -> None:
    """Use a disabled rule again."""
    _switch(ctx, rule_id, True)


@hierarchy_rules.command("remove")
@global_options
@click.argument("rule_id", type=int)
@click.pass_context
def rules_remove(ctx: click.Context, rule_id: int) -> None:
    """Delete a rule. Mappings it set keep their values until the next remap."""
    options, conn = _rules_conn(ctx)
    with db.transaction(conn):
        rules.require_rule(conn, rule_id)
        if options.dry_run:
            console.print(
                f"Rule {rule_id} would be removed (--dry-run: nothing written)."
            )
            return
        rules.remove_rule(conn, rule_id)
    conn.close()
    console.print(f"Rule {rule_id} removed. {_NEXT_STEP}")


@hierarchy_rules.command("export")
@global_options
@click.argument(
    "path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default="-",
)
@click.pass_context
def rules_export(ctx: click.Context, path: Path) -> None:
    """Write every rule as YAML to PATH (default: standard output)."""
    options, conn = _rules_conn(ctx)
    count = len(rules.stored_rules(conn))
    text = rules.export_rules(conn)
    conn.close()
    if str(path) == "-":
        sys.stdout.write(text)
        return
    if options.dry_run:
        console.print(f"Would write {count} rules to {path}.")
        return
    path.write_text(text, encoding="utf-8")
    console.print(f"Wrote {count} rules to {path}.")


@hierarchy_rules.command("import")
@global_options
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.pass_context
def rules_import(ctx: click.Context, path: Path) -> None:
    """Add the rules of a YAML file written by `export` (or by hand, same format)."""
    options, conn = _rules_conn(ctx)
    with db.transaction(conn):
        added, updated, unchanged = rules.import_rules(
            conn, path.read_text("utf-8"), str(path), dry_run=options.dry_run
        )
    conn.close()
    verbs = ("would add", "would update") if options.dry_run else ("added", "updated")
    console.print(
        f"{path}: {verbs[0]} {added}, {verbs[1]} {updated}, {unchanged} unchanged. "
        f"{_NEXT_STEP}"
    )


@hierarchy.command("unmapped")
@global_options
@click.pass_context
def hierarchy_unmapped(ctx: click.Context) -> None:
    """List campaigns with a fallback tier or a low confidence, most sessions first."""
    _, settings = _setup(ctx)
    conn = db.open_warehouse(settings.database.path)
    rows = campaigns_to_check(conn)
    conn.close()
    if not rows:
        console.print("Every live campaign maps with confidence 0.8 or more.")
        return
    console.print(_campaigns_table(rows, _count(len(rows), "campaign") + " to check"))


@hierarchy.command("remap")
@global_options
@click.pass_context
def hierarchy_remap(ctx: click.Context) -> None:
    """Apply the rules to every campaign again; show what changes, old and new.

    With --dry-run nothing is written. Manual overrides are never changed.
    """
    options, settings = _setup(ctx)
    conn = db.open_warehouse(settings.database.path)
    with db.transaction(conn):
        changes = rules.plan_mappings(conn)
        if not options.dry_run:
            rules.apply_mappings(conn, changes)
    conn.close()

    if not changes:
        console.print("No mapping changes.")
        return
    verb = "would change" if options.dry_run else "changed"
    table = Table(title=f"{_count(len(changes), 'mapping')} {verb}")
    for column in ("id", "name", "old", "new", "confidence"):
        table.add_column(column)
    for change in changes:
        old = " / ".join(change.old) if change.old else "(not mapped)"
        before = (
            "-" if change.old_confidence is None else f"{change.old_confidence:.2f}"
        )
        table.add_row(
            str(change.campaign_id),
            change.name,
            old,
            " / ".join(change.new_tiers),
            f"{before} -> {change.new.confidence:.2f}",
        )
    console.print(table)


# -- sandbox and demo -----------------------------------------------------------------


@cli.command()
@global_options
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--token",
    help="Bearer token the sandbox accepts (default: --api-token, "
    "PEACHAI_API_TOKEN, or 'sandbox-token').",
)
@click.option(
    "--seed", type=int, default=42, show_default=True, help="Data and fault seed."
)
@click.option(
    "--campaigns", type=click.IntRange(1, 100_000), default=230, show_default=True
)
@click.option(
    "--faults",
    default="",
    help="KIND:RATE list, e.g. 429:0.1,500:0.1; kinds: "
    "429, 500, timeout, trickle, malformed, duplicate, badvalue.",
)
@click.option(
    "--latency", type=click.FloatRange(0), default=0.0, help="Seconds per response."
)
@click.pass_context
def sandbox(
    ctx: click.Context,
    port: int,
    token: str | None,
    seed: int,
    campaigns: int,
    faults: str,
    latency: float,
) -> None:
    """Serve a deterministic Peach AI admin API on 127.0.0.1 until interrupted."""
    from peachdw.sandbox import Dataset, FaultPlan, SandboxServer, parse_faults

    options, settings = _setup(ctx)
    try:
        rates = parse_faults(faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    token = token or settings.token() or "sandbox-token"
    server = SandboxServer(
        Dataset(seed=seed, campaigns=campaigns),
        token,
        port=port,
        faults=FaultPlan(rates, seed=seed),
        latency=latency,
    )
    if options.dry_run:
        console.print(f"Would serve {campaigns} campaigns on 127.0.0.1:{port}.")
        return
    try:
        server.start()
    except OSError as exc:
        raise PeachDWError(
            f"Cannot listen on 127.0.0.1:{port}: {exc.strerror}. Choose another --port."
        ) from exc
    console.print(
        f"Sandbox API on {server.url} ({campaigns} campaigns, seed {seed}, "
        f"faults: {faults or 'none'}). Stop with Ctrl-C."
    )
    console.file.flush()  # a log file or pipe should see the address at once
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@cli.command()
@global_options
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Start the sandbox API, sync it into the warehouse, show status, export CSV."""
    from peachdw.sandbox import Dataset, SandboxServer

    options, settings = _setup(ctx)
    # The demo's own file, not database.path: sandbox data must never reach a real warehouse.
    settings.database.path = options.db_path or DEMO_DB_PATH
    settings.export.directory = Path("exports")
    _refuse_real_warehouse(settings.database.path)
    if options.dry_run:
        console.print(
            f"Would start the sandbox API, sync into {settings.database.path} and export "
            f"CSV under {settings.export.directory}."
        )
        return

    token = secrets.token_urlsafe(24)
    with SandboxServer(Dataset(seed=42), token) as server:
        console.rule("1. Sandbox API")
        console.print(f"Serving the Peach AI admin API contract on {server.url}")
        settings.api.base_url = server.url
        settings.api.bearer_token = token  # type: ignore[assignment]
        settings._token_source = "the demo's sandbox"

        console.rule("2. Init")
        conn = _open(settings)
        console.print(f"Database ready at {settings.database.path}")

        console.rule("3. Sync")
        with _client(settings) as client:
            result = run_sync(
                conn,
                client,
                SyncOptions(
                    lookback_hours=settings.sync.lookback_hours,
                    initial_days=settings.sync.initial_days,
                    window_hours=settings.sync.window_hours,
                ),
            )
        _print_sync(result)
        if result.status != "success":
            raise SyncError(
                f"The demo sync ended {result.status}: {result.error_message}"
            )
        conn.close()

    console.rule("4. Status")
    _show_status(settings)

    console.rule("5. Export")
    _export(settings, Period(), daily=False, output=None, dry_run=False)
    console.print(
        "Demo finished. Next: `.venv/bin/peachdw status`, "
        "`.venv/bin/peachdw export --daily`, or the README's daily runbook."
    )


def _refuse_real_warehouse(path: Path) -> None:
    """Stop the demo before it mixes sandbox data into a file synced from a real API."""
    if not path.exists():
        return
    conn = db.connect(path)
    try:
        urls = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT api_base_url FROM sync_history "
                "WHERE api_base_url IS NOT NULL"
            )
        ]
    except sqlite3.OperationalError:
        urls = []
    finally:
        conn.close()
    real = [
        url for url in urls if urlsplit(url).hostname not in ("127.0.0.1", "localhost")
    ]
    if real:
        raise PeachDWError(
            f"{path} holds data synced from {real[0]}; the demo loads sandbox data, so "
            "give it another file with --db-path."
        )


def main() -> None:
    cli(prog_name="peachdw")


__all__ = ["cli", "main"]
