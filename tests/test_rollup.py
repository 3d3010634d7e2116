"""The daily rollup: equal to the sums of the stored hours after every kind of write."""

from __future__ import annotations

import logging
import signal
from bisect import bisect_right
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sandbox_helpers import (
    FROZEN,
    FROZEN_HOUR,
    FROZEN_TS,
    TOKEN,
    make_client,
    stored_hours,
)
from test_crash import database, finish, start, wait_for

from peachdw import loader, rollup
from peachdw.db import transaction
from peachdw.hours import day_spans, days_to_hours
from peachdw.metrics import BUILTIN_METRICS
from peachdw.records import MetricsWindow
from peachdw.report import ReportPeriod, daily_totals
from peachdw.sandbox import Dataset, SandboxServer
from peachdw.sync import SyncOptions, plan_historical, run_sync

SESSIONS = BUILTIN_METRICS.index("sessions")
_ZEROS = (0,) * (len(BUILTIN_METRICS) - 1)
# Kolkata is UTC+05:30: its midnight falls inside an hour.
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]


@pytest.fixture
def dataset():
    return Dataset(seed=41, campaigns=30, now=FROZEN)


def sync(conn, url, options, *, plan=None, now=FROZEN_TS):
    with make_client(url) as client:
        result = run_sync(conn, client, options, plan=plan, now=now)
    assert result.status == "success", result.error_message
    return result


def rollup_rows(conn) -> dict[tuple[str, int], tuple]:
    return {
        (r[0], r[1]): tuple(r[2:])
        for r in conn.execute(
            f"SELECT day, campaign_id, {', '.join(BUILTIN_METRICS)} FROM daily_totals"
        )
    }


def sums_of_hours(conn, zone: ZoneInfo) -> dict[tuple[str, int], tuple]:
    """The expected rollup, worked out in Python from the stored hours."""
    hours = stored_hours(conn)
    if not hours:
        return {}
    first = min(hour for _, hour in hours)
    last = max(hour for _, hour in hours)
    spans = day_spans(
        datetime.fromtimestamp(first * 3600, zone).date() - timedelta(days=1),
        datetime.fromtimestamp(last * 3600, zone).date() + timedelta(days=1),
        zone,
    )
    starts = [start for _, start, _ in spans]
    sums: dict[tuple[str, int], list[int]] = defaultdict(
        lambda: [0] * len(BUILTIN_METRICS)
    )
    for (campaign_id, hour), values in hours.items():
        day = spans[bisect_right(starts, hour) - 1][0].isoformat()
        total = sums[day, campaign_id]
        for index, value in enumerate(values):
            total[index] += value
    return {key: tuple(total) for key, total in sums.items()}


def whole_period(conn, zone: ZoneInfo) -> ReportPeriod:
    days = [day for day, _ in rollup_rows(conn)]
    return ReportPeriod(
        date.fromisoformat(min(days)), date.fromisoformat(max(days)), zone
    )


def from_hours(conn, period: ReportPeriod) -> list[tuple]:
    """report.daily_totals as it reads when the rollup is not built."""
    conn.execute("BEGIN")
    try:
        conn.execute("UPDATE rollup_state SET zone = NULL")
        return [tuple(row) for row in daily_totals(conn, period)]
    finally:
        conn.execute("ROLLBACK")


def from_rollup(conn, period: ReportPeriod) -> list[tuple]:
    served = rollup.read_days(conn, period)
    assert served is not None, "the rollup should serve this period"
    return [tuple(row) for row in served]


def assert_in_step(conn, zone: ZoneInfo) -> None:
    """The rollup equals the hours' sums, and reports read the same from either."""
    assert rollup.built_zone(conn) == zone
    expected = sums_of_hours(conn, zone)
    assert rollup_rows(conn) == expected
    period = whole_period(conn, zone)
    served = from_rollup(conn, period)
    assert served == from_hours(conn, period)
    assert len(served) == len(expected)


class EditedApi:
    """Changes what the sandbox API answers for chosen campaigns and hours."""

    def __init__(self, dataset: Dataset):
        self.original = dataset.metrics
        self.sessions_added: dict[tuple[int, int], int] = {}
        self.dropped: set[tuple[int, int]] = set()
        dataset.metrics = self.metrics

    def metrics(self, start, end, campaign_id=None):
        rows = []
        for row in self.original(start, end, campaign_id):
            key = (row["campaign_id"], row["unix_hour"])
            if key in self.dropped:
                continue
            if key in self.sessions_added:
                row = {**row, "sessions": row["sessions"] + self.sessions_added[key]}
            rows.append(row)
        return rows


@pytest.mark.parametrize("zone_name", ZONES)
def test_rollup_equals_the_hours_after_every_kind_of_write(
    warehouse, api, dataset, zone_name
):
    zone = ZoneInfo(zone_name)
    # Windows of 48 hours, so local days straddle windows in every zone.
    options = SyncOptions(zone=zone, window_hours=48)

    # Insert: the first sync reads the last seven days.
    sync(warehouse, api.url, options)
    assert_in_step(warehouse, zone)
    before = rollup_rows(warehouse)

    # Update: late events arrive for the last hours.
    later = FROZEN + timedelta(hours=3)
    dataset.set_now(later)
    late = sync(warehouse, api.url, options, now=later.timestamp())
    assert late.counts["records_updated"] > 0
    assert_in_step(warehouse, zone)

    # Restated, zeroed and vanished: on one local day three days back, campaign A gets
    # 5 more sessions every hour, B loses one hour and C loses the whole day.
    day = (FROZEN - timedelta(days=3)).astimezone(zone).date()
    [(_, lo, hi)] = day_spans(day, day, zone)
    on_day = defaultdict(list)
    for campaign_id, hour in stored_hours(warehouse, lo, hi):
        on_day[campaign_id].append(hour)
    a, b, c = sorted(on_day, key=lambda cid: -len(on_day[cid]))[:3]
    edits = EditedApi(dataset)
    edits.sessions_added = {(a, hour): 5 for hour in on_day[a]}
    lost_hour = on_day[b][0]
    lost_sessions = stored_hours(warehouse, lost_hour, lost_hour + 1)[b, lost_hour]
    edits.dropped = {(b, lost_hour)} | {(c, hour) for hour in on_day[c]}
    key_a, key_b, key_c = ((day.isoformat(), cid) for cid in (a, b, c))
    before = rollup_rows(warehouse)

    full = sync(
        warehouse,
        api.url,
        SyncOptions(zone=zone, window_hours=48, full=True, full_start_hour=lo - 48),
        now=later.timestamp(),
    )
    assert full.counts["records_zeroed"] == 1 + len(on_day[c])
    assert full.counts["records_restated"] == len(on_day[a]) + 1 + len(on_day[c])
    assert_in_step(warehouse, zone)
    after = rollup_rows(warehouse)
    assert after[key_a][SESSIONS] == before[key_a][SESSIONS] + 5 * len(on_day[a])
    assert after[key_b][SESSIONS] == before[key_b][SESSIONS] - lost_sessions[SESSIONS]
    assert key_c not in after

    # A one-campaign backfill of that day after the API took the restatement back.
    edits.sessions_added = {}
    edits.dropped = set()
    span = days_to_hours(day, day, zone)
    sync(
        warehouse,
        api.url,
        options,
        plan=plan_historical(warehouse, *span, window_hours=48, campaign_id=a),
        now=later.timestamp(),
    )
    assert_in_step(warehouse, zone)
    assert rollup_rows(warehouse)[key_a] == before[key_a]
    # The other campaigns are not in that backfill's scope and keep their days.
    assert key_c not in rollup_rows(warehouse)

    # What the writes kept up is what a build from scratch gives.
    kept = rollup_rows(warehouse)
    with transaction(warehouse):
        rollup.build(warehouse, zone)
    assert rollup_rows(warehouse) == kept


@pytest.mark.parametrize(
    ("zone_name", "day", "first_utc", "hours"),
    [
        ("Europe/Berlin", date(2025, 3, 30), datetime(2025, 3, 29, 23, tzinfo=UTC), 23),
        (
            "Europe/Berlin",
            date(2025, 10, 26),
            datetime(2025, 10, 25, 22, tzinfo=UTC),
            25,
        ),
        ("America/New_York", date(2025, 3, 9), datetime(2025, 3, 9, 5, tzinfo=UTC), 23),
        (
            "America/New_York",
            date(2025, 11, 2),
            datetime(2025, 11, 2, 4, tzinfo=UTC),
            25,
        ),
    ],
    ids=["berlin-spring", "berlin-autumn", "new-york-spring", "new-york-autumn"],
)
def test_daylight_saving_days_sum_their_23_or_25_hours(
    warehouse, zone_name, day, first_utc, hours
):
    zone = ZoneInfo(zone_name)
    dataset = Dataset(seed=42, campaigns=20, now=datetime(2025, 12, 1, tzinfo=UTC))
    first_hour = int(first_utc.timestamp()) // 3600
    with SandboxServer(dataset, TOKEN) as api:
        # UTC-aligned 24-hour windows: the local day is written by two windows.
        plan = plan_historical(
            warehouse, first_hour - 48, first_hour + hours + 48, window_hours=24
        )
        sync(warehouse, api.url, SyncOptions(zone=zone, window_hours=24), plan=plan)

    # The day's hours, counted from the UTC instant its local midnight falls on.
    held = stored_hours(warehouse, first_hour, first_hour + hours)
    expected = defaultdict(int)
    for (campaign_id, _), values in held.items():
        expected[campaign_id] += values[SESSIONS]
    days = rollup_rows(warehouse)
    served = {
        cid: values[SESSIONS] for (d, cid), values in days.items() if d == str(day)
    }
    assert served == dict(expected) and len(served) >= 3
    # The hour just before and just after belong to the neighbouring days.
    edges = stored_hours(warehouse, first_hour - 1, first_hour) | stored_hours(
        warehouse, first_hour + hours, first_hour + hours + 1
    )
    assert any(values[SESSIONS] for values in edges.values())
    assert_in_step(warehouse, zone)


def test_changing_the_zone_rebuilds_the_rollup_on_the_next_sync(
    warehouse, api, dataset, caplog
):
    utc, berlin = ZoneInfo("UTC"), ZoneInfo("Europe/Berlin")
    sync(warehouse, api.url, SyncOptions(zone=utc))
    assert_in_step(warehouse, utc)
    utc_days = rollup_rows(warehouse)

    with caplog.at_level(logging.INFO, logger="peachdw.rollup"):
        sync(warehouse, api.url, SyncOptions(zone=berlin))
    assert "Daily rollup rebuilt for zone Europe/Berlin (was UTC)" in caplog.text
    assert_in_step(warehouse, berlin)
    assert rollup_rows(warehouse) != utc_days

    # Reports in the old zone are still right: they sum the hours until it is back.
    period = whole_period(warehouse, utc)
    assert rollup.read_days(warehouse, period) is None
    by_day = {(r[0], r[1]): tuple(r[2:]) for r in daily_totals(warehouse, period)}
    assert by_day == {
        key: values
        for key, values in sums_of_hours(warehouse, utc).items()
        if period.first.isoformat() <= key[0] <= period.last.isoformat()
    }

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="peachdw.rollup"):
        sync(warehouse, api.url, SyncOptions(zone=berlin))
    assert "rebuilt" not in caplog.text


def test_a_window_whose_write_fails_leaves_no_trace_in_hours_or_rollup(
    warehouse, api, dataset, monkeypatch
):
    zone = ZoneInfo("Europe/Berlin")
    sync(warehouse, api.url, SyncOptions(zone=zone))
    later = FROZEN + timedelta(hours=3)
    dataset.set_now(later)
    hours, days = stored_hours(warehouse), rollup_rows(warehouse)

    # The rollup takes the window and then the ledger write fails, in the same
    # transaction: neither the hours nor the days may keep any of it.
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("peachdw.sync._record_window", broken)
    with make_client(api.url) as client, pytest.raises(RuntimeError, match="disk"):
        run_sync(warehouse, client, SyncOptions(zone=zone), now=later.timestamp())
    assert stored_hours(warehouse) == hours
    assert rollup_rows(warehouse) == days
    assert_in_step(warehouse, zone)


def test_killed_in_a_window_write_then_resumed_keeps_rollup_and_hours_in_step(tmp_path):
    zone = ZoneInfo("America/New_York")
    days = ["--start-date", "2025-07-20", "--end-date", "2025-07-29"]
    timezone = {"PEACHDW_REPORTING_TIMEZONE": zone.key}
    with SandboxServer(Dataset(seed=36, campaigns=30, now=FROZEN), TOKEN) as api:
        args = ["sync-historical", *days, "--api-url", api.url]
        marker = tmp_path / "held"
        process = start(
            args,
            tmp_path,
            PEACHDW_TEST_HOLD="window-write:4",
            PEACHDW_TEST_HOLD_FILE=str(marker),
            **timezone,
        )
        wait_for(marker.exists)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

        conn = database(tmp_path)
        conn.row_factory = None
        done = conn.execute("SELECT count(*) FROM sync_windows WHERE status = 'done'")
        assert done.fetchone()[0] == 3
        assert len(rollup_rows(conn)) > 0 and rollup_rows(conn) == sums_of_hours(
            conn, zone
        )

        code, _, err = finish(start([*args, "--resume"], tmp_path, **timezone))
        assert code == 0, err

    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert rollup.built_zone(conn) == zone
    assert rollup_rows(conn) == sums_of_hours(conn, zone)
    first, last = days_to_hours(date(2025, 7, 20), date(2025, 7, 29), zone)
    assert {hour for _, hour in stored_hours(conn)} <= set(range(first, last))
    assert {day for day, _ in rollup_rows(conn)} == {
        (date(2025, 7, 20) + timedelta(days=n)).isoformat() for n in range(10)
    }


def test_monthly_totals_from_the_rollup_equal_those_from_the_hours(warehouse, api):
    utc = ZoneInfo("UTC")
    span = days_to_hours(date(2025, 7, 20), date(2025, 8, 6))
    sync(
        warehouse,
        api.url,
        SyncOptions(zone=utc),
        plan=plan_historical(warehouse, *span),
    )
    metrics = ", ".join(f"sum({m})" for m in BUILTIN_METRICS)
    from_days = warehouse.execute(
        f"SELECT campaign_id, substr(day, 1, 7) AS month, {metrics} "
        "FROM daily_totals GROUP BY campaign_id, month"
    ).fetchall()
    from_hours_ = warehouse.execute(
        "SELECT c.id, strftime('%Y-%m', d.unix_hour * 3600, 'unixepoch') AS month, "
        f"{metrics} FROM campaigns AS c CROSS JOIN hourly_data AS d "
        "ON d.campaign_id = c.id GROUP BY c.id, month"
    ).fetchall()
    assert [tuple(r) for r in from_days] == [tuple(r) for r in from_hours_]
    assert {r[1] for r in from_days} == {"2025-07", "2025-08"}
    july = sum(r[2] for r in from_days if r[1] == "2025-07")
    assert july == sum(
        values[SESSIONS]
        for (_, hour), values in stored_hours(warehouse).items()
        if hour < days_to_hours(date(2025, 8, 1), date(2025, 8, 1))[0]
    )


def test_read_days_serves_only_the_zone_the_rollup_is_built_in(warehouse):
    warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'c')")
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO hourly_data (campaign_id, unix_hour, sessions) VALUES "
            "(1, ?, 3), (1, ?, 4)",
            (FROZEN_HOUR - 1, FROZEN_HOUR),
        )
    august = ReportPeriod(date(2025, 8, 7), date(2025, 8, 8), ZoneInfo("UTC"))
    assert rollup.read_days(warehouse, august) is None  # not built

    with transaction(warehouse):
        assert rollup.build(warehouse, ZoneInfo("UTC")) == 2
    assert from_rollup(warehouse, august) == [
        ("2025-08-07", 1, 3, *(0,) * (len(BUILTIN_METRICS) - 1)),
        ("2025-08-08", 1, 4, *(0,) * (len(BUILTIN_METRICS) - 1)),
    ]
    tokyo = ReportPeriod(date(2025, 8, 7), date(2025, 8, 8), ZoneInfo("Asia/Tokyo"))
    assert rollup.read_days(warehouse, tokyo) is None
    # Tokyo is nine hours ahead: both hours fall on its 8 August.
    assert [tuple(r)[:3] for r in daily_totals(warehouse, tokyo)] == [
        ("2025-08-08", 1, 7)
    ]


def test_the_hour_that_holds_a_midnight_off_the_hour_starts_that_day(warehouse):
    """In Kolkata (UTC+05:30) 2025-08-02 starts at 18:30 UTC on 1 August: the hour from
    18:00 UTC belongs to 2 August, as day_spans cuts it, built or kept up."""
    kolkata = ZoneInfo("Asia/Kolkata")
    hour = int(datetime(2025, 8, 1, 18, tzinfo=UTC).timestamp()) // 3600
    warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'c')")
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO hourly_data (campaign_id, unix_hour, sessions) VALUES (1, ?, 3)",
            (hour,),
        )
        rollup.build(warehouse, kolkata)
    assert list(rollup_rows(warehouse)) == [("2025-08-02", 1)]

    window = MetricsWindow(hour - 1, hour + 1, None, rows=[(1, hour - 1, 2, *_ZEROS)])
    with transaction(warehouse):
        plan = loader.plan_hourly(warehouse, window, {1})
        loader.apply_hourly(warehouse, plan, None)
    days = {key: values[SESSIONS] for key, values in rollup_rows(warehouse).items()}
    assert days == {("2025-08-01", 1): 2}
    assert_in_step(warehouse, kolkata)


def test_an_unchanged_window_writes_nothing_to_the_rollup(warehouse, api):
    sync(warehouse, api.url, SyncOptions())
    changes = warehouse.total_changes
    with make_client(api.url) as client:
        window = client.fetch_metrics(FROZEN_HOUR - 48, FROZEN_HOUR)
    with transaction(warehouse):
        plan = loader.plan_hourly(
            warehouse, window, loader.known_campaign_ids(warehouse)
        )
        loader.apply_hourly(warehouse, plan, None)
    assert plan.unchanged > 0
    assert warehouse.total_changes == changes


def test_rollup_reads_seek_its_key(warehouse):
    warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'c')")
    statements: list[str] = []
    warehouse.set_trace_callback(statements.append)
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 2), ZoneInfo("UTC"))
    rollup.read_days(warehouse, period)
    rollup._stored_days(warehouse, [(1, "2025-08-01")], BUILTIN_METRICS)
    warehouse.set_trace_callback(None)

    reads = [s for s in statements if "daily_totals" in s]
    assert len(reads) == 2
    for sql in reads:
        plan = " | ".join(
            row[3] for row in warehouse.execute(f"EXPLAIN QUERY PLAN {sql}")
        )
        assert "SEARCH r USING PRIMARY KEY (campaign_id=? AND day>? AND day<?)" in plan
        assert "SCAN r" not in plan
