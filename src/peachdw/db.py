"""Opening the SQLite file, applying migrations, and transactions.

Every connection enforces foreign keys (SQLite leaves them off by default: see
https://sqlite.org/foreignkeys.html#fk_enable), runs in WAL mode so readers keep working
while a sync writes, and waits on a busy timeout instead of failing at once.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from peachdw.errors import StorageError

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def utc_now() -> str:
    """The current time as the ISO 8601 text the warehouse stores."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def connect(path: Path | str, *, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """Open the warehouse file with the settings every connection needs.

    The connection is in autocommit mode; writes go through `transaction()`.
    """
    path = Path(path)
    if str(path) != ":memory:":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Cannot create the folder for the database {path}: {exc.strerror}. "
                "Choose another --db-path."
            ) from exc

    try:
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=busy_timeout_ms / 1000
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL never corrupts the file; a power cut may lose the last
        # commits, a killed process loses nothing (https://sqlite.org/pragma.html#pragma_synchronous).
        conn.execute("PRAGMA synchronous = NORMAL")
        # 32 MiB of page cache (the default is 2 MiB): a year of hourly rows is ~55 MB, and
        # writes into the middle of its key touch pages all over the table.
        conn.execute("PRAGMA cache_size = -32768")
    except sqlite3.DatabaseError as exc:
        if "readonly" in str(exc) or "unable to open" in str(exc):
            # WAL readers write the -wal and -shm files beside the database
            # (https://sqlite.org/wal.html#readonly).
            remedy = (
                "peachdw needs write access to the file and its folder, even to read; "
                "run it as the user that owns them, or choose another --db-path."
            )
        else:
            remedy = (
                "Check that it is a peachdw SQLite file, or choose another --db-path."
            )
        raise StorageError(f"Cannot open the database {path}: {exc}. {remedy}") from exc
    return conn


def connect_read_only(path: Path | str) -> sqlite3.Connection:
    """Open an existing warehouse for reading only: nothing can be written through it."""
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"Cannot open the database {path} to read: {exc}.") from exc
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a block in one write transaction that takes the write lock up front.

    BEGIN IMMEDIATE makes a second writer wait on the busy timeout here rather than fail
    with "database is locked" halfway through (https://sqlite.org/lang_transaction.html).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrations() -> list[Migration]:
    """The numbered migrations shipped in the package, in order."""
    found = []
    for entry in resources.files("peachdw.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda migration: migration.version)

    expected = list(range(1, len(found) + 1))
    if [migration.version for migration in found] != expected:
        raise StorageError("The package's migrations are not numbered 1, 2, 3, ... ")
    return found


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Bring the file up to the newest schema, in place. Returns the versions applied.

    Each migration runs in its own transaction together with the new `user_version`, so a
    failure leaves the file at the last complete version.
    """
    current = schema_version(conn)
    available = migrations()
    newest = available[-1].version if available else 0
    if current > newest:
        raise StorageError(
            f"The database is at schema version {current}, newer than this peachdw "
            f"knows ({newest}). Upgrade peachdw before using this file."
        )

    applied = []
    for migration in available:
        if migration.version <= current:
            continue
        log.info("Applying migration %04d_%s", migration.version, migration.name)
        # Foreign keys are checked once at the end, not statement by statement, so a
        # migration may rebuild a table others refer to (https://sqlite.org/lang_altertable.html,
        # "Making Other Kinds Of Table Schema Changes").
        conn.execute("PRAGMA foreign_keys = OFF")
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{migration.sql}\n"
                f"PRAGMA user_version = {migration.version};"
            )
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise sqlite3.IntegrityError(
                    f"{len(broken)} rows of {broken[0][0]} refer to missing rows"
                )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(
                f"Migration {migration.version:04d}_{migration.name} failed: {exc}. "
                "The file was left at the previous version."
            ) from exc
        finally:
            conn.execute("PRAGMA foreign_keys = ON")
        applied.append(migration.version)
    return applied


def require_database(path: Path) -> None:
    """Refuse a path with no file: only `peachdw init` (and a plain sync) creates one."""
    if not path.exists():
        raise StorageError(
            f"No database at {path}. Run `peachdw init` first with the same --db-path "
            "or settings to create it there, or give --db-path the warehouse you meant."
        )


def open_warehouse(
    path: Path | str, *, busy_timeout_ms: int = 5000
) -> sqlite3.Connection:
    """Open the file and refuse one that `peachdw init` has not brought up to date."""
    path = Path(path)
    require_database(path)

    conn = connect(path, busy_timeout_ms=busy_timeout_ms)
    current = schema_version(conn)
    newest = migrations()[-1].version
    if current < newest:
        migrate(conn)
    elif current > newest:
        conn.close()
        raise StorageError(
            f"The database {path} is at schema version {current}, newer than this "
            f"peachdw knows ({newest}). Upgrade peachdw before using this file."
        )
    return conn


def file_bytes(conn: sqlite3.Connection) -> int:
    """The database's size in pages, as it would be on disk after a checkpoint."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    return pages * conn.execute("PRAGMA page_size").fetchone()[0]


def slack_bytes(conn: sqlite3.Connection) -> int | None:
    """Bytes that `compact` would give back, about: free pages, and in each table and
    index the pages its unused space adds up to. None where SQLite was built without
    the `dbstat` table (https://sqlite.org/dbstat.html)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    try:
        spare_pages = conn.execute(
            "SELECT sum(spare) FROM (SELECT (sum(unused) / ?) AS spare FROM dbstat "
            "GROUP BY name)",
            (page_size,),
        ).fetchone()[0]
    except sqlite3.OperationalError:
        return None
    return (free + (spare_pages or 0)) * page_size


def compact(conn: sqlite3.Connection) -> tuple[int, int]:
    """Rewrite the file with every page packed (VACUUM). Returns the size before and after.

    Hours reach `hourly_data` in the middle of each campaign's key range, so the pages
    they split stay partly empty; VACUUM rebuilds every table in key order. It needs free
    disk space about the size of the file and leaves the file as it was if it fails
    (https://sqlite.org/lang_vacuum.html).
    """
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = file_bytes(conn)
    try:
        conn.execute("VACUUM")
    except sqlite3.Error as exc:
        raise StorageError(
            f"Could not compact the database: {exc}. The file is unchanged; VACUUM "
            "needs free disk space about the size of the file and no other writer."
        ) from exc
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return before, file_bytes(conn)
