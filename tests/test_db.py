from __future__ import annotations

import sqlite3

import pytest

from peachdw import db
from peachdw.errors import StorageError
from peachdw.metrics import BUILTIN_METRICS

NEWEST = db.migrations()[-1].version


def test_fresh_file_gets_every_table_and_the_newest_version(db_path):
    conn = db.connect(db_path)
    assert db.migrate(conn) == list(range(1, NEWEST + 1))
    tables = {
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {
        "campaigns",
        "hourly_data",
        "campaign_hierarchy",
        "hierarchy_rules",
        "sync_history",
        "export_history",
    } <= tables
    assert db.schema_version(conn) == NEWEST
    assert db.migrate(conn) == []


def test_old_file_is_upgraded_in_place_keeping_its_data(db_path):
    """A file made by an earlier release (here: version 0 with a table of its own)."""
    old = sqlite3.connect(db_path)
    old.execute("CREATE TABLE notes (text TEXT)")
    old.execute("INSERT INTO notes VALUES ('kept')")
    old.commit()
    old.close()

    conn = db.connect(db_path)
    db.migrate(conn)
    assert db.schema_version(conn) == NEWEST
    assert conn.execute("SELECT text FROM notes").fetchone()[0] == "kept"


def test_file_from_a_newer_release_is_refused(db_path):
    conn = db.connect(db_path)
    conn.execute(f"PRAGMA user_version = {NEWEST + 1}")
    with pytest.raises(StorageError, match="newer than this peachdw knows"):
        db.migrate(conn)


def test_failed_migration_leaves_the_previous_version(db_path, monkeypatch):
    shipped = db.migrations()
    conn = db.connect(db_path)
    db.migrate(conn)
    broken = db.Migration(
        NEWEST + 1, "broken", "CREATE TABLE x (a); CREATE TABLE x (a);"
    )
    monkeypatch.setattr(db, "migrations", lambda: [*shipped, broken])

    with pytest.raises(StorageError, match="was left at the previous version"):
        db.migrate(conn)
    assert db.schema_version(conn) == NEWEST
    assert (
        conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'x'").fetchone()[
            0
        ]
        == 0
    )


def test_connection_settings(warehouse):
    assert warehouse.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert warehouse.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert warehouse.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_foreign_key_to_campaigns_is_enforced(warehouse):
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        warehouse.execute(
            "INSERT INTO hourly_data (campaign_id, unix_hour) VALUES (99, 1)"
        )


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(
            "INSERT INTO hourly_data (campaign_id, unix_hour, sessions) VALUES (1, 1, -1)",
            id="negative-count",
        ),
        pytest.param(
            "INSERT INTO campaigns (id, name, is_serving) VALUES (2, 'x', 2)",
            id="boolean-out-of-range",
        ),
        pytest.param(
            "INSERT INTO campaign_hierarchy (campaign_id, network, domain, placement, "
            "targeting, special, mapping_confidence, mapped_name, mapped_at) "
            "VALUES (1, 'a', 'b', 'c', 'd', 'e', 1.5, 'x', 'now')",
            id="confidence-above-one",
        ),
    ],
)
def test_check_constraints(warehouse, statement):
    warehouse.execute("INSERT INTO campaigns (id, name, is_serving) VALUES (1, 'c', 1)")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        warehouse.execute(statement)


def test_transaction_rolls_back_on_error(warehouse):
    with pytest.raises(RuntimeError), db.transaction(warehouse):
        warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'c')")
        raise RuntimeError("boom")
    assert warehouse.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_report_days_across_campaigns_seek_the_primary_key(warehouse):
    """Reports read each campaign's hours of each day by key, never the whole table."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from peachdw.report import ReportPeriod, build_tabs, held_days

    warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'c'), (2, 'd')")
    statements: list[str] = []
    warehouse.set_trace_callback(statements.append)
    zone = ZoneInfo("Europe/Berlin")
    build_tabs(warehouse, ReportPeriod(date(2025, 3, 1), date(2025, 3, 31), zone))
    held_days(warehouse, zone)
    warehouse.set_trace_callback(None)

    reads = [s for s in statements if "hourly_data" in s]
    assert len(reads) == 2
    plans = [
        " | ".join(row[3] for row in warehouse.execute(f"EXPLAIN QUERY PLAN {sql}"))
        for sql in reads
    ]
    assert (
        "SEARCH d USING PRIMARY KEY (campaign_id=? AND unix_hour>? AND unix_hour<?)"
        in plans[0]
    )
    steps = [step for plan in plans for step in plan.split(" | ")]
    assert not [step for step in steps if step.split()[:2] == ["SCAN", "d"]], plans


def test_open_warehouse_without_a_file_says_run_init(tmp_path):
    with pytest.raises(StorageError, match="Run `peachdw init` first"):
        db.open_warehouse(tmp_path / "absent.db")


def test_reads_of_hourly_data_during_a_sync_and_export_seek_the_key(warehouse):
    """Every statement that reads hourly_data seeks it by key; a scan would make each
    window of a year-long backfill cost the whole table."""
    from peachdw import loader
    from peachdw.records import MetricsWindow

    warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'c'), (2, 'd')")
    statements: list[str] = []
    warehouse.set_trace_callback(statements.append)
    window = MetricsWindow(100, 268, None, rows=[])
    loader.plan_hourly(warehouse, window, {1, 2})
    loader.plan_hourly(warehouse, MetricsWindow(100, 268, 1, rows=[]), {1, 2})
    warehouse.set_trace_callback(None)

    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    reads = [s for s in reads if "hourly_data" in s]
    assert len(reads) == 2
    for sql in reads:
        plan = " | ".join(
            row[3] for row in warehouse.execute(f"EXPLAIN QUERY PLAN {sql}")
        )
        assert (
            "USING PRIMARY KEY (campaign_id=? AND unix_hour>? AND unix_hour<?)" in plan
        )
        assert "SCAN h" not in plan and "SCAN d" not in plan


def test_version_1_file_with_data_upgrades_to_backfill_columns(db_path, monkeypatch):
    """A warehouse written by the first release keeps its rows through migration 2."""
    shipped = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: shipped[:1])
    conn = db.connect(db_path)
    db.migrate(conn)
    conn.execute("INSERT INTO campaigns (id, name, is_serving) VALUES (1, 'c', 1)")
    conn.execute(
        "INSERT INTO sync_history (id, sync_type, status, started_at) "
        "VALUES (1, 'incremental', 'success', '2025-08-01T00:00:00Z')"
    )
    conn.execute(
        "INSERT INTO hourly_data (campaign_id, unix_hour, sessions, sync_id) "
        "VALUES (1, 100, 7, 1)"
    )
    conn.execute(
        "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status, finished_at) "
        "VALUES (1, 0, 168, 'done', '2025-08-01T00:00:00Z')"
    )
    conn.close()

    monkeypatch.setattr(db, "migrations", lambda: shipped)
    conn = db.connect(db_path)
    assert db.migrate(conn) == [m.version for m in shipped[1:]]
    history = conn.execute("SELECT * FROM sync_history").fetchone()
    assert history["records_restated"] == 0
    assert history["campaign_id"] is None
    window = conn.execute("SELECT campaign_id, status FROM sync_windows").fetchone()
    assert tuple(window) == (None, "done")
    assert conn.execute("SELECT sessions, sync_id FROM hourly_data").fetchone()[:] == (
        7,
        1,
    )
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_version_2_rules_upgrade_to_targeting_parts(db_path, monkeypatch):
    """A user's rule written before targeting had parts keeps working after migration 3,
    and the shipped rules move to the parts when loaded again."""
    from peachdw import rules

    shipped = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: shipped[:2])
    conn = db.connect(db_path)
    db.migrate(conn)
    conn.execute(
        "INSERT INTO hierarchy_rules (match_type, pattern, targeting, priority, "
        "created_at, updated_at) VALUES ('contains', 'vip', 'VIP list', 300, 'now', 'now')"
    )
    conn.execute(
        "INSERT INTO hierarchy_rules (rule_key, match_type, pattern, targeting, "
        "created_at, updated_at) VALUES ('targeting.retargeting', 'regex', 'rt', "
        "'Retargeting', 'now', 'now')"
    )
    monkeypatch.setattr(db, "migrations", lambda: shipped)
    assert db.migrate(conn) == [m.version for m in shipped[2:]]

    with db.transaction(conn):
        rules.load_default_rules(conn)
    moved = conn.execute(
        "SELECT targeting, targeting_audience FROM hierarchy_rules "
        "WHERE rule_key = 'targeting.retargeting'"
    ).fetchone()
    assert tuple(moved) == (None, "Retargeting")
    mapping = rules.RuleSet(rules.stored_rules(conn)).map({"name": "EXO_vip_US_RT"})
    assert (
        mapping.tiers["targeting"] == "VIP list"
    )  # the user's whole-tier rule, priority 300


def test_version_3_export_history_upgrades_to_tab_rows(db_path, monkeypatch):
    """Exports recorded before reports had tabs keep their rows; new columns are empty."""
    shipped = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: shipped[:3])
    conn = db.connect(db_path)
    db.migrate(conn)
    conn.execute(
        "INSERT INTO export_history (format, report, target, rows_written, status, "
        "started_at) VALUES ('csv', 'daily', 'exports/d.csv', 12, 'success', 'now')"
    )
    monkeypatch.setattr(db, "migrations", lambda: shipped)
    assert db.migrate(conn)[0] == 4
    row = conn.execute("SELECT * FROM export_history").fetchone()
    assert (row["report"], row["rows_written"]) == ("daily", 12)
    assert (row["tab_rows"], row["timezone"]) == (None, None)


def test_version_4_file_upgrades_to_heal_syncs_and_report_tables(db_path, monkeypatch):
    """Migration 5 rebuilds sync_history to allow 'heal'; the rows that refer to it keep
    their links, and the foreign keys still hold afterwards."""
    shipped = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: shipped[:4])
    conn = db.connect(db_path)
    db.migrate(conn)
    conn.execute("INSERT INTO campaigns (id, name, is_serving) VALUES (1, 'c', 1)")
    conn.execute(
        "INSERT INTO sync_history (id, sync_type, status, started_at, records_restated) "
        "VALUES (7, 'historical', 'success', '2025-08-01T00:00:00Z', 3)"
    )
    conn.execute(
        "INSERT INTO hourly_data (campaign_id, unix_hour, sessions, sync_id) "
        "VALUES (1, 100, 7, 7)"
    )
    conn.execute(
        "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status, finished_at) "
        "VALUES (7, 0, 168, 'done', '2025-08-01T00:00:00Z')"
    )
    monkeypatch.setattr(db, "migrations", lambda: shipped)
    assert db.migrate(conn)[0] == 5

    history = conn.execute("SELECT * FROM sync_history").fetchone()
    assert (history["id"], history["sync_type"], history["records_restated"]) == (
        7,
        "historical",
        3,
    )
    assert conn.execute("SELECT sync_id FROM hourly_data").fetchone()[0] == 7
    conn.execute(
        "INSERT INTO sync_history (sync_type, status, started_at) "
        "VALUES ('heal', 'running', 'now')"
    )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status) "
            "VALUES (999, 0, 1, 'done')"
        )
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM api_reports").fetchone()[0] == 0


def test_version_5_file_with_hours_upgrades_to_an_unbuilt_rollup(db_path, monkeypatch):
    """Migration 6 cannot know reporting.timezone: it leaves the rollup unbuilt, reports
    sum the hours meanwhile, and the next sync builds it."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from peachdw import rollup
    from peachdw.report import ReportPeriod, daily_totals

    shipped = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: shipped[:5])
    conn = db.connect(db_path)
    db.migrate(conn)
    conn.execute("INSERT INTO campaigns (id, name) VALUES (1, 'c'), (2, 'd')")
    # 2025-08-01 21:00, 22:00 and 23:00 UTC, and 2025-08-02 00:00 UTC: in Berlin
    # (UTC+2) the last three are all on 2 August.
    conn.execute(
        "INSERT INTO hourly_data (campaign_id, unix_hour, sessions, messages) VALUES "
        "(1, 487245, 4, 0), (1, 487246, 5, 1), (1, 487247, 6, 2), (1, 487248, 7, 3), "
        "(2, 487248, 9, 0)"
    )
    conn.close()

    monkeypatch.setattr(db, "migrations", lambda: shipped)
    conn = db.connect(db_path)
    assert db.migrate(conn) == [m.version for m in shipped[5:]]
    assert conn.execute("SELECT zone FROM rollup_state").fetchall()[0][0] is None
    assert conn.execute("SELECT count(*) FROM daily_totals").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM hourly_data").fetchone()[0] == 5

    def sessions_and_messages(period):
        sessions, messages = (
            BUILTIN_METRICS.index("sessions"),
            BUILTIN_METRICS.index("messages"),
        )
        return [
            (row[0], row[1], row[2 + sessions], row[2 + messages])
            for row in daily_totals(conn, period)
        ]

    berlin = ReportPeriod(date(2025, 8, 1), date(2025, 8, 2), ZoneInfo("Europe/Berlin"))
    expected = [
        ("2025-08-01", 1, 4, 0),
        ("2025-08-02", 1, 18, 6),
        ("2025-08-02", 2, 9, 0),
    ]
    assert rollup.read_days(conn, berlin) is None
    assert sessions_and_messages(berlin) == expected

    with db.transaction(conn):
        assert rollup.ensure(conn, ZoneInfo("Europe/Berlin"))
    assert rollup.read_days(conn, berlin) is not None
    assert sessions_and_messages(berlin) == expected
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


@pytest.mark.parametrize(
    ("failure", "remedy"),
    [
        pytest.param(
            sqlite3.OperationalError("attempt to write a readonly database"),
            "peachdw needs write access to the file and its folder, even to read",
            id="no-write-access",
        ),
        pytest.param(
            sqlite3.DatabaseError("file is not a database"),
            "Check that it is a peachdw SQLite file",
            id="not-a-database",
        ),
    ],
)
def test_an_unopenable_file_is_explained_by_its_cause(
    tmp_path, monkeypatch, failure, remedy
):
    def refuse(*args, **kwargs):
        raise failure

    monkeypatch.setattr(db.sqlite3, "connect", refuse)
    with pytest.raises(StorageError) as raised:
        db.connect(tmp_path / "w.db")
    assert str(raised.value).startswith(
        f"Cannot open the database {tmp_path / 'w.db'}: "
    )
    assert remedy in str(raised.value)


def _fill_like_syncs(conn: sqlite3.Connection, campaigns: int, windows: int) -> None:
    """Hours as syncs write them: window after window, each campaign's new hours at
    the end of its own key range, in the middle of the table."""
    with db.transaction(conn):
        conn.executemany(
            "INSERT INTO campaigns (id, name) VALUES (?, ?)",
            [(c, f"campaign {c}") for c in range(1, campaigns + 1)],
        )
    for window in range(windows):
        with db.transaction(conn):
            conn.executemany(
                "INSERT INTO hourly_data (campaign_id, unix_hour, sessions, messages) "
                "VALUES (?, ?, ?, ?)",
                [
                    (c, 480_000 + window * 24 + h, c + h, 1000 + window)
                    for c in range(1, campaigns + 1)
                    for h in range(24)
                ],
            )


def test_compact_packs_the_pages_and_keeps_every_row(warehouse, db_path):
    from click.testing import CliRunner

    from peachdw.cli import cli

    _fill_like_syncs(warehouse, campaigns=40, windows=30)
    checksum = (
        "SELECT count(*), sum(sessions), sum(messages), sum(unix_hour) FROM hourly_data"
    )
    expected = warehouse.execute(checksum).fetchone()
    slack = db.slack_bytes(warehouse)
    warehouse.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db_path.stat().st_size
    assert slack > size / 20  # the splits left a good part of the pages empty

    dry = CliRunner().invoke(cli, ["compact", "--db-path", str(db_path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (
        f"({size / 1e6:.1f} MB; {slack / 1e6:.1f} MB of it holds no data)" in dry.output
    )
    assert db_path.stat().st_size == size

    result = CliRunner().invoke(cli, ["compact", "--db-path", str(db_path)])
    assert result.exit_code == 0, result.output
    after = db_path.stat().st_size
    assert after < size - slack * 0.8
    assert f"from {size / 1e6:.1f} MB to {after / 1e6:.1f} MB" in result.output
    assert warehouse.execute(checksum).fetchone() == expected
    assert warehouse.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_compact_is_refused_while_a_sync_runs(warehouse, db_path):
    from click.testing import CliRunner

    from peachdw.cli import cli
    from peachdw.lock import SyncLock

    with SyncLock(db_path, "peachdw sync"):
        result = CliRunner().invoke(cli, ["compact", "--db-path", str(db_path)])
    assert result.exit_code == 1
    assert "peachdw sync" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_version_7_reports_upgrade_with_their_reader_as_first_reader(
    db_path, monkeypatch
):
    """Migration 8 cannot know since when a kept report said what it says: it takes the
    sync that last read it, so only a later heal settles a difference."""
    shipped = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: shipped[:7])
    conn = db.connect(db_path)
    db.migrate(conn)
    conn.execute("INSERT INTO campaigns (id, name) VALUES (1, 'c')")
    conn.execute(
        "INSERT INTO sync_history (id, sync_type, status, started_at) "
        "VALUES (3, 'incremental', 'success', 'now')"
    )
    conn.execute(
        "INSERT INTO api_reports (campaign_id, day, sessions, registrations, "
        "converted_users, messages, fetched_at, sync_id) "
        "VALUES (1, '2025-08-01', 5, 1, 0, 2, 'now', 3)"
    )
    conn.execute(
        "INSERT INTO api_report_days (day, fetched_at, sync_id) "
        "VALUES ('2025-08-01', 'now', 3)"
    )

    monkeypatch.setattr(db, "migrations", lambda: shipped)
    assert db.migrate(conn)[0] == 8
    assert tuple(
        conn.execute(
            "SELECT sessions, sync_id, figures_sync_id FROM api_reports"
        ).fetchone()
    ) == (5, 3, 3)
    assert tuple(
        conn.execute("SELECT sync_id, figures_sync_id FROM api_report_days").fetchone()
    ) == (3, 3)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_version_8_syncs_upgrade_to_a_history_that_takes_unresolved(
    db_path, monkeypatch
):
    shipped = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: shipped[:8])
    conn = db.connect(db_path)
    db.migrate(conn)
    conn.execute(
        "INSERT INTO sync_history (id, sync_type, status, started_at, error_message) "
        "VALUES (4, 'heal', 'success', 'now', NULL)"
    )
    conn.execute(
        "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status, finished_at) "
        "VALUES (4, 0, 24, 'done', 'now')"
    )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE sync_history SET status = 'unresolved'")

    monkeypatch.setattr(db, "migrations", lambda: shipped)
    assert db.migrate(conn)[0] == 9
    conn.execute("UPDATE sync_history SET status = 'unresolved' WHERE id = 4")
    assert tuple(
        conn.execute("SELECT id, sync_type, status FROM sync_history").fetchone()
    ) == (4, "heal", "unresolved")
    assert conn.execute("SELECT sync_id FROM sync_windows").fetchone()[0] == 4
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
