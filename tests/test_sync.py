from __future__ import annotations

from datetime import timedelta

import pytest
from sandbox_helpers import (
    FROZEN,
    FROZEN_HOUR,
    FROZEN_TS,
    TOKEN,
    api_hours,
    make_client,
    stored_hours,
)

from peachdw.errors import TransientApiError
from peachdw.sandbox import Dataset, FaultPlan, SandboxServer
from peachdw.sync import SyncOptions, plan_range, run_sync

WEEK = 7 * 24


@pytest.fixture
def dataset():
    return Dataset(seed=11, campaigns=60, now=FROZEN)


def sync(conn, url, *, now=FROZEN_TS, options=None, **client_kwargs):
    with make_client(url, **client_kwargs) as client:
        return run_sync(conn, client, options or SyncOptions(), now=now)


def history(conn, sync_id):
    return conn.execute(
        "SELECT * FROM sync_history WHERE id = ?", (sync_id,)
    ).fetchone()


def test_first_sync_loads_campaigns_and_the_last_seven_days(warehouse, api, dataset):
    result = sync(warehouse, api.url)

    assert result.status == "success"
    assert (result.window_start_hour, result.window_end_hour) == (
        FROZEN_HOUR - WEEK,
        FROZEN_HOUR,
    )
    expected = api_hours(dataset, FROZEN_HOUR - WEEK, FROZEN_HOUR)
    assert stored_hours(warehouse) == expected
    assert result.counts["records_inserted"] == len(expected)

    campaigns = warehouse.execute("SELECT count(*) FROM campaigns").fetchone()[0]
    mapped = warehouse.execute("SELECT count(*) FROM campaign_hierarchy").fetchone()[0]
    assert campaigns == len(dataset.campaigns) == mapped

    row = history(warehouse, result.sync_id)
    assert row["status"] == "success"
    assert row["records_inserted"] == len(expected) > 0
    assert row["api_calls"] == result.api_calls >= 2
    assert row["finished_at"] is not None
    done = warehouse.execute("SELECT count(*) FROM sync_windows WHERE status = 'done'")
    assert done.fetchone()[0] == 1


def test_second_sync_inserts_nothing_and_counts_the_look_back(warehouse, api, dataset):
    sync(warehouse, api.url)
    changes = warehouse.total_changes

    second = sync(warehouse, api.url)
    assert second.status == "success"
    assert (second.window_start_hour, second.window_end_hour) == (
        FROZEN_HOUR - 48,
        FROZEN_HOUR,
    )
    look_back = api_hours(dataset, FROZEN_HOUR - 48, FROZEN_HOUR)
    assert second.counts["records_inserted"] == 0
    assert second.counts["records_updated"] == 0
    assert second.counts["records_unchanged"] >= len(look_back) > 0
    # Only the two sync_history writes and the ledger row; no hourly row rewritten.
    assert warehouse.total_changes - changes <= 4


def test_late_events_are_updated_on_the_next_sync(warehouse, api, dataset):
    sync(warehouse, api.url)
    later = FROZEN + timedelta(hours=2)
    dataset.set_now(later)

    result = sync(warehouse, api.url, now=later.timestamp())
    assert result.status == "success"
    assert result.counts["records_updated"] > 0
    end = FROZEN_HOUR + 2
    assert stored_hours(warehouse) == api_hours(dataset, FROZEN_HOUR - WEEK, end)


def test_bad_token_stops_after_one_request_and_is_never_stored(warehouse, api):
    wrong = "wrong-token-abcdef"
    result = sync(warehouse, api.url, token=wrong)

    assert result.status == "failed"
    assert result.api_calls == 1
    assert "PEACHAI_API_TOKEN" in result.error_message
    assert "HTTP 401" in result.error_message
    assert warehouse.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0
    dump = "\n".join(warehouse.iterdump())
    assert wrong not in dump
    assert TOKEN not in dump


def test_api_down_fails_clearly_and_writes_no_data(warehouse):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = sync(warehouse, url)

    assert result.status == "failed"
    assert "Cannot reach the API" in result.error_message
    assert "after 3 attempts" in result.error_message
    assert result.api_calls == 3
    assert warehouse.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0
    assert warehouse.execute("SELECT count(*) FROM hourly_data").fetchone()[0] == 0
    assert history(warehouse, result.sync_id)["status"] == "failed"


def test_faults_are_retried_and_the_data_is_identical(warehouse, dataset, tmp_path):
    plan = FaultPlan({"429": 0.2, "500": 0.1, "malformed": 0.1}, seed=5)
    with SandboxServer(dataset, TOKEN, faults=plan) as flaky:
        result = sync(warehouse, flaky.url, options=SyncOptions(window_hours=24))
        injected = sum(flaky.faults_injected.values())

    assert result.status == "success"
    assert injected > 0
    assert result.api_retries == injected
    assert history(warehouse, result.sync_id)["api_retries"] == injected
    assert stored_hours(warehouse) == api_hours(
        dataset, FROZEN_HOUR - WEEK, FROZEN_HOUR
    )


def test_rate_limit_with_retry_after_waits_then_succeeds(warehouse, dataset):
    waits = []
    plan = FaultPlan({"429": 0.3}, seed=3)
    with SandboxServer(dataset, TOKEN, faults=plan, retry_after=1) as limited:
        result = sync(warehouse, limited.url, sleep=waits.append)
        limited_count = limited.faults_injected["429"]
    assert result.status == "success"
    assert limited_count > 0
    assert len(waits) == limited_count
    # Retry-After comes as seconds or as an HTTP date, which has whole-second precision.
    assert all(0 <= wait <= 2 for wait in waits)
    assert result.api_wait_seconds == pytest.approx(sum(waits), abs=0.01)


def test_malformed_pages_every_time_fail_the_sync(warehouse, dataset):
    with SandboxServer(dataset, TOKEN, faults=FaultPlan({"malformed": 1.0})) as broken:
        result = sync(warehouse, broken.url)
    assert result.status == "failed"
    assert "campaign page 1" in result.error_message
    assert warehouse.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_bad_values_reject_their_rows_and_the_rest_loads(warehouse, dataset):
    with SandboxServer(dataset, TOKEN, faults=FaultPlan({"badvalue": 1.0})) as bad:
        result = sync(warehouse, bad.url)

    assert result.status == "success"
    rejected = result.counts["records_rejected"]
    assert rejected > 0
    assert result.counts["records_inserted"] > 0
    reasons = [
        row[0]
        for row in warehouse.execute("SELECT reason FROM rejected_rows").fetchall()
    ]
    assert len(reasons) == rejected
    assert any(
        word in reason
        for reason in reasons
        for word in ("non-numeric", "negative", "fractional", "2^63-1")
    )


def test_renamed_campaign_keeps_its_hours_and_is_remapped(warehouse, api, dataset):
    sync(warehouse, api.url)
    target = next(
        c for c in dataset.campaigns if c["is_serving"] and not c["deleted_at"]
    )
    cid = target["id"]
    before = warehouse.execute(
        "SELECT count(*), sum(sessions) FROM hourly_data WHERE campaign_id = ?", (cid,)
    ).fetchone()
    target["name"] = "TJ_peach.ai_Banner_DE_broad_renamed"

    result = sync(warehouse, api.url)
    assert result.counts["campaigns_updated"] == 1
    row = warehouse.execute(
        "SELECT c.name, h.network, h.mapped_name FROM campaigns AS c "
        "JOIN campaign_hierarchy AS h ON h.campaign_id = c.id WHERE c.id = ?",
        (cid,),
    ).fetchone()
    assert tuple(row) == (
        "TJ_peach.ai_Banner_DE_broad_renamed",
        "TrafficJunky",
        "TJ_peach.ai_Banner_DE_broad_renamed",
    )
    after = warehouse.execute(
        "SELECT count(*), sum(sessions) FROM hourly_data WHERE campaign_id = ?", (cid,)
    ).fetchone()
    assert tuple(after) == tuple(before)
    assert before[0] > 0


def test_campaign_gone_from_the_listing_is_soft_deleted(warehouse, api, dataset):
    sync(warehouse, api.url)
    gone = dataset.campaigns.pop(0)
    hours = warehouse.execute(
        "SELECT count(*) FROM hourly_data WHERE campaign_id = ?", (gone["id"],)
    ).fetchone()[0]

    sync(warehouse, api.url)
    row = warehouse.execute(
        "SELECT is_deleted, deleted_at FROM campaigns WHERE id = ?", (gone["id"],)
    ).fetchone()
    assert row["is_deleted"] == 1 and row["deleted_at"]
    assert (
        warehouse.execute(
            "SELECT count(*) FROM hourly_data WHERE campaign_id = ?", (gone["id"],)
        ).fetchone()[0]
        == hours
    )


def test_dry_run_reports_and_writes_nothing(warehouse, api, dataset):
    result = sync(warehouse, api.url, options=SyncOptions(dry_run=True))
    assert result.dry_run and result.sync_id is None
    assert result.counts["records_inserted"] == len(
        api_hours(dataset, FROZEN_HOUR - WEEK, FROZEN_HOUR)
    )
    assert result.counts["campaigns_inserted"] == len(dataset.campaigns)
    for table in ("campaigns", "hourly_data", "sync_history", "campaign_hierarchy"):
        assert warehouse.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


class FailingWindows:
    """Wraps a client so chosen metrics windows fail as if the API kept erroring."""

    def __init__(self, client, failing_starts):
        self.client = client
        self.failing = set(failing_starts)

    def __getattr__(self, name):
        return getattr(self.client, name)

    def fetch_metrics(self, start_hour, end_hour, *rest):
        if start_hour in self.failing:
            self.client.stats.calls += 3
            raise TransientApiError(f"The API failed on hours {start_hour} (HTTP 503).")
        return self.client.fetch_metrics(start_hour, end_hour, *rest)


def test_failed_window_ends_partial_and_the_next_sync_fills_it(warehouse, api, dataset):
    options = SyncOptions(window_hours=24)
    bad_start = FROZEN_HOUR - WEEK + 48
    with make_client(api.url) as client:
        result = run_sync(
            warehouse, FailingWindows(client, {bad_start}), options, now=FROZEN_TS
        )

    assert result.status == "partial"
    assert [(w.start_hour, w.end_hour) for w in result.failed_windows] == [
        (bad_start, bad_start + 24)
    ]
    assert "1 metrics window(s) failed" in result.error_message
    assert stored_hours(warehouse, bad_start, bad_start + 24) == {}
    expected = api_hours(dataset, FROZEN_HOUR - WEEK, FROZEN_HOUR)
    assert len(stored_hours(warehouse)) == len(expected) - len(
        api_hours(dataset, bad_start, bad_start + 24)
    )
    ledger = warehouse.execute(
        "SELECT status, count(*) FROM sync_windows GROUP BY status"
    ).fetchall()
    assert dict(ledger) == {"done": 6, "failed": 1}

    assert plan_range(warehouse, options, FROZEN_HOUR)[0] == bad_start
    second = sync(warehouse, api.url, options=options)
    assert second.status == "success"
    assert stored_hours(warehouse) == expected


def test_stale_running_sync_is_marked_interrupted(warehouse, api):
    warehouse.execute(
        "INSERT INTO sync_history (sync_type, status, started_at, pid) "
        "VALUES ('incremental', 'running', '2025-08-01T00:00:00Z', 999999999)"
    )
    sync(warehouse, api.url)
    row = warehouse.execute("SELECT status FROM sync_history WHERE id = 1").fetchone()
    assert row[0] == "interrupted"


def test_overrides_survive_a_sync_that_renames_the_campaign(warehouse, api, dataset):
    from peachdw import rules
    from peachdw.db import transaction

    sync(warehouse, api.url)
    first, second = (c for c in dataset.campaigns[:2])
    with transaction(warehouse):
        rules.add_rule(
            warehouse,
            rules.Rule(
                pattern=str(first["id"]),
                match_type="campaign_id",
                tiers={"network": "Hand-picked"},
            ),
        )
        rules.map_campaigns(warehouse)
        warehouse.execute(
            "UPDATE campaign_hierarchy SET placement = 'Set by hand', is_manual = 1 "
            "WHERE campaign_id = ?",
            (second["id"],),
        )
    first["name"] = "TJ_peach.ai_Banner_DE_broad"
    second["name"] = "TJ_peach.ai_Banner_DE_broad"

    result = sync(warehouse, api.url)
    assert result.counts["campaigns_updated"] == 2
    tiers = dict(
        warehouse.execute(
            "SELECT campaign_id, network || '/' || placement FROM campaign_hierarchy "
            "WHERE campaign_id IN (?, ?)",
            (first["id"], second["id"]),
        ).fetchall()
    )
    assert tiers[first["id"]] == "Hand-picked/Banner"
    assert tiers[second["id"]].endswith("/Set by hand")
