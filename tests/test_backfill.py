"""Historical backfills: exact windows, resume, narrowing, restatements, faults."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest
from sandbox_helpers import FROZEN, TOKEN, api_hours, make_client, stored_hours
from test_sync import FailingWindows

from peachdw.hours import days_to_hours
from peachdw.sandbox import Dataset, FaultPlan, SandboxServer
from peachdw.sync import SyncOptions, plan_historical, run_sync

JULY = days_to_hours(date(2025, 7, 1), date(2025, 7, 31))


@pytest.fixture
def dataset():
    return Dataset(seed=21, campaigns=40, now=FROZEN)


def backfill(
    conn, url, span=JULY, *, resume=False, campaign_id=None, options=None, client=None
):
    plan = plan_historical(conn, *span, campaign_id=campaign_id, resume=resume)
    with make_client(url) as own:
        return run_sync(conn, client or own, options or SyncOptions(), plan=plan)


def ledger(conn):
    return conn.execute(
        "SELECT start_hour, end_hour, status, campaign_id FROM sync_windows "
        "ORDER BY sync_id, start_hour"
    ).fetchall()


def test_a_month_loads_every_hour_in_windows_of_at_most_168(warehouse, api, dataset):
    result = backfill(warehouse, api.url)

    assert result.status == "success"
    assert result.sync_type == "historical"
    assert stored_hours(warehouse) == api_hours(dataset, *JULY)
    windows = [(row[0], row[1]) for row in ledger(warehouse)]
    assert windows[0][0] == JULY[0] and windows[-1][1] == JULY[1]
    assert all(end - start <= 168 for start, end in windows)
    assert all(a[1] == b[0] for a, b in pairwise(windows))
    assert len(windows) == 5  # 744 hours: four full weeks and 72 hours


def test_resume_after_a_complete_load_reads_no_metrics(warehouse, api):
    backfill(warehouse, api.url)
    metrics_calls = api.requests["/admin/metrics"]

    again = backfill(warehouse, api.url, resume=True)
    assert again.status == "success"
    assert (again.windows_total, again.windows_skipped) == (0, 5)
    assert api.requests["/admin/metrics"] == metrics_calls


def test_rerun_without_resume_reads_everything_and_counts_unchanged(warehouse, api):
    first = backfill(warehouse, api.url)
    second = backfill(warehouse, api.url)
    assert second.windows_done == 5
    assert second.counts["records_inserted"] == 0
    assert second.counts["records_unchanged"] == first.counts["records_inserted"]


def test_test_batches_stop_early_and_resume_reads_the_rest(warehouse, api, dataset):
    first = backfill(warehouse, api.url, options=SyncOptions(test_batches=2))
    assert first.windows_done == 2
    assert "Stopped after 2 of 5 windows" in first.note
    calls = api.requests["/admin/metrics"]

    rest = backfill(warehouse, api.url, resume=True)
    assert (rest.windows_done, rest.windows_skipped) == (3, 2)
    assert api.requests["/admin/metrics"] - calls == 3
    assert stored_hours(warehouse) == api_hours(dataset, *JULY)


def test_one_campaign_backfill_is_its_own_scope(warehouse, api, dataset):
    cid = next(c["id"] for c in dataset.campaigns if c["is_serving"])
    result = backfill(warehouse, api.url, campaign_id=cid)

    assert result.campaign_id == cid
    expected = {k: v for k, v in api_hours(dataset, *JULY).items() if k[0] == cid}
    assert stored_hours(warehouse) == expected
    assert {row[3] for row in ledger(warehouse)} == {cid}
    assert (
        warehouse.execute("SELECT campaign_id FROM sync_history").fetchone()[0] == cid
    )

    # Done for one campaign is not done for all of them.
    everyone = plan_historical(warehouse, *JULY, resume=True)
    assert len(everyone.windows) == 5
    same = plan_historical(warehouse, *JULY, campaign_id=cid, resume=True)
    assert same.windows == ()


def test_failed_windows_stay_failed_and_resume_fills_them(warehouse, api, dataset):
    bad = JULY[0] + 2 * 168
    with make_client(api.url) as client:
        first = backfill(warehouse, api.url, client=FailingWindows(client, {bad}))
    assert first.status == "partial"
    assert [(w.start_hour, w.end_hour) for w in first.failed_windows] == [
        (bad, bad + 168)
    ]
    assert "failed" in {row[2] for row in ledger(warehouse)}

    resumed = backfill(warehouse, api.url, resume=True)
    assert (resumed.windows_done, resumed.windows_skipped) == (1, 4)
    assert stored_hours(warehouse) == api_hours(dataset, *JULY)


def test_restated_hours_are_counted_with_the_oldest(warehouse, api, dataset):
    backfill(warehouse, api.url)
    # The API restates one campaign's numbers for a day in mid-July.
    mid_july = JULY[0] + 14 * 24
    cid = next(key[0] for key in stored_hours(warehouse, mid_july, mid_july + 24))
    restated_day = mid_july
    rows = [
        {**row, "sessions": row["sessions"] + 5}
        for row in dataset.metrics(restated_day, restated_day + 24, cid)
    ]
    original = dataset.metrics

    def metrics(start, end, campaign_id=None):
        answer = original(start, end, campaign_id)
        if start <= restated_day < end:
            keep = [
                r
                for r in answer
                if not (
                    r["campaign_id"] == cid
                    and restated_day <= r["unix_hour"] < restated_day + 24
                )
            ]
            answer = sorted(
                keep + rows, key=lambda r: (r["unix_hour"], r["campaign_id"])
            )
        return answer

    dataset.metrics = metrics
    result = backfill(warehouse, api.url)
    assert result.counts["records_restated"] == len(rows) > 0
    assert result.restated_oldest_hour == min(r["unix_hour"] for r in rows)
    row = warehouse.execute(
        "SELECT records_restated, restated_oldest_hour FROM sync_history WHERE id = ?",
        (result.sync_id,),
    ).fetchone()
    assert tuple(row) == (len(rows), result.restated_oldest_hour)


def test_thirty_days_through_faults_equal_a_clean_load(warehouse, dataset, tmp_path):
    span = days_to_hours(
        FROZEN.date() - timedelta(days=31), FROZEN.date() - timedelta(days=2)
    )
    plan = FaultPlan(
        {"429": 0.1, "500": 0.1, "timeout": 0.05, "malformed": 0.05}, seed=9
    )
    with SandboxServer(dataset, TOKEN, faults=plan, timeout_delay=1.0) as flaky:
        with make_client(flaky.url, timeout=0.5) as client:
            result = run_sync(
                warehouse,
                client,
                SyncOptions(window_hours=24),
                plan=plan_historical(warehouse, *span, window_hours=24),
            )
        injected = flaky.faults_injected

    assert sum(injected.values()) > 5
    assert injected["timeout"] > 0
    # With this seed one window fails all three attempts: it is left failed and named.
    assert result.status == "partial"
    [failure] = result.failed_windows
    assert "after 3 attempts" in failure.error
    failed = warehouse.execute(
        "SELECT start_hour FROM sync_windows WHERE status = 'failed'"
    ).fetchall()
    assert [row[0] for row in failed] == [failure.start_hour]

    with SandboxServer(dataset, TOKEN) as clean:
        resumed = backfill(warehouse, clean.url, span, resume=True)
    assert resumed.windows_done == 1
    assert stored_hours(warehouse) == api_hours(dataset, *span)
    assert warehouse.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_full_sync_starts_at_the_configured_day(warehouse, api, dataset):
    from sandbox_helpers import FROZEN_HOUR, FROZEN_TS

    start = days_to_hours(date(2025, 7, 25), date(2025, 7, 25))[0]
    with make_client(api.url) as client:
        run_sync(warehouse, client, SyncOptions(), now=FROZEN_TS)
        full = run_sync(
            warehouse,
            client,
            SyncOptions(full=True, full_start_hour=start),
            now=FROZEN_TS,
        )
    assert (full.sync_type, full.window_start_hour) == ("full", start)
    assert stored_hours(warehouse) == api_hours(dataset, start, FROZEN_HOUR)


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", date(2025, 3, 30), 23),
        ("Europe/Berlin", date(2025, 10, 26), 25),
        ("America/New_York", date(2025, 3, 9), 23),
        ("America/New_York", date(2025, 11, 2), 25),
        ("UTC", date(2025, 3, 30), 24),
    ],
)
def test_backfill_days_are_cut_in_the_reporting_zone(zone, day, hours):
    from zoneinfo import ZoneInfo

    start, end = days_to_hours(day, day, ZoneInfo(zone))
    assert end - start == hours
    offset = ZoneInfo(zone).utcoffset(datetime(day.year, day.month, day.day))
    assert start * 3600 == datetime(
        day.year, day.month, day.day, tzinfo=UTC
    ).timestamp() - (offset.total_seconds())


def test_progress_reports_windows_rate_retries_and_time_left(caplog):
    import logging

    from peachdw.client import ApiStats
    from peachdw.progress import WindowProgress
    from peachdw.sync import SyncResult, WindowFailure

    stats = ApiStats(calls=9, retries=2)
    result = SyncResult(
        sync_id=1,
        sync_type="historical",
        window_start_hour=0,
        window_end_hour=10,
        windows_total=5,
        windows_done=1,
    )
    result.failed_windows.append(WindowFailure(0, 1, "HTTP 503"))
    result.counts["records_processed"] = 1000

    with caplog.at_level(logging.INFO), WindowProgress(stats, terminal=False) as plain:
        plain.update(result)
    line = caplog.records[-1].getMessage()
    assert line.startswith("Windows 2/5 done (1 failed): ")
    assert "rows/s, 2 API retries, about " in line

    with WindowProgress(stats, terminal=True) as bar:
        bar.update(result)
        task = bar._bar.tasks[0]
        assert (task.completed, task.total) == (2, 5)
        assert task.fields["retries"] == 2
