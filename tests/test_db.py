from __future__ import annotations

import sqlite3

import pytest

from peachdw import db
from peachdw.errors import StorageError
from peachdw.export import daily_sql, summary_sql

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


@pytest.mark.parametrize("sql", [summary_sql(), daily_sql()], ids=["summary", "daily"])
def test_time_range_across_campaigns_seeks_the_primary_key(warehouse, sql):
    """Reports over a period read each campaign's hours by key, never the whole table."""
    plan = " | ".join(
        row[3]
        for row in warehouse.execute(
            f"EXPLAIN QUERY PLAN {sql}", {"start": 0, "end": 10}
        )
    )
    assert (
        "SEARCH d USING PRIMARY KEY (campaign_id=? AND unix_hour>? AND unix_hour<?)"
        in plan
    )
    assert "SCAN d" not in plan


def test_open_warehouse_without_a_file_says_run_init(tmp_path):
    with pytest.raises(StorageError, match="Run `peachdw init` first"):
        db.open_warehouse(tmp_path / "absent.db")
