"""Commands that fill the warehouse: init, sync and sync-historical."""

from __future__ import annotations

import sqlite3
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from typing import Any

import click
from rich.table import Table

from peachdw import db, rules
from peachdw.cli.base import (
    CAMPAIGN_ID,
    cli,
    console,
    global_options,
    log,
    make_client,
    open_db,
    parse_day,
    setup,
)
from peachdw.config import Settings
from peachdw.errors import SyncError
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
from peachdw.quality import (
    completeness,
    healed_campaign_days,
    quality_days,
    reconcile,
    report_days,
)
from peachdw.sync import (
    SyncOptions,
    SyncPlan,
    SyncResult,
    mark_interrupted,
    mark_unresolved,
    plan_heal,
    plan_historical,
    run_sync,
)

# -- init -----------------------------------------------------------------------------


@cli.command()
@global_options
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the database, or upgrade it in place, and load the default rules."""
    options, settings = setup(ctx)
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


@cli.command()
@global_options
@click.pass_context
def compact(ctx: click.Context) -> None:
    """Pack the database file's pages (SQLite VACUUM), once a month or after a big
    sync-historical. Refused while a sync runs."""
    options, settings = setup(ctx)
    path = settings.database.path
    conn = db.open_warehouse(path, busy_timeout_ms=settings.database.busy_timeout_ms)

    with ExitStack() as stack:
        stack.callback(conn.close)
        if options.dry_run:
            size = db.file_bytes(conn)
            slack = db.slack_bytes(conn)
            spare = f"; {_mb(slack)} of it holds no data" if slack is not None else ""
            console.print(f"Would compact {path} ({_mb(size)}{spare}).", soft_wrap=True)
            return
        stack.enter_context(SyncLock(path, "peachdw compact"))
        started = time.monotonic()
        before, after = db.compact(conn)

    console.print(
        f"Compacted {path} from {_mb(before)} to {_mb(after)} "
        f"in {time.monotonic() - started:.1f} s.",
        soft_wrap=True,
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


# -- sync -----------------------------------------------------------------------------


@cli.command()
@global_options
@click.option(
    "--full",
    is_flag=True,
    help="Re-read from sync.start_date (or sync.initial_days ago), not from the last sync.",
)
@click.option(
    "--heal",
    is_flag=True,
    help="Re-read only the hours that status counts as never read and the UTC days whose "
    "sums differ from the API's reports, and say what that fixed.",
)
@click.pass_context
def sync(ctx: click.Context, full: bool, heal: bool) -> None:
    """Pull campaigns and hourly metrics from the API into the warehouse."""
    options, settings = setup(ctx)
    if full and heal:
        raise click.BadParameter("--full and --heal do not go together; pick one.")
    if heal:
        # A heal re-reads what an existing warehouse lacks; on no file it would create
        # an empty one and find nothing to heal.
        db.require_database(settings.database.path)
    start_date = settings.sync.start_date
    sync_options = settings_sync_options(
        settings,
        dry_run=options.dry_run,
        full=full,
        full_start_hour=day_start_hour(start_date, settings.reporting.zone())
        if start_date
        else None,
    )
    _run(settings, sync_options, "peachdw sync", heal=heal, verbose=options.verbose)


@cli.command("sync-historical")
@global_options
@click.option("--start-date", help="First day to load, YYYY-MM-DD.")
@click.option("--end-date", help="Last day to load, YYYY-MM-DD, inclusive.")
@click.option("--month", help="A whole month instead of dates: August, aug or 8.")
@click.option("--year", type=click.IntRange(2000, 2100), help="The year of --month.")
@click.option("--campaign-id", type=CAMPAIGN_ID, help="Load one campaign only.")
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
    options, settings = setup(ctx)
    first, last = _backfill_days(start_date, end_date, month, year)
    start_hour, end_hour = days_to_hours(first, last, settings.reporting.zone())
    if start_hour >= current_hour():
        raise click.BadParameter(
            f"{first} is not in the past yet; nothing to load.", param_hint="dates"
        )
    if end_hour > current_hour():
        log.info(
            "%s is not over yet: loading up to the last complete hour, %s.",
            last,
            hour_text(current_hour() - 1),
        )
        end_hour = current_hour()

    if campaign_id is not None:
        _check_campaign(settings, campaign_id)

    sync_options = settings_sync_options(
        settings, dry_run=options.dry_run, test_batches=test_batches
    )
    _run(
        settings,
        sync_options,
        "peachdw sync-historical",
        historical=(start_hour, end_hour, campaign_id, resume),
    )


def _check_campaign(settings: Settings, campaign_id: int) -> None:
    """Refuse a campaign id neither the warehouse nor the API's listing knows, before a
    sync starts: a typo is not a failed sync for `status --check` to alert on."""
    path = settings.database.path
    if path.exists():
        conn = db.connect_read_only(path)
        try:
            known = conn.execute(
                "SELECT 1 FROM campaigns WHERE id = ?", (campaign_id,)
            ).fetchone()
        except sqlite3.Error:
            known = None  # not a warehouse yet: the listing decides
        finally:
            conn.close()
        if known:
            return
    with make_client(settings) as client:
        listed = {campaign.id for campaign in client.fetch_campaigns().campaigns}
    if campaign_id not in listed:
        raise click.BadParameter(
            f"campaign {campaign_id} is neither in the warehouse nor in the API's "
            f"campaign listing ({len(listed)} campaigns); `peachdw export --tab summary "
            "--output -` lists every campaign's id.",
            param_hint="--campaign-id",
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

    first = parse_day(start_date, "--start-date")
    last = parse_day(end_date, "--end-date")
    if first is None or last is None:
        raise click.UsageError(
            "Say what to load: --start-date and --end-date, or --month and --year."
        )
    if first > last:
        raise click.BadParameter("--start-date is after --end-date.")
    return first, last


def settings_sync_options(settings: Settings, **overrides: Any) -> SyncOptions:
    return SyncOptions(
        lookback_hours=settings.sync.lookback_hours,
        initial_days=settings.sync.initial_days,
        window_hours=settings.sync.window_hours,
        reconcile_days=settings.quality.reconcile_days,
        tolerance=settings.quality.tolerance,
        zone=settings.reporting.zone(),
        **overrides,
    )


def _run(
    settings: Settings,
    sync_options: SyncOptions,
    command: str,
    *,
    historical: tuple[int, int, int | None, bool] | None = None,
    heal: bool = False,
    verbose: bool = False,
) -> None:
    """Take the lock, plan, sync with progress, print the summary; raise on failure."""
    client = make_client(settings)
    if not sync_options.dry_run and not settings.database.path.exists():
        # A first sync creates the warehouse; say so, in case the path is a typo.
        log.warning(
            "No database at %s: creating a new warehouse there. If you meant an "
            "existing one, stop and check --db-path (database.path).",
            settings.database.path,
        )
    with ExitStack() as stack:
        if not sync_options.dry_run:
            # One writer at a time; a second one is refused at once, having changed nothing.
            stack.enter_context(SyncLock(settings.database.path, command))
        conn = open_db(settings, dry_run=sync_options.dry_run)
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
        if heal:
            plan, before = _plan_heal(conn, sync_options)
            if plan is None:
                return
        with WindowProgress(client.stats) as progress:
            result = run_sync(
                conn, client, sync_options, plan=plan, on_window=progress.update
            )
        after = None
        if heal and result.status == "success" and not sync_options.dry_run:
            # Still under the lock: the heal's row says what it left before any other
            # sync can start.
            after = _settle_heal(conn, sync_options, result)

    print_sync(result)
    if after is not None:
        _report_heal(before, after, verbose=verbose)
    if result.status == "unresolved":
        raise SyncError(
            f"Heal {result.sync_id} ended unresolved: {result.error_message}"
        )
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


#: `sync --heal` names the campaign-days it fixed when there are at most this many.
MAX_FIXED_LISTED = 10


@dataclass(frozen=True)
class HealState:
    """What a heal is about: the differing campaign-days and the never-read hours."""

    differing: frozenset[tuple[int, str]]
    #: Serving campaign-hours of the days status checks that no finished window read.
    unread_hours: int


def _heal_state(conn: sqlite3.Connection, options: SyncOptions) -> HealState:
    now_hour = current_hour()
    days = report_days(now_hour, options.reconcile_days)
    differing = (
        reconcile(conn, *days, tolerance=options.tolerance).differing_campaign_days
        if days
        else set()
    )
    first, last = quality_days(now_hour, options.reconcile_days, options.zone)
    _, gaps = completeness(conn, first, last, options.zone, now_hour)
    return HealState(frozenset(differing), sum(gap.missing_hours for gap in gaps))


def _plan_heal(
    conn: sqlite3.Connection, options: SyncOptions
) -> tuple[SyncPlan | None, HealState]:
    """The heal plan and what it is about; None: nothing to do."""
    plan = plan_heal(conn, options, current_hour())
    before = _heal_state(conn, options)
    if not plan.windows:
        console.print(
            "Nothing to heal: every hour of the days status checks was read and their "
            "sums agree with the API's reports."
        )
        return None, before
    console.print(
        f"Healing {len(before.differing)} campaign-day(s) that differ from the API's "
        f"reports and {before.unread_hours:,} serving campaign-hour(s) never read: "
        f"{len(plan.windows)} window(s), {span_text(plan.start_hour, plan.end_hour)}."
    )
    return plan, before


def _settle_heal(
    conn: sqlite3.Connection, options: SyncOptions, result: SyncResult
) -> HealState:
    """What the heal left; if anything, its row becomes `unresolved` with the reason.

    A campaign-day that still differs although a heal re-read every hour of it after
    its report figures (`healed_campaign_days`) is the API disagreeing with itself;
    another heal reads the same numbers. One whose hours no heal re-read since, or hours
    still never read, a heal can still fix.
    """
    after = _heal_state(conn, options)
    settled = healed_campaign_days(conn, set(after.differing))
    unsettled = len(after.differing) - len(settled)
    reasons = []
    if settled:
        reasons.append(
            f"{len(settled)} campaign-day(s) still differ from the API's reports although "
            "a heal re-read every hour of them after their report: the API's hours and "
            "its own report disagree, and another heal would read the same numbers; ask "
            "the API's owners (`peachdw status --detailed` lists them)."
        )
    missing = []
    if unsettled:
        missing.append(
            f"{unsettled} campaign-day(s) still differ from the API's reports with hours "
            "no heal has re-read since their report"
        )
    if after.unread_hours:
        missing.append(
            f"{after.unread_hours:,} serving campaign-hour(s) are still never read"
        )
    if missing:
        reasons.append(" and ".join(missing) + ": run `peachdw sync --heal` again.")
    if reasons:
        mark_unresolved(conn, result, " ".join(reasons))
    return after


def _report_heal(before: HealState, after: HealState, *, verbose: bool) -> None:
    fixed = sorted(before.differing - after.differing, key=lambda key: (key[1], key[0]))
    filled = max(before.unread_hours - after.unread_hours, 0)
    console.print(
        f"Heal: {len(fixed)} of {len(before.differing)} differing campaign-day(s) fixed; "
        f"{len(after.differing)} still differ. {filled:,} of {before.unread_hours:,} "
        f"never-read campaign-hour(s) filled; {after.unread_hours:,} still never read."
    )
    if fixed and (verbose or len(fixed) <= MAX_FIXED_LISTED):
        console.print(
            "Fixed: "
            + ", ".join(f"campaign {campaign} on {day}" for campaign, day in fixed)
            + "."
        )
    elif fixed:
        console.print(f"(--verbose lists the {len(fixed)} campaign-days fixed.)")


def _sync_failure(result: SyncResult, rerun: str) -> str:
    name = f"Sync {result.sync_id}" if result.sync_id else "The dry run"
    message = f"{name} ended {result.status}: {result.error_message}"
    if result.windows_done:
        message += " Finished windows are kept."
    if result.retry_may_help:
        message += f" {rerun}"
    return message


def print_sync(result: SyncResult) -> None:
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
