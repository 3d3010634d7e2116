from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from peachdw import db, rules


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.db"


@pytest.fixture
def warehouse(db_path: Path) -> sqlite3.Connection:
    """A migrated file on disk with the default rules, so WAL and locking are real."""
    conn = db.connect(db_path)
    db.migrate(conn)
    with db.transaction(conn):
        rules.load_default_rules(conn)
    yield conn
    conn.close()
