"""The hourly metrics, declared once.

The contract's 14 counts are declared here (`BUILTIN_METRICS`). A warehouse may hold more:
`add(conn, NAME)` (the command `peachdw metrics add NAME`) makes an integer metric a
column of `hourly_data` and `daily_totals` and a row of `metric_definitions`, after the
built-ins in the order they were added.
`of(conn)` is the list one warehouse holds, and every layer that names metrics (the
client's validation, the loader, the daily rollup, the reports, the quality checks) takes
it from there at call time, so a metric added to a warehouse is stored, summed and
exported from the next command on without another line of code.

The list is read from the connection rather than kept for the process: one process may
open several warehouses (the tests do), and each keeps its own metrics.
"""

from __future__ import annotations

import keyword
import re
import sqlite3
from dataclasses import dataclass

from peachdw.db import transaction, utc_now
from peachdw.errors import MetricNameError

# Order matters: it is the column order of `hourly_data` and of every export.
BUILTIN_METRICS: tuple[str, ...] = (
    "sessions",
    "registrations",
    "email_accounts",
    "google_accounts",
    "total_accounts",
    "credit_cards",
    "payment_methods",
    "converted_users",
    "terms_acceptances",
    "messages",
    "companion_chats",
    "chat_room_user_chats",
    "total_user_chats",
    "media",
)

# The daily totals that GET /admin/reports returns (contract: "GET /admin/reports").
REPORT_METRICS: tuple[str, ...] = (
    "sessions",
    "registrations",
    "converted_users",
    "messages",
)

# SQLite stores INTEGER as a signed 64-bit value.
MAX_COUNT = 2**63 - 1

#: The endpoint whose unknown fields can become metrics (its drift in `schema_drift`).
METRICS_ENDPOINT = "/admin/metrics"

# A lowercase identifier, as the contract's own metric names are.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")

#: Names a metric cannot take: the other columns of hourly_data and daily_totals, and the
#: columns the report tabs set beside the metrics (report.py; a test checks the list).
RESERVED_NAMES = frozenset(
    {
        "campaign_id",
        "unix_hour",
        "sync_id",
        "day",
        "date",
        "campaign_name",
        "status",
        "network",
        "domain",
        "placement",
        "targeting",
        "special",
        "mapping_confidence",
        "level",
        "campaigns",
        "registrations_per_session",
        "converted_per_registration",
        "messages_per_user_chat",
        # Names SQLite gives a table's rowid, and its literals.
        "rowid",
        "oid",
        "true",
        "false",
    }
)

# Every keyword of SQLite (https://sqlite.org/lang_keywords.html). Metric names go into
# SQL unquoted, and some keywords parse as names in one place and not in another, so
# none is allowed.
_SQL_KEYWORDS = frozenset(
    """
    abort action add after all alter always analyze and as asc attach autoincrement
    before begin between by cascade case cast check collate column commit conflict
    constraint create cross current current_date current_time current_timestamp
    database default deferrable deferred delete desc detach distinct do drop each else
    end escape except exclude exclusive exists explain fail filter first following for
    foreign from full generated glob group groups having if ignore immediate in index
    indexed initially inner insert instead intersect into is isnull join key last left
    like limit match materialized natural no not nothing notnull null nulls of offset on
    or order others outer over partition plan pragma preceding primary query raise range
    recursive references regexp reindex release rename replace restrict returning right
    rollback row rows savepoint select set table temp temporary then ties to transaction
    trigger unbounded union unique update using vacuum values view virtual when where
    window with without
    """.split()  # noqa: SIM905 - the words as the doc page lists them, easy to compare
)


def of(conn: sqlite3.Connection) -> tuple[str, ...]:
    """The metrics this warehouse stores: the built-ins, then those added, in order."""
    return BUILTIN_METRICS + added(conn)


def added(conn: sqlite3.Connection) -> tuple[str, ...]:
    """The metrics added to this warehouse, in the order they were added."""
    rows = conn.execute("SELECT name FROM metric_definitions ORDER BY position")
    return tuple(row[0] for row in rows)


def check_name(conn: sqlite3.Connection, name: str, *, force: bool = False) -> str:
    """`name` if it can become a new metric of this warehouse; else MetricNameError.

    A name the API was never seen sending on /admin/metrics is refused unless `force`:
    a metric cannot be removed, and a misspelt one would be a column of zeros in every
    export for good.
    """
    if not _NAME.fullmatch(name):
        reason = (
            "is not a lowercase identifier (a letter, then letters, digits or _, "
            "at most 63 characters)"
        )
    elif name in BUILTIN_METRICS:
        reason = "is a built-in metric already"
    elif name in added(conn):
        reason = "was added already; `peachdw metrics list` shows the metrics"
    elif name in _SQL_KEYWORDS or keyword.iskeyword(name) or name in ("true", "false"):
        reason = "is a keyword of SQL or Python, which would break the queries"
    elif name in RESERVED_NAMES:
        reason = "is the name of another column of the tables or the reports"
    elif not force and _seen(conn, name) is None:
        raise MetricNameError(
            f"Cannot add the metric {name!r}: the API was never seen sending it on "
            f"{METRICS_ENDPOINT} (`peachdw metrics list` shows the fields it sends), and "
            "a metric cannot be removed; check the spelling, or add it anyway with "
            "--force.",
            name=name,
        )
    else:
        return name
    raise MetricNameError(
        f"Cannot add the metric {name!r}: it {reason}. Choose another name.", name=name
    )


def add_statements(name: str) -> list[str]:
    """The schema changes that make `name` a metric, as `add` runs them.

    ADD COLUMN changes only the schema: every stored row is kept and reads the default,
    0, which is also what the contract reads for a count the API did not send
    (https://sqlite.org/lang_altertable.html#altertabaddcol).
    """
    column = f"{name} INTEGER NOT NULL DEFAULT 0 CHECK ({name} >= 0)"
    return [
        f"ALTER TABLE hourly_data ADD COLUMN {column}",
        f"ALTER TABLE daily_totals ADD COLUMN {column}",
    ]


@dataclass(frozen=True)
class FieldSeen:
    """What `schema_drift` recorded of a field the API sent on /admin/metrics."""

    first_seen_at: str
    last_seen_at: str
    occurrences: int


@dataclass(frozen=True)
class AddedMetric:
    """A metric `add` made (or, in a dry run, would make), and the rows it kept."""

    name: str
    hourly_rows: int
    daily_rows: int
    #: When the API was seen sending it before it was added; None if never.
    seen: FieldSeen | None
    statements: list[str]


def add(
    conn: sqlite3.Connection, name: str, *, dry_run: bool = False, force: bool = False
) -> AddedMetric:
    """Make `name` an integer metric of this warehouse, in one transaction.

    Both tables gain the column (every row kept, each at 0), `metric_definitions` gains
    the row that makes the metric part of `of(conn)`, and the field's drift entry is
    marked adopted. The caller holds the sync lock, so no sync writes meanwhile. A dry
    run checks the name and counts the rows, and writes nothing. A name the API was
    never seen sending is refused unless `force` (`check_name`).
    """
    if dry_run:
        return _plan(conn, name, force)

    with transaction(conn):
        # Planned inside the write transaction, so two adds of one name cannot both pass.
        result = _plan(conn, name, force)
        for statement in result.statements:
            conn.execute(statement)
        now = utc_now()
        conn.execute(
            "INSERT INTO metric_definitions (name, position, added_at, first_seen_at) "
            "VALUES (?, (SELECT coalesce(max(position), 0) + 1 FROM metric_definitions), "
            "?, ?)",
            (name, now, result.seen.first_seen_at if result.seen else None),
        )
        conn.execute(
            "UPDATE schema_drift SET adopted_at = ? WHERE endpoint = ? AND field = ?",
            (now, METRICS_ENDPOINT, name),
        )
    return result


def _plan(conn: sqlite3.Connection, name: str, force: bool) -> AddedMetric:
    check_name(conn, name, force=force)
    return AddedMetric(
        name,
        conn.execute("SELECT count(*) FROM hourly_data").fetchone()[0],
        conn.execute("SELECT count(*) FROM daily_totals").fetchone()[0],
        _seen(conn, name),
        add_statements(name),
    )


def _seen(conn: sqlite3.Connection, name: str) -> FieldSeen | None:
    row = conn.execute(
        "SELECT first_seen_at, last_seen_at, occurrences FROM schema_drift "
        "WHERE endpoint = ? AND field = ?",
        (METRICS_ENDPOINT, name),
    ).fetchone()
    return FieldSeen(*row) if row else None


@dataclass(frozen=True)
class MetricInfo:
    """One metric as `peachdw metrics list` shows it."""

    name: str
    kind: str
    added_at: str | None = None
    #: When the API was seen sending it before it was a metric (added ones only).
    first_seen_at: str | None = None


@dataclass(frozen=True)
class UnknownField:
    """A field the API sends on /admin/metrics that is not a metric (yet)."""

    name: str
    seen: FieldSeen


def listing(conn: sqlite3.Connection) -> tuple[list[MetricInfo], list[UnknownField]]:
    """Every metric, built-in first, and the /admin/metrics fields not adopted yet."""
    found = [MetricInfo(name, "built-in") for name in BUILTIN_METRICS]
    found += [
        MetricInfo(row[0], "added", row[1], row[2])
        for row in conn.execute(
            "SELECT name, added_at, first_seen_at FROM metric_definitions "
            "ORDER BY position"
        )
    ]
    unknown = [
        UnknownField(row[0], FieldSeen(*row[1:]))
        for row in conn.execute(
            "SELECT field, first_seen_at, last_seen_at, occurrences FROM schema_drift "
            "WHERE endpoint = ? AND adopted_at IS NULL ORDER BY field",
            (METRICS_ENDPOINT,),
        )
    ]
    return found, unknown
