"""Adding a metric: a field the API sends shows as drift, `metrics add` makes it a column
that the next sync fills and every export shows; ratios derived in a view."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections import defaultdict
from datetime import UTC, date, datetime

import openpyxl
import pytest
from click.testing import CliRunner
from sandbox_helpers import TOKEN

from peachdw import db, loader, metrics, quality, report
from peachdw.cli import cli
from peachdw.errors import ConfigError, MetricNameError
from peachdw.hours import current_hour
from peachdw.lock import SyncLock
from peachdw.records import MetricsWindow, parse_metrics
from peachdw.report import RATES, rate
from peachdw.rules import TIERS
from peachdw.sandbox import Dataset, Quirks, SandboxServer

EXTRA = "video_views"
QUIRKS = Quirks(extra_field=EXTRA, seed=4)
WITH_EXTRA = (*metrics.BUILTIN_METRICS, EXTRA)


def peachdw(folder, server, *args, env=None):
    env = {
        "PEACHAI_API_TOKEN": TOKEN,
        "PEACHDW_API_BASE_URL": server.url if server else "http://127.0.0.1:9",
        "PEACHDW_DATABASE_PATH": str(folder / "warehouse.db"),
        **(env or {}),
    }
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def world(tmp_path):
    """A sandbox frozen an hour ahead of the wall clock (so the sync's hours all exist
    and never change under the test) that sends `video_views` on every metrics row."""
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    dataset = Dataset(seed=8, campaigns=20, now=now)
    with SandboxServer(dataset, TOKEN, quirks=QUIRKS) as server:
        yield dataset, server, tmp_path


def column(conn, table, name):
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")].count(name)


def read_csv(path):
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


# -- end to end -----------------------------------------------------------------------


def test_unknown_field_becomes_a_metric_the_sync_fills_and_the_exports_show(world):
    dataset, server, folder = world
    path = folder / "warehouse.db"
    assert peachdw(folder, server, "sync").exit_code == 0

    # The field shows as drift, in status and in the metrics list.
    state = json.loads(peachdw(folder, server, "status", "--detailed", "--json").output)
    assert [d["field"] for d in state["schema_drift"]] == [EXTRA]
    listed = json.loads(peachdw(folder, server, "metrics", "list", "--json").output)
    assert [f["name"] for f in listed["unknown_fields"]] == [EXTRA]
    assert [m["name"] for m in listed["metrics"]] == list(metrics.BUILTIN_METRICS)

    conn = db.connect(path)
    before = conn.execute("SELECT * FROM hourly_data ORDER BY 1, 2").fetchall()
    days_before = conn.execute("SELECT * FROM daily_totals ORDER BY 1, 2").fetchall()
    assert before and days_before

    dry = peachdw(folder, server, "metrics", "add", EXTRA, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"ALTER TABLE hourly_data ADD COLUMN {EXTRA} INTEGER" in dry.output
    assert "Nothing was written" in dry.output
    assert column(conn, "hourly_data", EXTRA) == 0

    added = peachdw(folder, server, "metrics", "add", EXTRA)
    assert added.exit_code == 0, added.output
    assert f"{len(before):,} rows kept" in added.output

    # Every stored row is kept with its values; the new column reads 0.
    after = conn.execute("SELECT * FROM hourly_data ORDER BY 1, 2").fetchall()
    assert [tuple(row)[:-1] for row in after] == [tuple(row) for row in before]
    assert {row[EXTRA] for row in after} == {0}
    days_after = conn.execute("SELECT * FROM daily_totals ORDER BY 1, 2").fetchall()
    assert [tuple(row)[:-1] for row in days_after] == [tuple(r) for r in days_before]
    assert metrics.of(conn) == WITH_EXTRA

    # The command says how to read the stored hours again; doing so fills the column.
    first, last = re.search(
        r"sync-historical --start-date (\S+) --end-date (\S+)", added.output
    ).groups()
    refilled = peachdw(
        folder, server, "sync-historical", "--start-date", first, "--end-date", last
    )
    assert refilled.exit_code == 0, refilled.output
    updated = conn.execute(
        "SELECT records_updated FROM sync_history ORDER BY id DESC"
    ).fetchone()[0]
    assert updated > 0  # the hours that carry the field changed

    stored = {
        (row[0], row[1]): row[2]
        for row in conn.execute(
            f"SELECT campaign_id, unix_hour, {EXTRA} FROM hourly_data"
        )
    }
    hours = [hour for _, hour in stored]
    served = QUIRKS.changes(dataset, min(hours), max(hours) + 1).extra
    assert stored == {key: served[key] for key in stored}
    assert {key for key, value in served.items() if value} <= set(stored)
    total = sum(stored.values())
    assert total > 0

    # The daily rollup sums it, day by day.
    by_day: dict[tuple[int, str], int] = defaultdict(int)
    for (campaign_id, hour), value in stored.items():
        day = datetime.fromtimestamp(hour * 3600, UTC).date().isoformat()
        by_day[campaign_id, day] += value
    rolled = {
        (row[0], row[1]): row[2]
        for row in conn.execute(f"SELECT campaign_id, day, {EXTRA} FROM daily_totals")
    }
    assert rolled == dict(by_day)

    # The three CSV tabs show it after the built-ins, with the stored totals.
    exported = peachdw(
        folder, server, "export", "--format", "csv", "--output", str(folder / "r.csv")
    )
    assert exported.exit_code == 0, exported.output
    summary = read_csv(folder / "r_summary.csv")
    header = list(summary[0])
    assert header.index(EXTRA) == header.index("media") + 1
    assert header.index(EXTRA) < header.index(RATES[0][0])
    assert sum(int(row[EXTRA]) for row in summary) == total
    daily = read_csv(folder / "r_daily.csv")
    assert list(daily[0])[-1] == EXTRA
    assert sum(int(row[EXTRA]) for row in daily) == total
    hierarchy = read_csv(folder / "r_hierarchy.csv")
    assert list(hierarchy[0])[-1] == EXTRA
    assert hierarchy[-1]["level"] == "Total"
    assert int(hierarchy[-1][EXTRA]) == total

    # And so does the Excel workbook.
    workbook_path = folder / "r.xlsx"
    exported = peachdw(
        folder, server, "export", "--format", "xlsx", "--output", str(workbook_path)
    )
    assert exported.exit_code == 0, exported.output
    workbook = openpyxl.load_workbook(workbook_path, read_only=True)
    for name in ("Summary", "Daily", "Hierarchy"):
        rows = list(workbook[name].iter_rows(values_only=True))
        at = rows[0].index(EXTRA)
        cells = [row[at] for row in rows[1:]]
        if name == "Hierarchy":
            cells = cells[-1:]  # the Total row
        assert sum(cells) == total, name
    workbook.close()

    # It is no longer drift, and debug-campaign shows it.
    state = json.loads(peachdw(folder, server, "status", "--detailed", "--json").output)
    assert state["schema_drift"] == []
    listed = json.loads(peachdw(folder, server, "metrics", "list", "--json").output)
    assert listed["unknown_fields"] == []
    assert listed["metrics"][-1]["name"] == EXTRA
    assert listed["metrics"][-1]["kind"] == "added"
    assert listed["metrics"][-1]["first_seen_at"] is not None
    campaign_id, hour = max(stored, key=lambda key: (key[1], stored[key]))
    debug = json.loads(
        peachdw(folder, server, "debug-campaign", str(campaign_id), "--json").output
    )
    shown = {row["unix_hour"]: row[EXTRA] for row in debug["last_48_hours"]}
    assert shown[hour] == stored[campaign_id, hour]
    assert EXTRA in peachdw(folder, server, "debug-campaign", str(campaign_id)).output

    # The next sync records no drift for it.
    assert peachdw(folder, server, "sync").exit_code == 0
    drift = conn.execute("SELECT field, adopted_at FROM schema_drift").fetchall()
    assert [(row[0], row[1] is not None) for row in drift] == [(EXTRA, True)]
    conn.close()


def test_add_counts_the_rows_read_with_the_field_re_reads_included(world):
    _, server, folder = world
    # The second sync reads its look-back again: the same hours, seen twice.
    assert peachdw(folder, server, "sync").exit_code == 0
    assert peachdw(folder, server, "sync").exit_code == 0
    conn = db.connect(folder / "warehouse.db")
    read, stored = conn.execute(
        "SELECT (SELECT sum(records_processed) FROM sync_history), "
        "(SELECT count(*) FROM hourly_data)"
    ).fetchone()
    conn.close()
    assert read > stored

    added = peachdw(folder, server, "metrics", "add", EXTRA)
    assert added.exit_code == 0, added.output
    assert f"in {read:,} rows read (an hour read again counts again)." in " ".join(
        added.output.split()
    )


def test_metrics_list_shows_built_in_and_added_metrics(tmp_path):
    assert peachdw(tmp_path, None, "init").exit_code == 0
    assert peachdw(tmp_path, None, "metrics", "add", EXTRA, "--force").exit_code == 0
    shown = peachdw(tmp_path, None, "metrics", "list")
    assert shown.exit_code == 0, shown.output
    assert "sessions" in shown.output and "built-in" in shown.output
    line = next(line for line in shown.output.splitlines() if EXTRA in line)
    assert "added" in line
    # Never seen from the API: the command says so.
    assert "The API sends no metrics field" in shown.output


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("Video_Views", "is not a lowercase identifier", id="uppercase"),
        pytest.param("9lives", "is not a lowercase identifier", id="digit-first"),
        pytest.param("video-views", "is not a lowercase identifier", id="dash"),
        pytest.param("x" * 64, "is not a lowercase identifier", id="too-long"),
        pytest.param("sessions", "is a built-in metric", id="built-in"),
        pytest.param("campaign_id", "another column", id="key"),
        pytest.param("status", "another column", id="report-column"),
        pytest.param("select", "keyword", id="sql-keyword"),
        pytest.param("class", "keyword", id="python-keyword"),
        pytest.param("true", "keyword", id="boolean"),
    ],
)
def test_bad_names_are_refused_in_one_line(tmp_path, name, reason):
    assert peachdw(tmp_path, None, "init").exit_code == 0
    result = peachdw(tmp_path, None, "metrics", "add", name)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: Cannot add the metric {name!r}: it ")
    assert reason in lines[0]
    conn = db.connect(tmp_path / "warehouse.db")
    assert metrics.of(conn) == metrics.BUILTIN_METRICS
    conn.close()


@pytest.mark.parametrize("dry_run", [False, True], ids=["add", "dry-run"])
def test_a_name_the_api_never_sent_is_refused_unless_forced(world, dry_run):
    _, server, folder = world
    assert peachdw(folder, server, "sync").exit_code == 0
    typo = "video_veiws"
    flags = ["--dry-run"] if dry_run else []

    refused = peachdw(folder, server, "metrics", "add", typo, *flags)
    assert refused.exit_code == 2
    assert refused.output.splitlines() == [
        f"Error: Cannot add the metric {typo!r}: the API was never seen sending it on "
        "/admin/metrics (`peachdw metrics list` shows the fields it sends), and a metric "
        "cannot be removed; check the spelling, or add it anyway with --force."
    ]
    conn = db.connect(folder / "warehouse.db")
    assert metrics.of(conn) == metrics.BUILTIN_METRICS
    assert column(conn, "hourly_data", typo) == 0

    # The field the API does send is added as before; --force adds the other one.
    seen = peachdw(folder, server, "metrics", "add", EXTRA, *flags)
    assert seen.exit_code == 0, seen.output
    forced = peachdw(folder, server, "metrics", "add", typo, "--force", *flags)
    assert forced.exit_code == 0, forced.output
    assert f"The API has not been seen sending {typo}" in forced.output
    added = () if dry_run else (EXTRA, typo)
    assert metrics.of(conn) == (*metrics.BUILTIN_METRICS, *added)
    conn.close()


def test_add_needs_a_warehouse(tmp_path):
    result = peachdw(tmp_path, None, "metrics", "add", EXTRA)
    assert result.exit_code == 1
    assert "Run `peachdw init` first" in result.output
    assert not (tmp_path / "warehouse.db").exists()


def test_a_metric_is_added_once(tmp_path):
    assert peachdw(tmp_path, None, "init").exit_code == 0
    assert peachdw(tmp_path, None, "metrics", "add", EXTRA, "--force").exit_code == 0
    again = peachdw(tmp_path, None, "metrics", "add", EXTRA, "--force")
    assert again.exit_code == 2
    assert "was added already" in again.output


def test_add_is_refused_while_a_sync_runs(tmp_path):
    assert peachdw(tmp_path, None, "init").exit_code == 0
    with SyncLock(tmp_path / "warehouse.db", "peachdw sync"):
        result = peachdw(tmp_path, None, "metrics", "add", EXTRA, "--force")
        # A bad name is refused as such, lock or not.
        bad = peachdw(tmp_path, None, "metrics", "add", "Video")
    assert result.exit_code == 1
    assert "Another sync is running" in result.output
    assert bad.exit_code == 2
    assert "is not a lowercase identifier" in bad.output
    conn = db.connect(tmp_path / "warehouse.db")
    assert column(conn, "hourly_data", EXTRA) == 0
    conn.close()


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
    planned = metrics.add(warehouse, EXTRA, dry_run=True, force=True)
    assert planned.statements == metrics.add_statements(EXTRA)
    assert metrics.of(warehouse) == metrics.BUILTIN_METRICS
    assert column(warehouse, "hourly_data", EXTRA) == 0
    with pytest.raises(MetricNameError, match="built-in"):
        metrics.add(warehouse, "media", dry_run=True, force=True)


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

    metrics.add(warehouse, EXTRA, force=True)
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


def test_status_checks_rule_names_against_the_warehouse_metrics(world):
    _, server, folder = world
    assert peachdw(folder, server, "sync").exit_code == 0
    rule = f"{EXTRA} <= sessions"
    env = {"PEACHDW_QUALITY_PLAUSIBILITY": rule}

    refused = peachdw(folder, server, "status", "--detailed", env=env)
    assert refused.exit_code == 2
    (line,) = refused.output.strip().splitlines()
    assert f"names {EXTRA}, not a metric" in line
    assert "`peachdw metrics add NAME`" in line

    assert peachdw(folder, server, "metrics", "add", EXTRA).exit_code == 0
    checked = peachdw(folder, server, "status", "--detailed", "--json", env=env)
    assert checked.exit_code == 0, checked.output
    # Stored hours hold 0 for the new metric until they are read again.
    assert json.loads(checked.output)["plausibility"]["by_rule"] == {rule: 0}


def test_plausibility_rules_may_name_an_added_metric(warehouse):
    rule = f"{EXTRA} <= sessions"
    with pytest.raises(ConfigError, match=f"names {EXTRA}, not a metric"):
        quality.parse_rule(rule, metrics.of(warehouse))
    metrics.add(warehouse, EXTRA, force=True)
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
