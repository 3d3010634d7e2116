"""A local fake of the Google Sheets v4 API, one Drive v3 call and the OAuth token endpoint.

`FakeSheets` serves, on loopback and at Google's own paths below its `url`, the calls a
report export makes. Point the Sheets base URL at ``f"{fake.url}/v4"`` and the Drive base
URL at ``f"{fake.url}/drive/v3"``, and sign in with a credential file from
`FakeSheets.service_account_key` or `FakeSheets.authorized_user`, whose ``token_uri`` is
``fake.token_url``.

- ``POST /token``: the service-account JWT grant (RS256, checked against the key the fake
  wrote) and the authorized-user refresh grant. Each token remembers who it was issued to.
- ``GET /v4/spreadsheets/{id}``, ``POST /v4/spreadsheets``,
  ``POST /v4/spreadsheets/{id}:batchUpdate``,
  ``POST /v4/spreadsheets/{id}/values:batchUpdate`` and
  ``POST /drive/v3/files/{id}/permissions``.

Every API call needs a bearer token the fake issued, carrying one of the OAuth scopes that
Google's discovery document lists for the method, and its query string and JSON body must
follow that document (see `discovery`). What the fake then does mirrors the real API where
an export can trip: sheet ids and titles must exist, titles are unique, field masks name
real fields, writes stay inside their range and the grid, a workbook holds at most
10,000,000 cells, a batch is all or nothing, and a service account cannot create a
spreadsheet. Errors have Google's shape, ``{"error": {"code", "message", "status"}}``.

`FakeSheets.fail` breaks the next calls on cue; `FakeSheets.calls` records every exchange.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import discovery
import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from peachdw.sandbox.server import LoopbackHTTPServer

logger = logging.getLogger(__name__)

SPREADSHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
DEFAULT_SCOPES = (SPREADSHEETS_SCOPE, DRIVE_SCOPE)
# google-auth puts this in the JWT's aud, whatever token_uri the key file names.
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# A new sheet's grid, and the limits of a workbook and a cell (Sheets API, "Limits").
DEFAULT_ROWS = 1000
DEFAULT_COLUMNS = 26
MAX_CELLS = 10_000_000
MAX_CELL_CHARACTERS = 50_000

# google.rpc.Code names, as Google puts them in error.status.
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    401: "Request had invalid authentication credentials. Expected OAuth 2 access "
    "token, login cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}
_MISSING_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access "
    "token, login cookie or other valid authentication credential."
)
_QUOTA_EXCEEDED = (
    "Quota exceeded for quota metric '{kind} requests' and limit '{kind} requests per "
    "minute per user' of service '{service}' for consumer 'project_number:0'."
)
# RFC 6750, section 3: a 401 names the scheme it wants.
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
_ROLES = ("owner", "organizer", "fileOrganizer", "writer", "commenter", "reader")


# --- errors and replies ---------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An error answered in Google's shape; `reason` adds a google.rpc.ErrorInfo."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.message = message or _MESSAGES.get(status) or _STATUS.get(status, "Error")
        self.reason = reason
        self.headers = dict(headers or {})
        super().__init__(f"{status}: {self.message}")

    def reply(self, api: str) -> _Reply:
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": _STATUS.get(self.status, "UNKNOWN"),
        }
        if self.reason:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.reason,
                    "domain": "googleapis.com",
                    "metadata": {"service": f"{api}.googleapis.com"},
                }
            ]
        if api == "drive":
            # Drive v3 keeps the older list of errors too; gspread reads its domain.
            reason = self.reason or error["status"]
            error["errors"] = [
                {"domain": "global", "reason": reason, "message": self.message}
            ]
        return _Reply(self.status, {"error": error}, self.headers)


class _OAuthError(Exception):
    """A refusal of the token endpoint (RFC 6749, section 5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        self.error, self.description, self.status = error, description, status
        super().__init__(f"{error}: {description}")

    def reply(self) -> _Reply:
        payload = {"error": self.error, "error_description": self.description}
        return _Reply(self.status, payload)


class _Invalid(Exception):
    """One request of a batch is refused; the batch answers 400 and applies nothing."""


# --- A1 notation ----------------------------------------------------------------------

_CELLS = re.compile(r"([A-Za-z]*)(\d*)(?::([A-Za-z]*)(\d*))?")
_PLAIN_TITLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CELL_LIKE = re.compile(r"[A-Za-z]{1,3}\d+")


@dataclass(frozen=True)
class GridRange:
    """Cells of one sheet: 0-based, ends exclusive, None where the range is open.

    A single cell (``A1``) leaves both ends open: values written there grow from it.
    """

    start_row: int = 0
    start_column: int = 0
    end_row: int | None = None
    end_column: int | None = None


def split_a1(text: str) -> tuple[str | None, str | None]:
    """``'Q1 ''24'!A1:B2`` -> ("Q1 '24", "A1:B2"); a missing part is None."""
    if text.startswith("'"):
        found = re.fullmatch(r"'((?:[^']|'')*)'(?:!(.*))?", text, re.DOTALL)
        if not found:
            raise ValueError(text)
        return found[1].replace("''", "'"), found[2]
    if "!" in text:
        title, cells = text.split("!", 1)
        return title, cells
    return None, None


def parse_cells(text: str) -> GridRange:
    """``A1``, ``A1:C9``, ``A:C``, ``2:5`` or ``A2:C`` as a `GridRange`."""
    found = _CELLS.fullmatch(text)
    if not text or not found:
        raise ValueError(text)
    first_column, first_row, last_column, last_row = found.groups()
    if ":" not in text:
        if not (first_column and first_row):
            raise ValueError(text)
        return GridRange(int(first_row) - 1, column_index(first_column))

    # A box (A1:C9), whole columns (A:C), whole rows (2:5), or open at the bottom (A2:C).
    if first_column or last_column:
        complete = bool(first_column and last_column)
    else:
        complete = bool(first_row and last_row)
    if not complete or first_row.startswith("0") or last_row.startswith("0"):
        raise ValueError(text)
    start_row = int(first_row) - 1 if first_row else 0
    end_row = int(last_row) if last_row else None
    start_column = column_index(first_column) if first_column else 0
    end_column = column_index(last_column) + 1 if last_column else None

    # Sheets reads B2:A1 as A1:B2.
    if end_row is not None and end_row <= start_row:
        start_row, end_row = end_row - 1, start_row + 1
    if end_column is not None and end_column <= start_column:
        start_column, end_column = end_column - 1, start_column + 1
    return GridRange(start_row, start_column, end_row, end_column)


def column_index(letters: str) -> int:
    """``A`` -> 0, ``Z`` -> 25, ``AA`` -> 26."""
    index = 0
    for letter in letters.upper():
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


def column_letters(index: int) -> str:
    """0 -> ``A``, 25 -> ``Z``, 26 -> ``AA``."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def format_a1(
    title: str, first: tuple[int, int], last: tuple[int, int] | None = None
) -> str:
    """``Summary!A1:B2`` from 0-based (row, column) corners, quoting the title if needed."""
    if not _PLAIN_TITLE.fullmatch(title) or _CELL_LIKE.fullmatch(title):
        title = "'" + title.replace("'", "''") + "'"
    text = f"{title}!{column_letters(first[1])}{first[0] + 1}"
    if last is not None and last != first:
        text += f":{column_letters(last[1])}{last[0] + 1}"
    return text


# --- the spreadsheet model ------------------------------------------------------------


@dataclass
class _Sheet:
    sheet_id: int
    title: str
    index: int = 0
    row_count: int = DEFAULT_ROWS
    column_count: int = DEFAULT_COLUMNS
    frozen_row_count: int = 0
    frozen_column_count: int = 0
    hidden: bool = False
    cells: dict[tuple[int, int], Any] = field(default_factory=dict, repr=False)

    def properties(self) -> dict[str, Any]:
        # Like Google, leave out the frozen counts while they hold their default, 0.
        grid = {"rowCount": self.row_count, "columnCount": self.column_count}
        if self.frozen_row_count:
            grid["frozenRowCount"] = self.frozen_row_count
        if self.frozen_column_count:
            grid["frozenColumnCount"] = self.frozen_column_count
        properties = {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": self.index,
            "sheetType": "GRID",
            "gridProperties": grid,
        }
        if self.hidden:
            properties["hidden"] = True
        return properties

    def copy(self) -> _Sheet:
        return replace(self, cells=dict(self.cells))

    def size(self, dimension: str) -> int:
        return self.row_count if dimension == "ROWS" else self.column_count

    def resize(self, rows: int, columns: int) -> None:
        self.row_count, self.column_count = rows, columns
        self.cells = {
            (row, column): value
            for (row, column), value in self.cells.items()
            if row < rows and column < columns
        }

    def shift(self, dimension: str, start: int, delta: int) -> None:
        """Insert (delta > 0) or delete (delta < 0) rows or columns at `start`."""
        axis = 0 if dimension == "ROWS" else 1
        moved = {}
        for key, value in self.cells.items():
            position = key[axis]
            if delta < 0 and start <= position < start - delta:
                continue
            if position >= start:
                key = (
                    (key[0] + delta, key[1]) if axis == 0 else (key[0], key[1] + delta)
                )
            moved[key] = value
        self.cells = moved
        if axis == 0:
            self.row_count += delta
        else:
            self.column_count += delta


@dataclass
class _Spreadsheet:
    spreadsheet_id: str
    title: str
    sheets: list[_Sheet] = field(default_factory=list)

    def resource(self) -> dict[str, Any]:
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {
                "title": self.title,
                "locale": "en_US",
                "timeZone": "Etc/GMT",
            },
            "sheets": [{"properties": sheet.properties()} for sheet in self.sheets],
            "spreadsheetUrl": (
                f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit"
            ),
        }

    def copy(self) -> _Spreadsheet:
        return replace(self, sheets=[sheet.copy() for sheet in self.sheets])

    def grid(self, sheet_id: int) -> _Sheet:
        for sheet in self.sheets:
            if sheet.sheet_id == sheet_id:
                return sheet
        raise _Invalid(f"No grid with id: {sheet_id}")

    def titled(self, title: str) -> _Sheet | None:
        # Titles are unique regardless of case, and ranges may name them in any case.
        for sheet in self.sheets:
            if sheet.title.casefold() == title.casefold():
                return sheet
        return None

    def new_sheet_id(self, title: str) -> int:
        # Stable from run to run, but neither 1, 2, 3 nor reused, like Google's.
        for attempt in range(100):
            key = f"{self.spreadsheet_id}/{title}/{attempt}".encode()
            candidate = zlib.crc32(key) & 0x7FFFFFFF
            if all(sheet.sheet_id != candidate for sheet in self.sheets):
                return candidate
        raise RuntimeError("no free sheet id")

    def reindex(self) -> None:
        for index, sheet in enumerate(self.sheets):
            sheet.index = index

    def total_cells(self) -> int:
        return sum(sheet.row_count * sheet.column_count for sheet in self.sheets)


# --- spreadsheets.batchUpdate requests ------------------------------------------------


def _add_sheet(book: _Spreadsheet, request: Mapping[str, Any]) -> dict[str, Any]:
    properties = request.get("properties", {})
    title = properties.get("title") or _next_default_title(book)
    _check_title_free(book, title)
    sheet_id = properties.get("sheetId", book.new_sheet_id(title))
    if any(sheet.sheet_id == sheet_id for sheet in book.sheets):
        raise _Invalid(f"A sheet with the id {sheet_id} already exists.")

    grid = properties.get("gridProperties", {})
    sheet = _Sheet(
        sheet_id,
        title,
        row_count=grid.get("rowCount", DEFAULT_ROWS),
        column_count=grid.get("columnCount", DEFAULT_COLUMNS),
        frozen_row_count=grid.get("frozenRowCount", 0),
        frozen_column_count=grid.get("frozenColumnCount", 0),
        hidden=properties.get("hidden", False),
    )
    _check_grid(sheet)
    book.sheets.insert(properties.get("index", len(book.sheets)), sheet)
    book.reindex()

    return {"addSheet": {"properties": sheet.properties()}}


def _next_default_title(book: _Spreadsheet) -> str:
    number = len(book.sheets) + 1
    while book.titled(f"Sheet{number}"):
        number += 1
    return f"Sheet{number}"


def _check_title_free(book: _Spreadsheet, title: str) -> None:
    if book.titled(title):
        raise _Invalid(
            f'A sheet with the name "{title}" already exists. Please enter another name.'
        )


def _delete_sheet(book: _Spreadsheet, request: Mapping[str, Any]) -> dict[str, Any]:
    sheet = book.grid(request.get("sheetId", 0))
    if len(book.sheets) == 1:
        raise _Invalid("You can't remove all the sheets in a document.")
    book.sheets.remove(sheet)
    book.reindex()
    return {}


# The field mask paths updateSheetProperties applies: attribute, and default when the
# path is in the mask but not in the body (FieldMask semantics: reset to default).
_SHEET_FIELDS = {
    "title": ("title", ""),
    "index": ("index", 0),
    "hidden": ("hidden", False),
    "gridProperties.rowCount": ("row_count", 0),
    "gridProperties.columnCount": ("column_count", 0),
    "gridProperties.frozenRowCount": ("frozen_row_count", 0),
    "gridProperties.frozenColumnCount": ("frozen_column_count", 0),
}


def _update_sheet_properties(
    book: _Spreadsheet, request: Mapping[str, Any]
) -> dict[str, Any]:
    properties = request.get("properties", {})
    sheet = book.grid(properties.get("sheetId", 0))
    paths = set(expand_mask(request.get("fields", "")))
    if "*" in paths:
        paths = {
            path for path in _SHEET_FIELDS if _lookup(properties, path) is not None
        }
    if "gridProperties" in paths:
        paths |= {path for path in _SHEET_FIELDS if path.startswith("gridProperties.")}
    changes = {
        attribute: default if (value := _lookup(properties, path)) is None else value
        for path, (attribute, default) in _SHEET_FIELDS.items()
        if path in paths
    }

    title = changes.pop("title", sheet.title)
    if not title:
        raise _Invalid("A sheet's title must not be empty.")
    if title.casefold() != sheet.title.casefold():
        _check_title_free(book, title)
    sheet.title = title
    index = changes.pop("index", sheet.index)
    rows = changes.pop("row_count", sheet.row_count)
    columns = changes.pop("column_count", sheet.column_count)
    for attribute, value in changes.items():
        setattr(sheet, attribute, value)
    sheet.resize(rows, columns)
    _check_grid(sheet)

    book.sheets.remove(sheet)
    book.sheets.insert(index, sheet)
    book.reindex()
    return {}


def _check_grid(sheet: _Sheet) -> None:
    if sheet.row_count < 1 or sheet.column_count < 1:
        raise _Invalid("A sheet needs at least one row and one column.")
    if sheet.frozen_row_count >= sheet.row_count:
        raise _Invalid("You can't freeze all visible rows on the sheet.")
    if sheet.frozen_column_count >= sheet.column_count:
        raise _Invalid("You can't freeze all visible columns on the sheet.")


def _append_dimension(book: _Spreadsheet, request: Mapping[str, Any]) -> dict[str, Any]:
    sheet = book.grid(request.get("sheetId", 0))
    dimension, length = _dimension(request), request.get("length", 0)
    if length < 1:
        raise _Invalid("length must be at least 1.")
    sheet.shift(dimension, sheet.size(dimension), length)
    return {}


def _insert_dimension(book: _Spreadsheet, request: Mapping[str, Any]) -> dict[str, Any]:
    sheet, dimension, start, end = _dimension_range(book, request.get("range", {}))
    if start > sheet.size(dimension):
        raise _Invalid(_past_the_end(start, sheet, dimension))
    sheet.shift(dimension, start, end - start)
    return {}


def _delete_dimension(book: _Spreadsheet, request: Mapping[str, Any]) -> dict[str, Any]:
    sheet, dimension, start, end = _dimension_range(book, request.get("range", {}))
    if end > sheet.size(dimension):
        raise _Invalid(_past_the_end(end, sheet, dimension))
    if end - start >= sheet.size(dimension):
        raise _Invalid(f"You can't delete all the {dimension.lower()} on the sheet.")
    sheet.shift(dimension, start, start - end)
    sheet.frozen_row_count = min(sheet.frozen_row_count, sheet.row_count - 1)
    sheet.frozen_column_count = min(sheet.frozen_column_count, sheet.column_count - 1)
    return {}


def _dimension(request: Mapping[str, Any]) -> str:
    dimension = request.get("dimension", "DIMENSION_UNSPECIFIED")
    if dimension not in ("ROWS", "COLUMNS"):
        raise _Invalid(f"dimension must be ROWS or COLUMNS, not {dimension}.")
    return dimension


def _dimension_range(
    book: _Spreadsheet, span: Mapping[str, Any]
) -> tuple[_Sheet, str, int, int]:
    sheet = book.grid(span.get("sheetId", 0))
    start, end = span.get("startIndex", 0), span.get("endIndex", 0)
    if not 0 <= start < end:
        raise _Invalid(f"The range from {start} to {end} is empty.")
    return sheet, _dimension(span), start, end


def _record_only(book: _Spreadsheet, request: Mapping[str, Any]) -> dict[str, Any]:
    """A request the fake does not apply, whose sheets and ranges must still exist."""
    for part in _objects(request):
        if "sheetId" not in part:
            continue
        sheet = book.grid(part["sheetId"])
        if "dimension" in part:
            dimension, end = _dimension(part), part.get("endIndex", 0)
            if end > sheet.size(dimension):
                raise _Invalid(_past_the_end(end, sheet, dimension))
        rows = part.get("endRowIndex", sheet.row_count)
        columns = part.get("endColumnIndex", sheet.column_count)
        if rows > sheet.row_count or columns > sheet.column_count:
            first = (part.get("startRowIndex", 0), part.get("startColumnIndex", 0))
            text = format_a1(sheet.title, first, (rows - 1, columns - 1))
            raise _Invalid(_beyond_grid(text, sheet))
    return {}


_APPLIED: dict[str, Callable[[_Spreadsheet, Mapping[str, Any]], dict[str, Any]]] = {
    "addSheet": _add_sheet,
    "deleteSheet": _delete_sheet,
    "updateSheetProperties": _update_sheet_properties,
    "appendDimension": _append_dimension,
    "insertDimension": _insert_dimension,
    "deleteDimension": _delete_dimension,
}

# Requests that carry a field mask, and the schema whose fields the mask names.
_MASKED = {
    "updateSheetProperties": "SheetProperties",
    "updateSpreadsheetProperties": "SpreadsheetProperties",
    "updateDimensionProperties": "DimensionProperties",
    "repeatCell": "CellData",
    "updateCells": "CellData",
}


def expand_mask(mask: str) -> list[str]:
    """The paths of a field mask: ``a(b,c.d),e`` -> ["a.b", "a.c.d", "e"]."""
    paths: list[str] = []
    prefixes = [""]
    name = ""
    for character in mask + ",":
        if character not in ",()":
            name += character
            continue
        name = name.strip()
        if character == "(":
            prefixes.append(f"{prefixes[-1]}{name}.")
        elif name:
            paths.append(prefixes[-1] + name)
        if character == ")" and len(prefixes) > 1:
            prefixes.pop()
        name = ""
    return paths


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    for name in path.split("."):
        if not isinstance(data, Mapping) or name not in data:
            return None
        data = data[name]
    return data


def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def _beyond_grid(range_text: str, sheet: _Sheet) -> str:
    return (
        f"Range ({range_text}) exceeds grid limits. Max rows: {sheet.row_count}, "
        f"max columns: {sheet.column_count}"
    )


def _past_the_end(index: int, sheet: _Sheet, dimension: str) -> str:
    return (
        f"Index {index} is past the end of the {sheet.size(dimension)} "
        f"{dimension.lower()} of sheet {sheet.title!r}."
    )


def _too_many_cells() -> str:
    return (
        "This action would increase the number of cells in the workbook above the "
        f"limit of {MAX_CELLS} cells."
    )


# --- spreadsheets.values.batchUpdate --------------------------------------------------


def _resolve_range(book: _Spreadsheet, text: str) -> tuple[_Sheet, GridRange]:
    """The sheet and cells an A1 range names; a bare word is a title, else cells."""
    unparsable = ApiError(400, f"Unable to parse range: {text}")
    try:
        title, cells = split_a1(text)
    except ValueError:
        raise unparsable from None
    if title is None:
        sheet = book.titled(text)
        if sheet:
            return sheet, GridRange()
        title, cells = book.sheets[0].title, text

    sheet = book.titled(title)
    if sheet is None:
        raise unparsable
    if cells is None:
        return sheet, GridRange()
    try:
        return sheet, parse_cells(cells)
    except ValueError:
        raise unparsable from None


def _write_values(
    book: _Spreadsheet, item: Mapping[str, Any], position: int
) -> tuple[_Sheet, dict[str, Any]]:
    """Write one ValueRange; the sheet written and an UpdateValuesResponse."""
    sheet, span = _resolve_range(book, item["range"])
    rows = item.get("values", [])
    _check_cell_values(rows, position)
    if item.get("majorDimension") == "COLUMNS":
        height = max((len(column) for column in rows), default=0)
        rows = [[c[i] if i < len(c) else None for c in rows] for i in range(height)]
    height, width = len(rows), max((len(row) for row in rows), default=0)

    # The range must lie in the grid, then the values in the range and in the grid.
    last_row = (span.end_row or span.start_row + 1) - 1
    last_column = (span.end_column or span.start_column + 1) - 1
    if last_row >= sheet.row_count or last_column >= sheet.column_count:
        first = (span.start_row, span.start_column)
        text = format_a1(sheet.title, first, (last_row, last_column))
        raise ApiError(400, _beyond_grid(text, sheet))
    if span.end_row is not None and span.start_row + height > span.end_row:
        raise ApiError(400, _outside_range(item["range"], f"row [{span.end_row + 1}]"))
    if span.end_column is not None and span.start_column + width > span.end_column:
        letters = column_letters(span.end_column)
        raise ApiError(400, _outside_range(item["range"], f"column [{letters}]"))
    if span.start_row + height > sheet.row_count:
        cell = format_a1(sheet.title, (sheet.row_count, span.start_column))
        raise ApiError(400, _beyond_grid(cell, sheet))
    if span.start_column + width > sheet.column_count:
        cell = format_a1(sheet.title, (span.start_row, sheet.column_count))
        raise ApiError(400, _beyond_grid(cell, sheet))

    written = set()
    for row_offset, row in enumerate(rows):
        for column_offset, value in enumerate(row):
            if value is None:
                continue  # "Null values will be skipped" (ValueRange.values).
            key = (span.start_row + row_offset, span.start_column + column_offset)
            written.add(key)
            if value == "":
                sheet.cells.pop(key, None)
            else:
                sheet.cells[key] = value

    first = (span.start_row, span.start_column)
    last = (span.start_row + max(height, 1) - 1, span.start_column + max(width, 1) - 1)
    return sheet, {
        "spreadsheetId": book.spreadsheet_id,
        "updatedRange": format_a1(sheet.title, first, last),
        "updatedRows": len({row for row, _ in written}),
        "updatedColumns": len({column for _, column in written}),
        "updatedCells": len(written),
    }


def _check_cell_values(rows: Sequence[Any], position: int) -> None:
    for row_number, row in enumerate(rows):
        where = f"data[{position}].values[{row_number}]"
        if not isinstance(row, list):
            raise ApiError(400, f"Invalid {where}: a row must be a list")
        for column_number, value in enumerate(row):
            if isinstance(value, dict | list):
                kind = "an object" if isinstance(value, dict) else "an array"
                raise ApiError(
                    400,
                    f"Invalid {where}[{column_number}]: a cell holds a string, a number "
                    f"or a boolean, not {kind}",
                )
            if isinstance(value, str) and len(value) > MAX_CELL_CHARACTERS:
                raise ApiError(
                    400,
                    "Your input contains more than the maximum of "
                    f"{MAX_CELL_CHARACTERS} characters in a single cell.",
                )


def _outside_range(range_text: str, beyond: str) -> str:
    return (
        f"Requested writing within range [{range_text}], but tried writing to {beyond}"
    )


# --- what the fake knows and records --------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who a token was issued to: a service account (by email) or a user (by client id)."""

    kind: Literal["service_account", "user"]
    account: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class _ServiceAccount:
    key_id: str
    public_key: rsa.RSAPublicKey


@dataclass(frozen=True)
class _User:
    client_secret: str
    refresh_token: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class Call:
    """One exchange with the fake, in the order they arrived."""

    method: str
    path: str
    query: dict[str, list[str]]
    # The parsed JSON body, None without one; for /token only the grant_type.
    body: Any
    body_size: int
    status: int
    # The discovery method id, e.g. "sheets.spreadsheets.values.batchUpdate".
    api_method: str | None
    principal: Principal | None


@dataclass
class _Trace:
    """What the fake learns about a call while answering it, for its `Call`."""

    body: Any = None
    api_method: str | None = None
    principal: Principal | None = None


@dataclass
class _Fault:
    status: int
    times: int
    route: str | None
    retry_after: int | None
    message: str | None
    #: Matching calls still to let through before the fault starts.
    after: int = 0

    def matches(self, path: str, api_method: str | None) -> bool:
        if self.route is None:
            return api_method is not None
        return self.route == api_method or self.route in path


Params = dict[str, str]
_Route = Callable[[Principal, Params, Any], dict[str, Any]]
_NOT_JSON = object()


# --- HTTP -----------------------------------------------------------------------------


class _HTTPServer(LoopbackHTTPServer):
    def __init__(self, address: tuple[str, int], fake: FakeSheets) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    # A client that connects and then says nothing must not hold a thread forever.
    timeout = 30

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            reply = self.server.fake._exchange(
                self.command, self.path, self.headers.get("Authorization"), raw
            )
        except Exception as error:
            # A bug in the fake: say so in the answer rather than drop the connection.
            logger.exception("the fake failed on %s %s", self.command, self.path)
            reply = ApiError(500, f"the fake failed: {error!r}").reply("fake")

        body = json.dumps(reply.payload, ensure_ascii=False).encode()
        self.close_connection = True
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        # The request line holds path and query only; tokens travel in a header.
        logger.debug("%s " + format, self.address_string(), *args)


# --- the fake -------------------------------------------------------------------------


class FakeSheets:
    """Sheets v4, Drive v3 permissions.create and an OAuth token endpoint, on loopback.

    Use it as a context manager; `url` is ``http://127.0.0.1:PORT`` on a free port.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.calls: list[Call] = []
        self._address = (host, port)
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sheets_api = discovery.load("sheets.v4")
        self._drive_api = discovery.load("drive.v3")
        self._spreadsheets: dict[str, _Spreadsheet] = {}
        self._permissions: dict[str, list[dict[str, Any]]] = {}
        self._service_accounts: dict[str, _ServiceAccount] = {}
        self._users: dict[str, _User] = {}
        self._tokens: dict[str, Principal] = {}
        self._faults: list[_Fault] = []
        self._routes: dict[str, _Route] = {
            "sheets.spreadsheets.get": self._get_spreadsheet,
            "sheets.spreadsheets.create": self._create_spreadsheet,
            "sheets.spreadsheets.batchUpdate": self._batch_update,
            "sheets.spreadsheets.values.batchUpdate": self._batch_update_values,
            "drive.permissions.create": self._create_permission,
        }

    # --- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def start(self) -> FakeSheets:
        self._server = _HTTPServer(self._address, self)
        # A short poll, so that stop() returns at once rather than in half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-sheets",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeSheets:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- state for tests --------------------------------------------------------------

    def add_spreadsheet(
        self, title: str, sheets: Sequence[str | Mapping[str, Any]] = ("Sheet1",)
    ) -> str:
        """Add a spreadsheet and answer its id; each sheet is a title or SheetProperties.

        The first sheet gets sheetId 0 unless it names another, like a new spreadsheet.
        """
        book = _Spreadsheet(secrets.token_urlsafe(33), title)
        for sheet in sheets:
            properties = {"title": sheet} if isinstance(sheet, str) else dict(sheet)
            if not book.sheets:
                properties.setdefault("sheetId", 0)
            errors = self._sheets_api.validate("SheetProperties", properties)
            if errors:
                raise ValueError("; ".join(errors))
            try:
                _add_sheet(book, {"properties": properties})
            except _Invalid as error:
                raise ValueError(str(error)) from None

        with self._lock:
            self._spreadsheets[book.spreadsheet_id] = book
        return book.spreadsheet_id

    def spreadsheet(self, spreadsheet_id: str) -> dict[str, Any]:
        """The spreadsheet resource, as ``GET /v4/spreadsheets/{id}`` answers it."""
        with self._lock:
            return self._spreadsheets[spreadsheet_id].resource()

    def values(self, spreadsheet_id: str, title: str) -> list[list[Any]]:
        """A tab's values as rows of what was sent, without trailing empty cells."""
        with self._lock:
            sheet = self._spreadsheets[spreadsheet_id].titled(title)
            if sheet is None:
                raise KeyError(f"spreadsheet {spreadsheet_id} has no sheet {title!r}")
            cells = dict(sheet.cells)

        height = max((row for row, _ in cells), default=-1) + 1
        rows: list[list[Any]] = [[] for _ in range(height)]
        for (row, column), value in sorted(cells.items()):
            rows[row].extend([""] * (column - len(rows[row])))
            rows[row].append(value)
        return rows

    def permissions(self, file_id: str) -> list[dict[str, Any]]:
        """The permissions created on a file: each the request body plus its new id."""
        with self._lock:
            return [
                dict(permission) for permission in self._permissions.get(file_id, [])
            ]

    def calls_to(self, route: str) -> list[Call]:
        """The calls to discovery method `route`, or whose path contains `route`."""
        with self._lock:
            return [
                call
                for call in self.calls
                if route == call.api_method or route in call.path
            ]

    def fail(
        self,
        status: int,
        times: int = 1,
        route: str | None = None,
        retry_after: int | None = None,
        message: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer `status` to the next `times` matching calls, applying nothing.

        `route` is a discovery method id (``sheets.spreadsheets.batchUpdate``) or part of
        the path (``values:batchUpdate``, ``/token``); None matches every API call but
        none to the token endpoint. `retry_after` (seconds) goes in a Retry-After header.
        `after` lets that many matching calls through first.
        """
        with self._lock:
            self._faults.append(
                _Fault(status, times, route, retry_after, message, after)
            )

    def revoke_tokens(self) -> None:
        """Forget every access token issued, as when they expire early or are revoked."""
        with self._lock:
            self._tokens.clear()

    def service_account_key(
        self,
        path: str | Path,
        client_email: str = "peachdw-export@peachdw-test.iam.gserviceaccount.com",
    ) -> Path:
        """Write a service-account key file whose token_uri is the fake's; its path."""
        key = _rsa_key()
        key_id = secrets.token_hex(20)
        info = {
            "type": "service_account",
            "project_id": "peachdw-test",
            "private_key_id": key_id,
            "private_key": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "client_email": client_email,
            "client_id": str(10**20 + zlib.crc32(client_email.encode())),
            "token_uri": self.token_url,
        }

        with self._lock:
            self._service_accounts[client_email] = _ServiceAccount(
                key_id, key.public_key()
            )
        return _write_json(Path(path), info)

    def authorized_user(
        self, path: str | Path, scopes: Iterable[str] = DEFAULT_SCOPES
    ) -> Path:
        """Write an authorized-user file: a user's refresh token, granted `scopes`."""
        info = {
            "type": "authorized_user",
            "client_id": f"{secrets.randbelow(10**12)}-fake.apps.googleusercontent.com",
            "client_secret": "GOCSPX-" + secrets.token_urlsafe(21),
            "refresh_token": "1//" + secrets.token_urlsafe(60),
            "token_uri": self.token_url,
        }

        with self._lock:
            self._users[info["client_id"]] = _User(
                info["client_secret"], info["refresh_token"], frozenset(scopes)
            )
        return _write_json(Path(path), info)

    # --- one exchange -----------------------------------------------------------------

    def _exchange(
        self, method: str, target: str, authorization: str | None, raw: bytes
    ) -> _Reply:
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        trace = _Trace()

        with self._lock:
            if url.path == "/token" and method == "POST":
                reply = self._token(raw, trace)
            else:
                reply = self._api(method, url.path, query, authorization, raw, trace)
            self.calls.append(
                Call(
                    method=method,
                    path=unquote(url.path),
                    query=query,
                    body=trace.body,
                    body_size=len(raw),
                    status=reply.status,
                    api_method=trace.api_method,
                    principal=trace.principal,
                )
            )
        return reply

    def _api(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        authorization: str | None,
        raw: bytes,
        trace: _Trace,
    ) -> _Reply:
        body = _parse_json(raw)
        trace.body = None if body is _NOT_JSON else body
        found = self._route(method, path)
        if found is None:
            message = (
                f"{method} {path} is not a call the fake serves; it serves "
                f"{', '.join(sorted(self._routes))} and POST /token"
            )
            return ApiError(404, message).reply("fake")
        api, api_method, params = found
        trace.api_method = api_method.id

        try:
            trace.principal = principal = self._principal(authorization)
            self._take_fault(path, api_method.id, method)
            if not principal.scopes & set(api_method.scopes):
                raise ApiError(
                    403,
                    "Request had insufficient authentication scopes.",
                    reason="ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                )
            if body is _NOT_JSON:
                raise ApiError(400, "Invalid JSON payload received.")
            errors = api.validate_query(api_method.id, query)
            errors += api.validate_request(api_method.id, body)
            if errors:
                raise ApiError(
                    400, "Invalid JSON payload received. " + "; ".join(errors)
                )
            payload = self._routes[api_method.id](principal, params, body)
        except ApiError as error:
            return error.reply(api.name)
        return _Reply(200, payload)

    def _route(
        self, method: str, path: str
    ) -> tuple[discovery.Discovery, discovery.Method, Params] | None:
        for api in (self._sheets_api, self._drive_api):
            found = api.match(method, path)
            if found and found[0].id in self._routes:
                api_method, values = found
                params = {name: unquote(value) for name, value in values.items()}
                return api, api_method, params
        return None

    def _principal(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, _MISSING_CREDENTIALS, headers=_CHALLENGE)
        principal = self._tokens.get(token.strip())
        if principal is None:
            raise ApiError(401, headers=_CHALLENGE)
        return principal

    def _take_fault(self, path: str, api_method: str | None, method: str) -> None:
        fault = next(
            (f for f in self._faults if f.times > 0 and f.matches(path, api_method)),
            None,
        )
        if fault is None:
            return
        if fault.after:
            fault.after -= 1
            return
        fault.times -= 1
        self._faults = [f for f in self._faults if f.times > 0]

        message = fault.message
        if message is None and fault.status == 429:
            service = "drive" if path.startswith("/drive/") else "sheets"
            message = _QUOTA_EXCEEDED.format(
                kind="Read" if method == "GET" else "Write",
                service=f"{service}.googleapis.com",
            )
        if api_method is None:
            # RFC 6749 error codes; google-auth retries temporarily_unavailable itself.
            transient = fault.status == 429 or fault.status >= 500
            code = "temporarily_unavailable" if transient else "invalid_grant"
            raise _OAuthError(code, message or "refused on cue", fault.status)
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        reason = "RATE_LIMIT_EXCEEDED" if fault.status == 429 else None
        raise ApiError(fault.status, message, reason=reason, headers=headers)

    # --- the token endpoint -----------------------------------------------------------

    def _token(self, raw: bytes, trace: _Trace) -> _Reply:
        form = {
            name: values[0]
            for name, values in parse_qs(raw.decode(errors="replace")).items()
        }
        # The grant's secrets stay out of the record.
        trace.body = {"grant_type": form.get("grant_type")}

        try:
            self._take_fault("/token", None, "POST")
            grant = form.get("grant_type")
            if grant == JWT_GRANT:
                principal = self._verify_assertion(form.get("assertion", ""))
            elif grant == "refresh_token":
                principal = self._verify_refresh(form)
            else:
                raise _OAuthError(
                    "unsupported_grant_type", f"Invalid grant_type: {grant}"
                )
        except _OAuthError as error:
            return error.reply()

        token = "ya29.fake-" + secrets.token_urlsafe(32)
        self._tokens[token] = principal
        trace.principal = principal
        return _Reply(
            200,
            {
                "access_token": token,
                "expires_in": 3600,
                "scope": " ".join(sorted(principal.scopes)),
                "token_type": "Bearer",
            },
        )

    def _verify_assertion(self, assertion: str) -> Principal:
        """RFC 7523: a JWT signed RS256 by a key the fake wrote, asking for Sheets."""
        try:
            header_part, claims_part, signature_part = assertion.split(".")
            header = json.loads(_b64decode(header_part))
            claims = json.loads(_b64decode(claims_part))
            signature = _b64decode(signature_part)
        except ValueError:
            raise _OAuthError(
                "invalid_grant", "Invalid JWT: malformed assertion."
            ) from None

        account = self._service_accounts.get(claims.get("iss"))
        if account is None:
            raise _OAuthError("invalid_grant", "Invalid grant: account not found")
        if header.get("alg") != "RS256" or header.get("kid") != account.key_id:
            raise _OAuthError("invalid_grant", "Invalid JWT Signature.")
        try:
            account.public_key.verify(
                signature,
                f"{header_part}.{claims_part}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise _OAuthError("invalid_grant", "Invalid JWT Signature.") from None

        # google-auth names Google's token URL in aud wherever it posts the assertion.
        if claims.get("aud") not in (GOOGLE_TOKEN_URL, self.token_url):
            raise _OAuthError("invalid_grant", "Invalid JWT: Failed audience check.")
        now, issued, expires = time.time(), claims.get("iat", 0), claims.get("exp", 0)
        if not (issued - 300 <= now < expires and expires - issued <= 3600):
            raise _OAuthError(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        scopes = frozenset(claims.get("scope", "").split())
        if SPREADSHEETS_SCOPE not in scopes:
            raise _OAuthError(
                "invalid_scope",
                f"The assertion asks for {' '.join(sorted(scopes)) or 'no scope'}, "
                f"not {SPREADSHEETS_SCOPE}.",
            )

        return Principal("service_account", claims["iss"], scopes)

    def _verify_refresh(self, form: Mapping[str, str]) -> Principal:
        """RFC 6749, section 6: a registered client's refresh token."""
        user = self._users.get(form.get("client_id", ""))
        if user is None or not secrets.compare_digest(
            user.client_secret, form.get("client_secret", "")
        ):
            raise _OAuthError("invalid_client", "The OAuth client was not found.", 401)
        if not secrets.compare_digest(
            user.refresh_token, form.get("refresh_token", "")
        ):
            raise _OAuthError("invalid_grant", "Token has been expired or revoked.")

        # A refresh may narrow the scopes granted, never widen them.
        scopes = frozenset(form.get("scope", "").split()) or user.scopes
        if not scopes <= user.scopes:
            raise _OAuthError("invalid_scope", "Bad Request")
        return Principal("user", form["client_id"], scopes)

    # --- the routes -------------------------------------------------------------------

    def _book(self, spreadsheet_id: str) -> _Spreadsheet:
        book = self._spreadsheets.get(spreadsheet_id)
        if book is None:
            raise ApiError(404)
        return book

    def _get_spreadsheet(
        self, principal: Principal, params: Params, body: Any
    ) -> dict[str, Any]:
        return self._book(params["spreadsheetId"]).resource()

    def _create_spreadsheet(
        self, principal: Principal, params: Params, body: Any
    ) -> dict[str, Any]:
        # A service account has no Drive storage of its own (since 2025), so it cannot
        # own a new file. Through the Sheets API the refusal is a plain 403; Drive's
        # files.create says "The user's Drive storage quota has been exceeded." instead.
        if principal.kind == "service_account":
            raise ApiError(403)

        title = body.get("properties", {}).get("title") or "Untitled spreadsheet"
        book = _Spreadsheet(secrets.token_urlsafe(33), title)
        sheets = body.get("sheets") or [
            {"properties": {"title": "Sheet1", "sheetId": 0}}
        ]
        for position, sheet in enumerate(sheets):
            try:
                _add_sheet(book, {"properties": sheet.get("properties", {})})
            except _Invalid as error:
                raise ApiError(400, f"Invalid sheets[{position}]: {error}") from None
        if book.total_cells() > MAX_CELLS:
            raise ApiError(400, _too_many_cells())

        self._spreadsheets[book.spreadsheet_id] = book
        return book.resource()

    def _batch_update(
        self, principal: Principal, params: Params, body: Any
    ) -> dict[str, Any]:
        # All or nothing: the requests change a copy, which replaces the book at the end.
        spreadsheet_id = params["spreadsheetId"]
        book = self._book(spreadsheet_id).copy()

        replies = []
        for position, request in enumerate(body.get("requests", [])):
            if len(request) != 1:
                kinds = ", ".join(request) or "none"
                raise ApiError(
                    400,
                    f"Invalid requests[{position}]: one kind of request each, not {kinds}",
                )
            ((kind, payload),) = request.items()
            try:
                self._check_mask(kind, payload)
                replies.append(_APPLIED.get(kind, _record_only)(book, payload))
                if book.total_cells() > MAX_CELLS:
                    raise _Invalid(_too_many_cells())
            except _Invalid as error:
                raise ApiError(
                    400, f"Invalid requests[{position}].{kind}: {error}"
                ) from None

        self._spreadsheets[spreadsheet_id] = book
        answer = {"spreadsheetId": spreadsheet_id, "replies": replies}
        if body.get("includeSpreadsheetInResponse"):
            answer["updatedSpreadsheet"] = book.resource()
        return answer

    def _check_mask(self, kind: str, request: Mapping[str, Any]) -> None:
        schema = _MASKED.get(kind)
        if schema is None:
            return
        paths = expand_mask(request.get("fields", ""))
        if not paths:
            raise _Invalid(
                "At least one field must be updated, but you specified an empty field mask."
            )
        for path in paths:
            if not self._sheets_api.has_field(schema, path):
                raise _Invalid(
                    f"'{path}' in the field mask is not a field of {schema}."
                )

    def _batch_update_values(
        self, principal: Principal, params: Params, body: Any
    ) -> dict[str, Any]:
        spreadsheet_id = params["spreadsheetId"]
        option = body.get("valueInputOption", "INPUT_VALUE_OPTION_UNSPECIFIED")
        if option == "INPUT_VALUE_OPTION_UNSPECIFIED":
            raise ApiError(400, f"Invalid valueInputOption: {option}")
        # All or nothing, as for spreadsheets.batchUpdate.
        book = self._book(spreadsheet_id).copy()

        sheets_written, responses = set(), []
        for position, item in enumerate(body.get("data", [])):
            sheet, response = _write_values(book, item, position)
            if response["updatedCells"]:
                sheets_written.add(sheet.sheet_id)
            responses.append(response)

        self._spreadsheets[spreadsheet_id] = book
        return {
            "spreadsheetId": spreadsheet_id,
            "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
            "totalUpdatedColumns": sum(r["updatedColumns"] for r in responses),
            "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
            "totalUpdatedSheets": len(sheets_written),
            "responses": responses,
        }

    def _create_permission(
        self, principal: Principal, params: Params, body: Any
    ) -> dict[str, Any]:
        file_id = params["fileId"]
        if file_id not in self._spreadsheets:
            raise ApiError(404, f"File not found: {file_id}.", reason="notFound")
        kind, role = body["type"], body["role"]
        if kind not in ("user", "group", "domain", "anyone"):
            raise ApiError(400, f"The permission type field value {kind!r} is invalid.")
        if role not in _ROLES:
            raise ApiError(400, f"The permission role field value {role!r} is invalid.")
        if kind in ("user", "group") and not body.get("emailAddress"):
            raise ApiError(400, "The permission emailAddress field is required.")
        if kind == "domain" and not body.get("domain"):
            raise ApiError(400, "The permission domain field is required.")

        permission = {"id": secrets.token_hex(10), **body}
        self._permissions.setdefault(file_id, []).append(permission)
        return {
            "kind": "drive#permission",
            "id": permission["id"],
            "type": kind,
            "role": role,
        }


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        # JSON has no NaN or Infinity, which Python's parser would take.
        return json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        return _NOT_JSON


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


@functools.cache
def _rsa_key() -> rsa.RSAPrivateKey:
    # One key for every service account of the session: making one takes 60 ms or so.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _write_json(path: Path, info: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return path


# --- pytest fixtures ------------------------------------------------------------------

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class NetworkRefused(RuntimeError):
    """A test sent an HTTP request to a host other than loopback."""


@pytest.fixture
def no_google_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse every requests call that would leave the machine, naming its URL.

    Yields the refused URLs. A test that expects a refusal clears the list; any left at
    the end fail the test, in case the code under test swallowed the error.
    """
    refused: list[str] = []
    send = requests.adapters.HTTPAdapter.send

    def guarded_send(adapter, request, *args, **kwargs):
        if urlsplit(request.url).hostname not in _LOOPBACK:
            refused.append(request.url)
            raise NetworkRefused(
                f"{request.method} {request.url} would leave the machine; "
                "point the client at the fake instead"
            )
        return send(adapter, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", guarded_send)
    yield refused
    if refused:
        pytest.fail(f"requests to real hosts were refused: {', '.join(refused)}")


@pytest.fixture
def fake_google(no_google_network: list[str]) -> Iterator[FakeSheets]:
    """A running `FakeSheets`, with every other host refused."""
    with FakeSheets() as fake:
        yield fake
