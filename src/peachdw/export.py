"""Exports: the report's tabs written as CSV files, an Excel workbook or a Google Sheet.

Every format is fed the same tabs (peachdw.report), so the numbers agree to the unit. A
writer either completes or leaves the previous report in place: files are written beside
their target and renamed into place, and a spreadsheet's tabs are swapped in one request
once all their values are written. Every export, failed ones too, gets an
`export_history` row with its format, target, period, rows per tab, duration and error.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from peachdw.db import transaction, utc_now
from peachdw.errors import ConfigError, ExportError
from peachdw.report import TAB_NAMES, ReportPeriod, Tab, build_tabs

log = logging.getLogger(__name__)

FORMATS = ("csv", "xlsx", "sheets")

#: Characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class Writer(Protocol):
    """Writes a report's tabs somewhere; `target` says where, for people and history."""

    target: str

    def write(self, tabs: list[Tab]) -> None: ...


@dataclass
class ExportResult:
    target: str
    tab_rows: dict[str, int]
    export_id: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    #: Why the report ended short by the reader's choice (a pipe closed by head).
    note: str | None = None


def export_report(
    conn: sqlite3.Connection,
    period: ReportPeriod,
    writer: Writer,
    *,
    fmt: str,
    tabs: tuple[str, ...] = TAB_NAMES,
) -> ExportResult:
    """Build the tabs for `period`, hand them to `writer` and record the export."""
    started = time.monotonic()
    export_id = _open_history(conn, fmt, tabs, writer.target, period)
    tab_rows: dict[str, int] = {}
    try:
        built = build_tabs(conn, period, tabs)
        tab_rows = {tab.name: len(tab.rows) for tab in built}
        writer.write(built)
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        where = getattr(exc, "filename", None) or writer.target
        message = (
            f"Cannot write the export to {where}: {reason}. "
            "Choose another --output, or make its folder writable."
        )
        _close_history(conn, export_id, writer.target, "failed", {}, started, message)
        raise ExportError(message) from exc
    except BaseException as exc:
        # Whatever stopped it (a refusal, Ctrl-C), the export is recorded as failed.
        reason = str(exc) or type(exc).__name__
        _close_history(conn, export_id, writer.target, "failed", {}, started, reason)
        raise

    note = getattr(writer, "note", None)
    # A reader that stopped early got fewer rows than the report has.
    tab_rows = getattr(writer, "sent", None) or tab_rows
    _close_history(conn, export_id, writer.target, "success", tab_rows, started, note)
    log.debug("Exported %s to %s", tab_rows, writer.target)
    return ExportResult(
        writer.target,
        tab_rows,
        export_id,
        time.monotonic() - started,
        list(getattr(writer, "warnings", [])),
        note,
    )


def record_refusal(
    conn: sqlite3.Connection,
    period: ReportPeriod,
    *,
    fmt: str,
    tabs: tuple[str, ...],
    error: str,
) -> None:
    """Record an export refused before it started (no credentials, a bad target)."""
    export_id = _open_history(conn, fmt, tabs, "-", period)
    _close_history(conn, export_id, "-", "failed", {}, time.monotonic(), error)


def _open_history(
    conn: sqlite3.Connection,
    fmt: str,
    tabs: tuple[str, ...],
    target: str,
    period: ReportPeriod,
) -> int:
    with transaction(conn):
        return conn.execute(
            "INSERT INTO export_history (format, report, target, period_start, "
            "period_end, timezone, status, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            (
                fmt,
                ",".join(tabs),
                target,
                period.first.isoformat(),
                period.last.isoformat(),
                period.zone.key,
                utc_now(),
            ),
        ).lastrowid


def _close_history(
    conn: sqlite3.Connection,
    export_id: int,
    target: str,
    status: str,
    tab_rows: dict[str, int],
    started: float,
    error: str | None,
) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE export_history SET status = ?, target = ?, rows_written = ?, "
            "tab_rows = ?, finished_at = ?, duration_ms = ?, error_message = ? "
            "WHERE id = ?",
            (
                status,
                target,
                sum(tab_rows.values()),
                json.dumps(tab_rows),
                utc_now(),
                int((time.monotonic() - started) * 1000),
                error,
                export_id,
            ),
        )


def guard_cell(value: Any) -> Any:
    """Neutralise text that a spreadsheet would run as a formula; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def file_stem(period: ReportPeriod, tab: str | None = None) -> str:
    """`peachdw_2025-08-01_2025-08-31_20251203T101500Z`, with the tab if there is one."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    middle = f"_{tab.lower()}" if tab else ""
    return f"peachdw{middle}_{period.label()}_{stamp}"


@contextmanager
def replaced(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` that replaces it only if the block completes.

    A symbolic link is written through. The file gets the usual mode under the umask.
    """
    target = path.resolve()
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "it is a folder, not a file", str(path))
    for parent in reversed(target.parents):
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(
                errno.ENOTDIR, "it is a file, not a folder", str(parent)
            )
    temporary = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
        os.close(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        yield Path(temporary)
        os.replace(temporary, target)
    except OSError as exc:
        if temporary:
            Path(temporary).unlink(missing_ok=True)
        # The temporary file is ours, not the user's: name the file they asked for.
        ours = (Path(name) for name in (exc.filename, exc.filename2) if name)
        if any(
            n.parent == target.parent and n.name.startswith(f".{target.name}.")
            for n in ours
        ):
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        if temporary:
            Path(temporary).unlink(missing_ok=True)
        raise


class CsvWriter:
    """One CSV file per tab.

    With one tab, `output` is the file (`-` for standard output). With several, an
    `output` ending in .csv names them (`report.csv` gives `report_summary.csv`, ...),
    and any other `output` is the folder they go in. Files are UTF-8 with a byte-order
    mark, so spreadsheet programs detect the encoding and names in any script open as
    written (Python reads them with "utf-8-sig"); standard output gets plain UTF-8, for a
    pipe. Text a spreadsheet would run as a formula gets a leading apostrophe; a rate
    with no denominator is an empty cell.
    """

    def __init__(
        self,
        tabs: tuple[str, ...],
        period: ReportPeriod,
        *,
        output: Path | None,
        directory: Path,
    ):
        self.paths: dict[str, Path | None]
        if output is not None and str(output) == "-":
            if len(tabs) != 1:
                raise ConfigError(
                    "--output - writes one tab to standard output; "
                    "choose it with --tab (or --daily)."
                )
            self.paths = {tabs[0]: None}
        elif len(tabs) == 1 and output is not None:
            self.paths = {tabs[0]: output}
        elif output is not None and output.suffix.lower() == ".csv":
            self.paths = {
                tab: output.with_name(f"{output.stem}_{tab.lower()}.csv")
                for tab in tabs
            }
        else:
            folder = output or directory
            self.paths = {tab: folder / f"{file_stem(period, tab)}.csv" for tab in tabs}
        self.target = ", ".join(
            "stdout" if path is None else str(path) for path in self.paths.values()
        )
        #: Set when the export ended short of the whole report by the reader's choice,
        #: with the rows written until then.
        self.note: str | None = None
        self.sent: dict[str, int] | None = None

    def write(self, tabs: list[Tab]) -> None:
        by_name = {tab.name: tab for tab in tabs}
        if None in self.paths.values():
            name = next(iter(self.paths))
            sent = _write_stdout(by_name[name])
            if sent is not None:
                self.sent = {name: sent}
                self.note = (
                    f"The reader closed standard output before the end of {name}, "
                    f"after at most {sent:,} of its {len(by_name[name].rows):,} rows."
                )
            return
        # Every file is complete before any replaces its target.
        with ExitStack() as stack:
            for name, tab in by_name.items():
                path = self.paths[name]
                assert path is not None
                if path.exists() and not path.resolve().is_file():
                    # A device or a pipe is written as it is.
                    _write_file(path, tab, encoding="utf-8")
                else:
                    _write_file(stack.enter_context(replaced(path)), tab)


def _write_file(path: Path, tab: Tab, encoding: str = "utf-8-sig") -> None:
    with open(path, "w", encoding=encoding, newline="") as stream:
        _write_rows(stream, tab)


def _write_stdout(tab: Tab) -> int | None:
    """Write `tab` to standard output. If the reader closed it first, the rows written
    until then (at most what reached the reader: some may sit in a buffer)."""
    sent = 0

    def counted() -> Iterator[list[Any]]:
        nonlocal sent
        for row in tab.rows:
            yield row
            sent += 1  # the writer asks for the next row once this one is written

    try:
        _write_rows(sys.stdout, tab, counted())
    except BrokenPipeError:
        # The reader (head, less) stopped early: that is its choice, not a failure.
        # Python would report the closed pipe again at exit; point stdout elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return sent
    return None


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return guard_cell(value)


def _write_rows(
    stream: TextIO, tab: Tab, rows: Iterable[list[Any]] | None = None
) -> None:
    """Write the header and `rows` (default: all of the tab's)."""
    writer = csv.writer(stream)
    writer.writerow(tab.header)
    for row in tab.rows if rows is None else rows:
        writer.writerow([_csv_cell(value) for value in row])
    stream.flush()
