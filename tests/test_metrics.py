"""Adding a metric: a column kept by every layer, and ratios derived in a view."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime

import pytest

from peachdw import db, loader, metrics, quality, report
from peachdw.errors import ConfigError, MetricNameError
from peachdw.records import MetricsWindow, parse_metrics
from peachdw.report import RATES, rate
from peachdw.rules import TIERS

EXTRA = "video_views"
WITH_EXTRA = (*metrics.BUILTIN_METRICS, EXTRA)


def column(conn, table, name):
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")].count(name)


# -- names ----------------------------------------------------------------------------


def test_reserved_names_hold_every_report_column():
    for columns in (
        report.summary_columns,
        report.daily_columns,
        report.hierarchy_columns,
    ):
        header, _ = columns(())
        assert set(header) <= metrics.RESERVED_NAMES
    assert set(TIERS) <= metrics.RESERVED_NAMES


# -- the schema -----------------------------------------------------------------------


def test_version_6_file_with_data_upgrades_and_keeps_every_row(db_path, monkeypatch):
    shipped = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: shipped[:6])
    conn = db.connect(db_path)
    db.migrate(conn)
    conn.execute("INSERT INTO campaigns (id, name) VALUES (1, 'c'), (2, 'd')")
    conn.execute(
        "INSERT INTO hourly_data (campaign_id, unix_hour, sessions, registrations, "
        "media) VALUES (1, 487245, 4, 1, 9), (1, 487246, 5, 0, 0), (2, 487248, 9, 3, 1)"
    )
    conn.execute(
        "INSERT INTO daily_totals (campaign_id, day, sessions, registrations, media) "
        "VALUES (1, '2025-08-01', 9, 1, 9), (2, '2025-08-02', 9, 3, 1)"
    )
    conn.execute(
        "INSERT INTO schema_drift (endpoint, field, first_seen_at, last_seen_at, "
        "occurrences) VALUES ('/admin/metrics', 'video_views', 'a', 'b', 3)"
    )
    hours = conn.execute("SELECT * FROM hourly_data ORDER BY 1, 2").fetchall()
    days = conn.execute("SELECT * FROM daily_totals ORDER BY 1, 2").fetchall()
    conn.close()

    monkeypatch.setattr(db, "migrations", lambda: shipped)
    conn = db.connect(db_path)
    assert db.migrate(conn) == [m.version for m in shipped[6:]]
    assert metrics.of(conn) == metrics.BUILTIN_METRICS
    assert conn.execute("SELECT adopted_at FROM schema_drift").fetchone()[0] is None

    added = metrics.add(conn, EXTRA)
    assert (added.hourly_rows, added.daily_rows) == (3, 2)
    assert added.seen == metrics.FieldSeen("a", "b", 3)
    assert metrics.of(conn) == WITH_EXTRA
    after = conn.execute("SELECT * FROM hourly_data ORDER BY 1, 2").fetchall()
    assert [(*row, 0) for row in hours] == [tuple(row) for row in after]
    after = conn.execute("SELECT * FROM daily_totals ORDER BY 1, 2").fetchall()
    assert [(*row, 0) for row in days] == [tuple(row) for row in after]
    assert conn.execute("SELECT adopted_at FROM schema_drift").fetchone()[0]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # The column keeps the rule every count keeps.
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(f"UPDATE hourly_data SET {EXTRA} = -1")
    conn.close()


def test_a_dry_run_writes_nothing(warehouse):
    planned = metrics.add(warehouse, EXTRA, dry_run=True)
    assert planned.statements == metrics.add_statements(EXTRA)
    assert metrics.of(warehouse) == metrics.BUILTIN_METRICS
    assert column(warehouse, "hourly_data", EXTRA) == 0
    with pytest.raises(MetricNameError, match="built-in"):
        metrics.add(warehouse, "media", dry_run=True)


def test_rates_view_derives_the_exports_rates_from_the_daily_counts(warehouse):
    with db.transaction(warehouse):
        warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'a'), (2, 'b')")
        warehouse.execute(
            "INSERT INTO daily_totals (campaign_id, day, sessions, registrations, "
            "converted_users, messages, total_user_chats) VALUES "
            "(1, '2025-08-01', 300, 7, 2, 50, 3), (2, '2025-08-01', 0, 0, 0, 4, 0)"
        )
    rows = {
        row["campaign_id"]: dict(row)
        for row in warehouse.execute("SELECT * FROM campaign_day_rates")
    }
    assert rows[1]["registrations_per_session"] == 7 / 300
    assert rows[1]["converted_per_registration"] == 2 / 7
    assert rows[1]["messages_per_user_chat"] == 50 / 3
    assert rows[2] == {
        "campaign_id": 2,
        "day": "2025-08-01",
        "registrations_per_session": None,
        "converted_per_registration": None,
        "messages_per_user_chat": None,
    }
    # The exports show the same rates, rounded.
    for name, numerator, denominator, _ in RATES:
        values = warehouse.execute(
            f"SELECT {numerator}, {denominator} FROM daily_totals WHERE campaign_id = 1"
        ).fetchone()
        assert rate(*values) == round(rows[1][name], report.RATE_PLACES)
    # Ratios are never stored: no table has a rate column.
    tables = [row[0] for row in warehouse.execute("SELECT name FROM sqlite_master")]
    for table in tables:
        names = {row[1] for row in warehouse.execute(f"PRAGMA table_info({table})")}
        if table != "campaign_day_rates":
            assert not names & {name for name, *_ in RATES}, table


# -- validation and load --------------------------------------------------------------


def test_an_added_metric_is_validated_like_every_count():
    rows = [
        {"campaign_id": 1, "unix_hour": 10, "sessions": 5, EXTRA: 3},
        {"campaign_id": 1, "unix_hour": 11, "sessions": 5, EXTRA: "4"},
        {"campaign_id": 2, "unix_hour": 10, "sessions": 5, EXTRA: -1},
        {"campaign_id": 2, "unix_hour": 11, "sessions": 5},
    ]
    window = parse_metrics({"data": rows}, 10, 12, metrics=WITH_EXTRA)
    assert window.metrics == WITH_EXTRA
    assert [(row[0], row[1], row[-1]) for row in window.rows] == [
        (1, 10, 3),
        (1, 11, 4),
        (2, 11, 0),
    ]
    assert [(r.campaign_id, r.field, r.reason) for r in window.rejected] == [
        (2, EXTRA, f"{EXTRA}: negative count -1")
    ]
    assert not window.unknown_fields

    # Clean rows take the fast path with the same result.
    clean = parse_metrics({"data": rows[:1]}, 10, 12, metrics=WITH_EXTRA)
    assert clean.rows == [window.rows[0]]
    # Without the metric, the field is drift.
    drift = parse_metrics({"data": rows[:1]}, 10, 12)
    assert drift.unknown_fields == {EXTRA: 1}


def test_the_loader_and_the_rollup_write_an_added_metric(warehouse):
    from zoneinfo import ZoneInfo

    from peachdw import rollup

    metrics.add(warehouse, EXTRA)
    zone = ZoneInfo("UTC")
    hour = int(datetime(2025, 8, 1, tzinfo=UTC).timestamp()) // 3600
    with db.transaction(warehouse):
        warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'a')")
        rollup.ensure(warehouse, zone)

    def load(*values_of_extra):
        rows = [
            (1, hour + offset, 2, *(0,) * 13, value)
            for offset, value in enumerate(values_of_extra)
        ]
        window = MetricsWindow(hour, hour + 24, None, rows=rows, metrics=WITH_EXTRA)
        with db.transaction(warehouse):
            plan = loader.plan_hourly(warehouse, window, {1})
            loader.apply_hourly(warehouse, plan, None)
        return plan

    assert load(5, 0).inserted == 2
    plan = load(7, 0)  # only the added metric changed: an update
    assert (plan.updated, plan.unchanged) == (1, 1)
    stored = warehouse.execute(f"SELECT sum({EXTRA}) FROM hourly_data").fetchone()[0]
    day = warehouse.execute(
        f"SELECT sessions, {EXTRA} FROM daily_totals WHERE day = ?",
        (date(2025, 8, 1).isoformat(),),
    ).fetchone()
    assert (stored, tuple(day)) == (7, (4, 7))


def test_plausibility_rules_may_name_an_added_metric(warehouse):
    rule = f"{EXTRA} <= sessions"
    with pytest.raises(ConfigError, match=f"names {EXTRA}, not a metric"):
        quality.parse_rule(rule, metrics.of(warehouse))
    metrics.add(warehouse, EXTRA)
    parsed = quality.parse_rule(rule, metrics.of(warehouse))
    with db.transaction(warehouse):
        warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'a')")
        warehouse.execute(
            f"INSERT INTO hourly_data (campaign_id, unix_hour, sessions, {EXTRA}) "
            "VALUES (1, 10, 5, 3), (1, 11, 5, 6)"
        )
    counts, found = quality.violations(warehouse, [parsed], 0, 100)
    assert counts == {rule: 1}
    assert [(v.unix_hour, v.values) for v in found] == [(11, {EXTRA: 6, "sessions": 5})]
