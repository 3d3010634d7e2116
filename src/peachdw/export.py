"""CSV reports: one row per campaign, or per campaign and UTC day.

Files are written beside their target and renamed into place, so a failed export leaves no
half-written file, and every export, failed ones too, gets an `export_history` row.
"""

from __future__ import annotations

import csv
import logging
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from peachdw.db import transaction, utc_now
from peachdw.errors import ExportError
from peachdw.metrics import METRICS
from peachdw.rules import TIERS

log = logging.getLogger(__name__)

#: Characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Period:
    """Whole UTC days, both ends inclusive; None on a side means unbounded."""

    start: date | None = None
    end: date | None = None

    def hours(self) -> tuple[int, int]:
        start = _day_hour(self.start) if self.start else 0
        end = _day_hour(self.end + timedelta(days=1)) if self.end else 2**40
        return start, end

    def label(self) -> str:
        first = self.start.isoformat() if self.start else "all"
        last = self.end.isoformat() if self.end else "latest"
        return f"{first}_{last}"


@dataclass
class ExportResult:
    path: Path
    rows: int
    export_id: int | None
    seconds: float


def _day_hour(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) // 3600


def guard_cell(value: Any) -> Any:
    """Neutralise text that a spreadsheet would run as a formula; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


SUMMARY_HEADER = [
    "campaign_id",
    "campaign_name",
    "status",
    *TIERS,
    "mapping_confidence",
    *METRICS,
]
DAILY_HEADER = ["date", "campaign_id", "campaign_name", *TIERS, *METRICS]


def summary_sql() -> str:
    """One row per campaign: its tiers and the total of every metric over the period.

    Driven from `campaigns`, so each campaign's hours are one range seek on the key of
    `hourly_data` (no separate time index: docs/schema.md).
    """
    return (
        "SELECT c.id, c.name, "
        "CASE WHEN c.is_deleted THEN 'deleted' WHEN c.is_serving THEN 'serving' "
        "ELSE 'paused' END, "
        + ", ".join(f"coalesce(h.{tier}, 'Unknown')" for tier in TIERS)
        + ", h.mapping_confidence, "
        + ", ".join(f"coalesce(t.{m}, 0)" for m in METRICS)
        + " FROM campaigns AS c "
        "LEFT JOIN campaign_hierarchy AS h ON h.campaign_id = c.id "
        "LEFT JOIN (SELECT k.id AS campaign_id, "
        + ", ".join(f"sum(d.{m}) AS {m}" for m in METRICS)
        + " FROM campaigns AS k CROSS JOIN hourly_data AS d ON d.campaign_id = k.id "
        "WHERE d.unix_hour >= :start AND d.unix_hour < :end GROUP BY k.id) AS t "
        "ON t.campaign_id = c.id "
        "ORDER BY c.id"
    )


def daily_sql() -> str:
    """One row per campaign and UTC day that has any activity in the period."""
    return (
        "SELECT date(d.unix_hour * 3600, 'unixepoch') AS day, c.id, c.name, "
        + ", ".join(f"coalesce(h.{tier}, 'Unknown')" for tier in TIERS)
        + ", "
        + ", ".join(f"sum(d.{m})" for m in METRICS)
        + " FROM campaigns AS c "
        "CROSS JOIN hourly_data AS d ON d.campaign_id = c.id "
        "LEFT JOIN campaign_hierarchy AS h ON h.campaign_id = c.id "
        "WHERE d.unix_hour >= :start AND d.unix_hour < :end "
        "GROUP BY c.id, d.unix_hour / 24 ORDER BY day, c.id"
    )


def report_rows(
    conn: sqlite3.Connection, period: Period, *, daily: bool
) -> tuple[list[str], Iterator[Sequence[Any]]]:
    """The header and rows of the summary or the daily report."""
    start, end = period.hours()
    header, sql = (
        (DAILY_HEADER, daily_sql()) if daily else (SUMMARY_HEADER, summary_sql())
    )
    return header, conn.execute(sql, {"start": start, "end": end})


def default_path(directory: Path, report: str, period: Period) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return directory / f"peachdw_{report}_{period.label()}_{stamp}.csv"


def held_hours(
    conn: sqlite3.Connection, period: Period
) -> tuple[int | None, int | None]:
    """The first and last stored hour inside the period, or (None, None)."""
    start, end = period.hours()
    row = conn.execute(
        "SELECT min(d.unix_hour), max(d.unix_hour) FROM campaigns AS c "
        "CROSS JOIN hourly_data AS d ON d.campaign_id = c.id "
        "WHERE d.unix_hour >= ? AND d.unix_hour < ?",
        (start, end),
    ).fetchone()
    return row[0], row[1]


def export_csv(
    conn: sqlite3.Connection,
    *,
    daily: bool,
    period: Period,
    output: Path,
) -> ExportResult:
    """Write the report to `output` (`-` for standard output) and record the export."""
    report = "daily" if daily else "summary"
    started = time.monotonic()
    with transaction(conn):
        export_id = conn.execute(
            "INSERT INTO export_history (format, report, target, period_start, "
            "period_end, status, started_at) VALUES ('csv', ?, ?, ?, ?, 'running', ?)",
            (
                report,
                "stdout" if str(output) == "-" else str(output),
                period.start.isoformat() if period.start else None,
                period.end.isoformat() if period.end else None,
                utc_now(),
            ),
        ).lastrowid

    try:
        header, rows = report_rows(conn, period, daily=daily)
        written = _write_csv(output, header, rows)
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        _close_export(conn, export_id, "failed", 0, started, reason)
        raise ExportError(
            f"Cannot write the {report} export to {output}: {reason}. "
            "Choose another --output or free the folder."
        ) from exc

    _close_export(conn, export_id, "success", written, started, None)
    log.info("Exported %d %s rows to %s", written, report, output)
    return ExportResult(output, written, export_id, time.monotonic() - started)


def _write_csv(output: Path, header: list[str], rows: Iterator[Sequence[Any]]) -> int:
    """Write the rows as CSV; a regular file is replaced only once it is complete.

    Files are UTF-8 with a byte-order mark, so spreadsheet programs detect the encoding
    and names in any script open as written (Python reads them with "utf-8-sig"). `-`
    writes plain UTF-8 to standard output, for a pipe.
    """
    if str(output) == "-":
        try:
            return _write_rows(sys.stdout, header, rows)
        except BrokenPipeError:
            # The reader (head, less) stopped early: that is its choice, not a failure.
            # Python would report the closed pipe again at exit; point stdout elsewhere.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0

    # Write through a symbolic link, and into a device or pipe as it is.
    target = output.resolve()
    if target.exists() and not target.is_file():
        with open(target, "w", encoding="utf-8", newline="") as stream:
            return _write_rows(stream, header, rows)

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        # mkstemp makes the file private; a report gets the usual mode under the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with os.fdopen(handle, "w", encoding="utf-8-sig", newline="") as stream:
            written = _write_rows(stream, header, rows)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return written


def _write_rows(
    stream: TextIO, header: list[str], rows: Iterator[Sequence[Any]]
) -> int:
    writer = csv.writer(stream)
    writer.writerow(header)
    written = 0
    for row in rows:
        writer.writerow([guard_cell(value) for value in row])
        written += 1
    stream.flush()
    return written


def _close_export(
    conn: sqlite3.Connection,
    export_id: int,
    status: str,
    rows: int,
    started: float,
    error: str | None,
) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE export_history SET status = ?, rows_written = ?, finished_at = ?, "
            "duration_ms = ?, error_message = ? WHERE id = ?",
            (
                status,
                rows,
                utc_now(),
                int((time.monotonic() - started) * 1000),
                error,
                export_id,
            ),
        )
