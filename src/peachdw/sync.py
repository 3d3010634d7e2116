"""The sync: plan, fetch, validate, load, map, record.

A plan is the list of metrics windows to read: for an incremental sync, from the last
synced hour less the look-back to the last complete hour; for a historical backfill, a date
range, less the windows already done when resuming. Then, in order: campaigns (one
transaction), metrics window by window (each window with its ledger entry in one
transaction, so a failure or a kill keeps every finished window and nothing half-written),
the hierarchy mapping of new and changed campaigns, and the sync's row in `sync_history`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from peachdw import loader, metrics, rollup, rules
from peachdw.client import PeachClient, window_bounds
from peachdw.db import transaction, utc_now
from peachdw.errors import ApiError, SyncError
from peachdw.hours import current_hour, days_to_hours, merge_spans, span_text
from peachdw.quality import (
    coverage_start,
    covered_spans,
    quality_days,
    reconcile,
    report_days,
    store_reports,
    unread_hours,
    utc_day,
)

log = logging.getLogger(__name__)

_COUNTERS = (
    "campaigns_seen",
    "campaigns_inserted",
    "campaigns_updated",
    "campaigns_deleted",
    "records_processed",
    "records_inserted",
    "records_updated",
    "records_unchanged",
    "records_rejected",
    "records_duplicate",
    "records_out_of_window",
    "records_zeroed",
    "records_restated",
)

#: The counts each window's ledger row keeps, as in `sync_history`.
LEDGER_COUNTERS = (
    "records_inserted",
    "records_updated",
    "records_unchanged",
    "records_rejected",
)

#: Test hook (see `hold`): `<point>` or `<point>:<n>` to stop at the n-th time there.
HOLD_ENV = "PEACHDW_TEST_HOLD"
#: File `hold` creates when it stops, so a test knows the moment has come.
HOLD_FILE_ENV = "PEACHDW_TEST_HOLD_FILE"
_hold_counts: dict[str, int] = {}

#: Days of /admin/reports read in one call.
REPORT_CHUNK_DAYS = 31
#: The zone reports are cut in unless reporting.timezone says otherwise.
_UTC = ZoneInfo("UTC")


@dataclass
class WindowFailure:
    start_hour: int
    end_hour: int
    error: str


@dataclass
class SyncResult:
    """What one sync did; the same figures as its `sync_history` row."""

    sync_id: int | None
    sync_type: str
    window_start_hour: int
    window_end_hour: int
    campaign_id: int | None = None
    status: str = "running"
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    windows_total: int = 0
    windows_skipped: int = 0
    windows_done: int = 0
    restated_oldest_hour: int | None = None
    note: str | None = None
    failed_windows: list[WindowFailure] = field(default_factory=list)
    campaigns_mapped: int = 0
    api_calls: int = 0
    api_retries: int = 0
    api_wait_seconds: float = 0.0
    error_message: str | None = None
    #: False when the failure was one a rerun cannot cure (a refused token, a bad request).
    retry_may_help: bool = True
    rejection_examples: list[str] = field(default_factory=list)
    #: Rows of the API's daily reports kept for reconciliation.
    report_rows: int = 0
    dry_run: bool = False
    seconds: float = 0.0

    started_monotonic: float = field(default_factory=time.monotonic)

    @property
    def rows_written(self) -> int:
        return self.counts["records_inserted"] + self.counts["records_updated"]


@dataclass(frozen=True)
class SyncOptions:
    lookback_hours: int = 48
    initial_days: int = 7
    window_hours: int = 168
    full: bool = False
    #: First hour `full` reads from; None: `initial_days` before now.
    full_start_hour: int | None = None
    dry_run: bool = False
    #: Stop after this many windows (a trial run of a backfill).
    test_batches: int | None = None
    #: UTC days, ending yesterday, whose API reports the sync keeps for reconciliation.
    reconcile_days: int = 0
    #: How far a daily sum may differ from the API's report, as a share of it.
    tolerance: float = 0.0
    #: reporting.timezone: the zone the daily rollup is cut in.
    zone: ZoneInfo = _UTC


@dataclass(frozen=True)
class SyncPlan:
    """The windows one sync will read, decided before it starts."""

    sync_type: str
    start_hour: int
    end_hour: int
    windows: tuple[tuple[int, int], ...]
    campaign_id: int | None = None
    #: Windows of the range left out because they are already done (resume).
    skipped: int = 0
    #: UTC days (first, last) whose API reports are read after the metrics.
    report_days: tuple[date, date] | None = None


def plan_incremental(
    conn: sqlite3.Connection, options: SyncOptions, now_hour: int
) -> SyncPlan:
    start, end = plan_range(conn, options, now_hour)
    windows = tuple(window_bounds(start, end, options.window_hours))
    return SyncPlan(
        "full" if options.full else "incremental",
        start,
        end,
        windows,
        report_days=report_days(now_hour, options.reconcile_days),
    )


def plan_historical(
    conn: sqlite3.Connection,
    start_hour: int,
    end_hour: int,
    *,
    window_hours: int = 168,
    campaign_id: int | None = None,
    resume: bool = False,
) -> SyncPlan:
    """Cut [start_hour, end_hour) into windows; with `resume`, leave out the done ones.

    A window counts as done when finished windows of any earlier sync, for all campaigns
    or for this campaign, cover every hour of it. Failed windows are read again.
    """
    windows = tuple(window_bounds(start_hour, end_hour, window_hours))
    skipped = 0
    if resume:
        covered = covered_spans(conn, campaign_id)
        todo = tuple(w for w in windows if not _covers(covered, w))
        skipped = len(windows) - len(todo)
        windows = todo
    # The UTC days the range touches; the sync keeps the reports of those it leaves
    # wholly read. A load of one campaign keeps none: a report day holds every campaign.
    days = (
        utc_day(start_hour),
        utc_day(end_hour - 1),
    )
    return SyncPlan(
        "historical",
        start_hour,
        end_hour,
        windows,
        campaign_id,
        skipped,
        report_days=days if campaign_id is None else None,
    )


def _loopback(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def plan_heal(
    conn: sqlite3.Connection, options: SyncOptions, now_hour: int
) -> SyncPlan:
    """Windows over only the hours that need reading again: the UTC days of the reconciled
    days whose sums differ from the API's reports, and the hours that completeness (over
    the same number of days, cut in reporting.timezone) counts as never read. The reports
    of the reconciled days among them are read again after them.
    """
    days = report_days(now_hour, options.reconcile_days)
    if days is None or coverage_start(conn) is None:
        return SyncPlan("heal", now_hour, now_hour, ())

    found = reconcile(conn, *days, tolerance=options.tolerance)
    differing = {date.fromisoformat(difference.day) for difference in found.differences}
    spans = [days_to_hours(day, day) for day in differing]
    local_first, local_last = quality_days(
        now_hour, options.reconcile_days, options.zone
    )
    spans += unread_hours(conn, local_first, local_last, options.zone, now_hour)

    merged = merge_spans(sorted(spans))
    if not merged:
        return SyncPlan("heal", now_hour, now_hour, ())
    windows = tuple(
        window
        for lo, hi in merged
        for window in window_bounds(lo, hi, options.window_hours)
    )
    return SyncPlan(
        "heal",
        merged[0][0],
        merged[-1][1],
        windows,
        report_days=whole_days(conn, days, merged, reading=merged),
    )


def whole_days(
    conn: sqlite3.Connection,
    days: tuple[date, date],
    reach: Sequence[tuple[int, int]],
    *,
    reading: Sequence[tuple[int, int]] = (),
) -> tuple[date, date] | None:
    """The first and last UTC day, among `days`, that the spans `reach` touch and that
    finished windows for every campaign (with the spans `reading`, about to be read)
    cover hour by hour: the days whose reports can be compared with the warehouse.

    A report of a day read in part (a local day's edge, a date range cut in another zone)
    would show the hours never read as differences.
    """
    covered = merge_spans(sorted([*covered_spans(conn), *reading]))
    whole = []
    for lo, hi in reach:
        day = max(days[0], utc_day(lo))
        last = min(days[1], utc_day(hi - 1))
        while day <= last:
            if _covers(covered, days_to_hours(day, day)):
                whole.append(day)
            day += timedelta(days=1)
    return (min(whole), max(whole)) if whole else None


def _covers(spans: list[tuple[int, int]], window: tuple[int, int]) -> bool:
    return any(start <= window[0] and window[1] <= end for start, end in spans)


def hold(point: str) -> None:
    """Test hook: stop here for a minute when PEACHDW_TEST_HOLD names this point.

    The crash-safety tests use it to kill a sync at a known moment (inside a window's
    write, between windows). It does nothing unless the variable is set.
    """
    wanted = os.environ.get(HOLD_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != point:
        return
    _hold_counts[point] = _hold_counts.get(point, 0) + 1
    if _hold_counts[point] != int(nth or 1):
        return
    marker = os.environ.get(HOLD_FILE_ENV)
    if marker:
        Path(marker).touch()
    time.sleep(60)


def plan_range(
    conn: sqlite3.Connection, options: SyncOptions, now_hour: int
) -> tuple[int, int]:
    """The metrics range [start, end) this sync covers.

    From the last hour an earlier sync finished, less the look-back (late events still
    change recent hours: contract, GET /admin/metrics), or the initial days on a first run;
    an earlier window that failed and was not fetched again since pulls the start back.
    """
    end = now_hour
    first_run_start = end - options.initial_days * 24
    if options.full:
        return options.full_start_hour or first_run_start, end

    last_done = conn.execute(
        "SELECT max(end_hour) FROM sync_windows WHERE status = 'done'"
    ).fetchone()[0]
    if last_done is None:
        return first_run_start, end

    start = min(last_done - options.lookback_hours, end - 1)
    # A failed window whose hours no finished window has read since pulls the start back.
    covered = covered_spans(conn)
    failed = [
        row[0]
        for row in conn.execute(
            "SELECT start_hour, end_hour FROM sync_windows "
            "WHERE status = 'failed' AND campaign_id IS NULL"
        )
        if not _covers(covered, (row[0], row[1]))
    ]
    if failed:
        start = min(start, *failed)
    return max(start, first_run_start - 365 * 24), end


def mark_interrupted(conn: sqlite3.Connection, *, all_running: bool = False) -> int:
    """Close sync rows left `running` by a process that no longer runs.

    With `all_running` (the caller holds the sync lock, so no other sync can be running)
    every such row is closed; otherwise only rows whose process is gone.
    """
    stale = [
        row["id"]
        for row in conn.execute(
            "SELECT id, pid FROM sync_history WHERE status = 'running'"
        )
        if all_running or not process_alive(row["pid"])
    ]
    if stale:
        # What the dead sync did is in its ledger: carry the totals into its row.
        totals = ", ".join(
            f"{name} = (SELECT coalesce(sum(w.{name}), 0) FROM sync_windows AS w "
            "WHERE w.sync_id = sync_history.id)"
            for name in LEDGER_COUNTERS
        )
        with transaction(conn):
            conn.executemany(
                "UPDATE sync_history SET status = 'interrupted', finished_at = ?, "
                "error_message = 'The process running this sync stopped before it "
                f"finished; its finished windows are kept.', {totals} WHERE id = ?",
                [(utc_now(), sync_id) for sync_id in stale],
            )
        log.warning("Marked %d earlier sync(s) as interrupted: %s", len(stale), stale)
    return len(stale)


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_sync(
    conn: sqlite3.Connection,
    client: PeachClient,
    options: SyncOptions,
    *,
    plan: SyncPlan | None = None,
    now: float | None = None,
    on_window: Callable[[SyncResult], None] | None = None,
) -> SyncResult:
    """Run one sync (incremental unless a plan says otherwise) and return what it did.

    API failures do not raise: they end the sync `partial` or `failed` with the reason in
    the result and in `sync_history`; Ctrl-C ends it `interrupted`. Storage errors raise
    after the sync row is closed. `on_window` is called after every window, for progress.
    """
    if not options.dry_run:
        mark_interrupted(conn)
        # Before any window is written: a changed reporting.timezone rebuilds the daily
        # rollup here, under the sync's lock, and each window then keeps it in step.
        with transaction(conn):
            rollup.ensure(conn, options.zone)
    plan = plan or plan_incremental(conn, options, current_hour(now))
    windows = plan.windows
    if options.test_batches is not None:
        windows = windows[: options.test_batches]
    result = SyncResult(
        sync_id=None,
        sync_type=plan.sync_type,
        window_start_hour=plan.start_hour,
        window_end_hour=plan.end_hour,
        campaign_id=plan.campaign_id,
        windows_total=len(windows),
        windows_skipped=plan.skipped,
        dry_run=options.dry_run,
    )
    previous_url = conn.execute(
        "SELECT api_base_url FROM sync_history "
        "WHERE status IN ('success', 'unresolved') "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if (
        previous_url
        and previous_url[0]
        and previous_url[0] != client.base_url
        # The sandbox and the demo take a new loopback port each run.
        and not (_loopback(previous_url[0]) and _loopback(client.base_url))
    ):
        log.warning(
            "This sync reads %s; the last successful one read %s. Check --api-url "
            "if that is not intended.",
            client.base_url,
            previous_url[0],
        )
    if not options.dry_run:
        result.sync_id = _open_sync_row(conn, result, client.base_url)
    log.info(
        "Sync %s (%s) started: %s, %d windows to read, %d already done",
        result.sync_id or "(dry run)",
        plan.sync_type,
        span_text(plan.start_hour, plan.end_hour),
        len(windows),
        plan.skipped,
    )

    try:
        # fetch + load: campaigns
        changed, listed = _sync_campaigns(conn, client, result)

        if plan.campaign_id is not None and listed and plan.campaign_id not in listed:
            result.status = "failed"
            result.retry_may_help = False
            result.error_message = (
                f"Campaign {plan.campaign_id} is not in the API's campaign listing; "
                "`peachdw export --tab summary --output -` lists every campaign's id."
            )

        # fetch + validate + load: metrics, one window per transaction. The metrics are
        # the warehouse's, read once: adding one takes the sync lock, so they stay put.
        if result.status == "running":
            names = metrics.of(conn)
            for window_start, window_end in windows:
                go_on = _sync_window(
                    conn, client, result, (window_start, window_end), listed, names
                )
                if on_window:
                    on_window(result)
                if not go_on:
                    break
                hold("between-windows")
        # fetch + load: the API's daily reports, to reconcile the hours against
        report_days = plan.report_days
        if plan.sync_type == "historical" and report_days:
            # Only now is it known which days the windows left wholly read.
            report_days = whole_days(
                conn, report_days, [(plan.start_hour, plan.end_hour)]
            )
        if result.status == "running" and report_days and not options.dry_run:
            _sync_reports(conn, client, result, *report_days)

        if len(windows) < len(plan.windows):
            result.note = (
                f"Stopped after {len(windows)} of {len(plan.windows)} windows as asked; "
                "run again with --resume to read the rest."
            )

        # classify: hierarchy for new and changed campaigns
        if not options.dry_run and result.status != "failed":
            with transaction(conn):
                unmapped = [
                    row[0]
                    for row in conn.execute(
                        "SELECT c.id FROM campaigns AS c LEFT JOIN campaign_hierarchy AS h "
                        "ON h.campaign_id = c.id WHERE h.campaign_id IS NULL"
                    )
                ]
                result.campaigns_mapped = rules.map_campaigns(
                    conn, {*changed, *unmapped}
                )
    except KeyboardInterrupt:
        # Ctrl-C: the window being written was rolled back; say so and return.
        result.status = "interrupted"
        result.error_message = (
            f"Stopped by the user after {result.windows_done} of "
            f"{result.windows_total} windows."
        )
    except Exception as exc:
        result.status = "failed"
        result.error_message = f"The sync stopped on an error: {exc}"
        raise
    finally:
        # record
        _finish(result, client)
        result.seconds = time.monotonic() - result.started_monotonic
        if not options.dry_run:
            _close_sync_row(conn, result)
    log.info(
        "Sync %s %s: %d rows inserted, %d updated (%d restated), %d unchanged, "
        "%d rejected; %d API calls, %d retries",
        result.sync_id or "(dry run)",
        result.status,
        result.counts["records_inserted"],
        result.counts["records_updated"],
        result.counts["records_restated"],
        result.counts["records_unchanged"],
        result.counts["records_rejected"],
        result.api_calls,
        result.api_retries,
    )
    return result


def _sync_reports(
    conn: sqlite3.Connection,
    client: PeachClient,
    result: SyncResult,
    first: date,
    last: date,
) -> None:
    """Keep the API's daily reports; a failure here is a warning, not a failed sync.

    A long range (a historical load) is read a month at a time, so that no answer holds
    more than about 31 days of every campaign.
    """
    while first <= last:
        chunk_last = min(last, first + timedelta(days=REPORT_CHUNK_DAYS - 1))
        try:
            rows = client.fetch_reports(first.isoformat(), chunk_last.isoformat())
        except ApiError as exc:
            log.warning(
                "Daily reports for %s to %s were not read (%s); the next sync reads "
                "them and `status --detailed` reconciles the days it has.",
                first,
                chunk_last,
                exc,
            )
            return
        with transaction(conn):
            kept = store_reports(conn, rows, first, chunk_last, result.sync_id)
        result.report_rows += kept
        log.info("Kept %d daily report rows for %s to %s", kept, first, chunk_last)
        first = chunk_last + timedelta(days=1)


def _sync_campaigns(
    conn: sqlite3.Connection, client: PeachClient, result: SyncResult
) -> tuple[list[int], set[int]]:
    """Load the listing; returns the campaigns that changed and every id listed."""
    try:
        listing = client.fetch_campaigns()
    except ApiError as exc:
        result.status = "failed"
        result.error_message = str(exc)
        result.retry_may_help = exc.transient
        log.error("Campaign listing failed: %s", exc)
        return [], set()

    counts = result.counts
    if result.dry_run:
        campaign_counts = loader.upsert_campaigns(
            conn, listing.campaigns, None, dry_run=True
        )
    else:
        with transaction(conn):
            campaign_counts = loader.upsert_campaigns(
                conn,
                listing.campaigns,
                result.sync_id,
                # A campaign rejected for a bad field is still listed: do not delete it.
                listing_complete=not listing.rejected,
            )
            loader.record_drift(
                conn, "/admin/campaigns", listing.unknown_fields, result.sync_id
            )
            loader.record_rejections(conn, result.sync_id, listing.rejected)
    if campaign_counts.vanished_kept:
        result.note = (
            f"{campaign_counts.vanished_kept} campaigns missing from the listing were "
            "kept, not deleted: more than half at once. Check api.base_url."
        )
    counts["campaigns_seen"] = campaign_counts.seen
    counts["campaigns_inserted"] = campaign_counts.inserted
    counts["campaigns_updated"] = campaign_counts.updated
    counts["campaigns_deleted"] = campaign_counts.deleted
    log.info(
        "Campaigns: %d listed, %d new, %d changed, %d deleted, %d rejected",
        campaign_counts.seen,
        campaign_counts.inserted,
        campaign_counts.updated,
        campaign_counts.deleted,
        len(listing.rejected),
    )
    return campaign_counts.changed_ids, {c.id for c in listing.campaigns}


def _sync_window(
    conn: sqlite3.Connection,
    client: PeachClient,
    result: SyncResult,
    span: tuple[int, int],
    listed: set[int],
    names: tuple[str, ...],
) -> bool:
    """Fetch and store one window of the metrics `names`. Returns False when the sync
    must stop."""
    start_hour, end_hour = span
    calls_before = client.stats.calls
    try:
        window = client.fetch_metrics(start_hour, end_hour, result.campaign_id, names)
    except ApiError as exc:
        result.failed_windows.append(WindowFailure(start_hour, end_hour, str(exc)))
        result.retry_may_help = result.retry_may_help and exc.transient
        log.error("Window %s failed: %s", span_text(start_hour, end_hour), exc)
        if not result.dry_run:
            with transaction(conn):
                _record_window(
                    conn,
                    result,
                    start_hour,
                    end_hour,
                    None,
                    "failed",
                    str(exc),
                    attempts=client.stats.calls - calls_before,
                )
        # A refused token or a long rate-limit wait will not get better in the next window.
        return exc.transient

    # A dry run stored no campaigns, so the ones just listed count as known.
    known = loader.known_campaign_ids(conn) | listed
    if result.dry_run:
        plan = loader.plan_hourly(conn, window, known)
    else:
        with transaction(conn):
            plan = loader.plan_hourly(conn, window, known)
            loader.apply_hourly(conn, plan, result.sync_id)
            hold("window-write")
            loader.record_rejections(conn, result.sync_id, plan.rejected)
            loader.record_drift(
                conn, metrics.METRICS_ENDPOINT, window.unknown_fields, result.sync_id
            )
            _record_window(
                conn,
                result,
                start_hour,
                end_hour,
                plan,
                "done",
                None,
                attempts=client.stats.calls - calls_before,
            )

    rejected = plan.rejected
    if rejected:
        examples = [
            f"campaign {r.campaign_id} hour {r.unix_hour}: {r.reason}"
            for r in rejected[:3]
        ]
        result.rejection_examples.extend(examples[: 5 - len(result.rejection_examples)])
        log.warning(
            "Window %s: %d rows rejected, for example %s",
            span_text(start_hour, end_hour),
            len(rejected),
            examples[0],
        )

    counts = result.counts
    counts["records_processed"] += window.received
    counts["records_inserted"] += plan.inserted
    counts["records_updated"] += plan.changed
    counts["records_zeroed"] += plan.zeroed
    # A stored hour the API changed is a restatement; how old it is tells how far back
    # the API still changes numbers.
    counts["records_restated"] += plan.changed
    if plan.oldest_changed_hour is not None and (
        result.restated_oldest_hour is None
        or plan.oldest_changed_hour < result.restated_oldest_hour
    ):
        result.restated_oldest_hour = plan.oldest_changed_hour
    counts["records_unchanged"] += plan.unchanged
    counts["records_rejected"] += len(rejected)
    counts["records_duplicate"] += window.duplicates
    counts["records_out_of_window"] += window.out_of_window
    result.windows_done += 1
    log.info(
        "Window %s: %d rows received, %d inserted, %d updated, %d unchanged, "
        "%d rejected",
        span_text(start_hour, end_hour),
        window.received,
        plan.inserted,
        plan.changed,
        plan.unchanged,
        len(rejected),
    )
    return True


def _record_window(
    conn: sqlite3.Connection,
    result: SyncResult,
    start_hour: int,
    end_hour: int,
    plan: loader.HourlyPlan | None,
    status: str,
    error: str | None,
    *,
    attempts: int,
) -> None:
    conn.execute(
        "INSERT INTO sync_windows (sync_id, start_hour, end_hour, campaign_id, status, "
        "records_inserted, records_updated, records_unchanged, records_rejected, "
        "attempts, error_message, finished_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            result.sync_id,
            start_hour,
            end_hour,
            result.campaign_id,
            status,
            plan.inserted if plan else 0,
            plan.changed if plan else 0,
            plan.unchanged if plan else 0,
            len(plan.rejected) if plan else 0,
            max(attempts, 1),
            error,
            utc_now(),
        ),
    )


def _finish(result: SyncResult, client: PeachClient) -> None:
    result.api_calls = client.stats.calls
    result.api_retries = client.stats.retries
    result.api_wait_seconds = round(client.stats.wait_seconds, 3)
    if result.status in ("failed", "interrupted"):
        return
    if result.failed_windows:
        result.status = "partial" if result.windows_done else "failed"
        failed = "; ".join(
            span_text(w.start_hour, w.end_hour) for w in result.failed_windows
        )
        result.error_message = (
            f"{len(result.failed_windows)} metrics window(s) failed ({failed}): "
            f"{result.failed_windows[0].error}"
        )
    else:
        result.status = "success"


def mark_unresolved(conn: sqlite3.Connection, result: SyncResult, message: str) -> None:
    """Record a heal that read every window it planned yet left campaign-days differing
    from the API's reports, or hours never read, as `unresolved`, with `message`: not a
    success, and not a failure a rerun of the same windows would cure."""
    result.status = "unresolved"
    result.error_message = message
    # The log's last word on the heal: its windows were read, yet it did not settle.
    log.warning("Sync %s unresolved: %s", result.sync_id, message)
    with transaction(conn):
        conn.execute(
            "UPDATE sync_history SET status = 'unresolved', error_message = ? "
            "WHERE id = ?",
            (message, result.sync_id),
        )


def _open_sync_row(
    conn: sqlite3.Connection, result: SyncResult, api_base_url: str
) -> int:
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO sync_history (sync_type, status, started_at, window_start_hour, "
            "window_end_hour, campaign_id, api_base_url, pid) "
            "VALUES (?, 'running', ?, ?, ?, ?, ?, ?)",
            (
                result.sync_type,
                utc_now(),
                result.window_start_hour,
                result.window_end_hour,
                result.campaign_id,
                api_base_url,
                os.getpid(),
            ),
        )
    return int(cursor.lastrowid)


def _close_sync_row(conn: sqlite3.Connection, result: SyncResult) -> None:
    if result.status == "running":
        result.status = "failed"
        result.error_message = result.error_message or "The sync stopped on an error."
    assignments = ", ".join(f"{name} = ?" for name in _COUNTERS)
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        with transaction(conn):
            conn.execute(
                f"UPDATE sync_history SET status = ?, finished_at = ?, {assignments}, "
                "api_calls = ?, api_retries = ?, api_wait_seconds = ?, error_message = ?, "
                "restated_oldest_hour = ? WHERE id = ?",
                (
                    result.status,
                    utc_now(),
                    *(result.counts[name] for name in _COUNTERS),
                    result.api_calls,
                    result.api_retries,
                    result.api_wait_seconds,
                    result.error_message,
                    result.restated_oldest_hour,
                    result.sync_id,
                ),
            )
    except sqlite3.Error as exc:
        raise SyncError(
            f"Sync {result.sync_id} ran but its history row could not be saved: {exc}."
        ) from exc


__all__ = [
    "SyncOptions",
    "SyncPlan",
    "SyncResult",
    "mark_interrupted",
    "mark_unresolved",
    "plan_historical",
    "plan_incremental",
    "run_sync",
]
