from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

# Output is checked at the width it has without a terminal, whatever the shell says.
os.environ.pop("COLUMNS", None)

from peachdw import db, rules
from peachdw.sandbox import SandboxServer


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.db"


@pytest.fixture
def api(dataset):
    """The sandbox over HTTP, serving the test module's `dataset` fixture."""
    from sandbox_helpers import TOKEN

    with SandboxServer(dataset, TOKEN) as server:
        yield server


@pytest.fixture
def warehouse(db_path: Path) -> sqlite3.Connection:
    """A migrated file on disk with the default rules, so WAL and locking are real."""
    conn = db.connect(db_path)
    db.migrate(conn)
    with db.transaction(conn):
        rules.load_default_rules(conn)
    yield conn
    conn.close()


# The fake Google Sheets API and the guard that refuses every other host.
from fake_sheets import fake_google, no_google_network  # noqa: E402, F401
