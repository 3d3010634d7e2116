"""The report as a Google Sheet: one tab per report tab, swapped in whole.

gspread signs in and carries the requests; the request bodies are built here, so what is
sent is known call by call:

1. read the spreadsheet (its tabs and their grid sizes);
2. one structural `batchUpdate`: a fresh tab per report tab, named "<Tab> (writing)",
   sized to its rows and columns, with a bold frozen header, a filter and number formats;
3. the values, `valueInputOption=RAW` so text stays text (a name starting with `=` is
   not a formula), in `values:batchUpdate` calls of under 2 MB each;
4. one `batchUpdate` that deletes the previous report's tabs and renames the fresh ones,
   so readers see the old report or the new one, never a mix or a half-written tab;
5. a Drive permission per address in `sheets.share_with`.

A 429 answer waits as Google asks (bounded by `sheets.max_retry_wait`) and retries; when
the quota stays exhausted the export fails, names the tabs whose values were not written
and leaves the previous report in place.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from peachdw.config import SheetsSettings
from peachdw.errors import ConfigError, ExportError
from peachdw.report import Tab
from peachdw.xlsx import fit_text

log = logging.getLogger(__name__)

#: Google's limit on the cells of one spreadsheet, over all its tabs.
MAX_CELLS = 10_000_000
#: Google's limit on the text of one cell.
MAX_CELL_CHARACTERS = 50_000
#: Size of the values sent in one call; Google advises keeping a request under 2 MB.
CHUNK_BYTES = 1_900_000
WRITING_SUFFIX = " (writing)"
#: Seconds to connect and to wait for an answer to one call.
REQUEST_TIMEOUT = (10, 120)
SCOPES = (
    "https://www.googleapis.com/auth/spreadsheets",
    "https://www.googleapis.com/auth/drive",
)
SETUP_STEPS = (
    "No Google credentials: set sheets.credentials in config/settings.yaml (or "
    "PEACHDW_SHEETS_CREDENTIALS) to a service-account key file, share the spreadsheet "
    "with the account's email as an editor and give its id (--spreadsheet-id or "
    "sheets.spreadsheet_id); steps in docs/exports.md, 'Google Sheets'."
)
CREATE_STEPS = (
    "No Google credentials: creating a spreadsheet by title needs your own Google "
    "account's authorized-user file (a service account cannot create files); set "
    "sheets.credentials in config/settings.yaml (or PEACHDW_SHEETS_CREDENTIALS) to it. "
    "Steps in docs/exports.md, 'Google Sheets'."
)
# Sheets counts days from 1899-12-30, as Excel does.
_SERIAL_EPOCH = date(1899, 12, 30).toordinal()
_NUMBER_FORMATS = {
    "id": ("NUMBER", "0"),
    "int": ("NUMBER", "#,##0"),
    "date": ("DATE", "yyyy-mm-dd"),
    "rate": ("PERCENT", "0.00%"),
    "ratio": ("NUMBER", "0.00"),
    "confidence": ("NUMBER", "0.00"),
}


@dataclass(frozen=True)
class Credentials:
    path: Path
    kind: str  # "service_account" or "authorized_user"
    info: dict[str, Any]

    @property
    def email(self) -> str | None:
        return self.info.get("client_email")


def load_credentials(path: Path | None, *, create: bool = False) -> Credentials:
    """Read and check a credentials file; ConfigError (exit 2) says what to fix."""
    if path is None:
        raise ConfigError(
            CREATE_STEPS if create else SETUP_STEPS, key="sheets.credentials"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"Cannot read Google credentials {path}: {exc.strerror or exc}. "
            "Check sheets.credentials.",
            key="sheets.credentials",
        ) from exc
    except ValueError as exc:
        raise ConfigError(
            f"Google credentials {path} are not JSON; download the key file again.",
            key="sheets.credentials",
        ) from exc
    kind = info.get("type") if isinstance(info, dict) else None
    if kind not in ("service_account", "authorized_user"):
        raise ConfigError(
            f"Google credentials {path} are neither a service-account key nor an "
            "authorized-user file (their 'type' field); see docs/exports.md.",
            key="sheets.credentials",
        )
    return Credentials(path, kind, info)


def describe_target(spreadsheet_id: str | None, title: str) -> str:
    """Where a Sheets export goes, as people and export_history read it."""
    if spreadsheet_id:
        return f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}"
    return f"a new spreadsheet titled {title!r}"


class QuotaExhaustedError(ExportError):
    """Google kept answering 429 beyond what the settings allow to wait."""


class SheetsWriter:
    """Writes the tabs into a spreadsheet by id, or into a new one by title."""

    def __init__(
        self,
        settings: SheetsSettings,
        credentials: Credentials,
        *,
        spreadsheet_id: str | None,
        title: str,
        create: bool,
        sleep: Callable[[float], None] | None = None,
    ):
        self.settings = settings
        self.credentials = credentials
        self.spreadsheet_id = spreadsheet_id
        self.title = title
        self.create = create
        self.sleep = sleep or time.sleep
        self.calls = 0
        self.warnings: list[str] = []
        self._client: Any = None

    @classmethod
    def from_settings(
        cls,
        settings: SheetsSettings,
        *,
        spreadsheet_id: str | None,
        title: str,
        create: bool,
    ) -> SheetsWriter:
        """Check everything that needs no network: credentials and a target."""
        credentials = load_credentials(settings.credentials, create=create)
        spreadsheet_id = spreadsheet_id or (None if create else settings.spreadsheet_id)
        if create and credentials.kind == "service_account":
            raise ConfigError(
                "A service account cannot create spreadsheets: create one by hand, "
                f"share it with {credentials.email} as an editor and pass its id "
                "with --spreadsheet-id (or set sheets.spreadsheet_id).",
                key="sheets.spreadsheet_id",
            )
        if not create and not spreadsheet_id:
            raise ConfigError(
                "No spreadsheet to write into: pass --spreadsheet-id or set "
                "sheets.spreadsheet_id (the id between /d/ and /edit in its address)"
                + (
                    ", or --spreadsheet-title to create one."
                    if credentials.kind == "authorized_user"
                    else "."
                ),
                key="sheets.spreadsheet_id",
            )
        return cls(
            settings,
            credentials,
            spreadsheet_id=spreadsheet_id,
            title=title,
            create=create,
        )

    @property
    def target(self) -> str:
        return describe_target(self.spreadsheet_id, self.title)

    # -- the export ------------------------------------------------------------------

    def write(self, tabs: list[Tab]) -> None:
        cells = sum(_grid(tab)[0] * _grid(tab)[1] for tab in tabs)
        if cells > MAX_CELLS:
            raise ExportError(
                f"The report needs {cells:,} cells; a Google spreadsheet holds at most "
                f"{MAX_CELLS:,}. Export a shorter period or fewer tabs (--tab), or "
                "use --format xlsx."
            )

        fresh: dict[str, int] = {}
        try:
            if self.create:
                created = self._call(
                    "post",
                    self._sheets_url(""),
                    json={"properties": {"title": self.title}},
                )
                self.spreadsheet_id = created["spreadsheetId"]
                log.info("Created spreadsheet %s", self.target)
            existing, stale = self._existing(cells)
            taken = {s["properties"]["sheetId"] for s in existing}
            fresh = self._add_tabs(tabs, stale, taken)
            for chunk in _chunks(tabs, fresh):
                self._call(
                    "post",
                    self._sheets_url(f"/{self.spreadsheet_id}/values:batchUpdate"),
                    json={"valueInputOption": "RAW", "data": chunk},
                )
            self._swap(tabs, fresh, existing, stale)
        except ExportError as exc:
            # Fresh tabs take the report's names only in the swap, its last request:
            # until it succeeds, readers see the previous report and none of the new.
            if fresh:
                self._discard(fresh)
            raise type(exc)(
                f"{exc} Tabs not written: {', '.join(tab.name for tab in tabs)}. The "
                "spreadsheet keeps its previous report; run the export again later."
            ) from exc

        for email in self.settings.share_with:
            try:
                self._share(email)
            except ExportError as exc:
                # The report is whole; only the invitation is missing.
                message = (
                    f"The report was written but not shared with {email}: {exc} "
                    "Share the spreadsheet by hand, or run the export again."
                )
                self.warnings.append(message)
                log.warning(message)

    def _existing(
        self, cells: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The spreadsheet's tabs and the leftovers of a failed run, checked for room."""
        existing = self._call(
            "get",
            self._sheets_url(f"/{self.spreadsheet_id}"),
            params={"fields": "sheets.properties"},
        )["sheets"]
        stale = [
            s["properties"]
            for s in existing
            if s["properties"]["title"].endswith(WRITING_SUFFIX)
        ]
        kept = sum(
            _cells(s["properties"]) for s in existing if s["properties"] not in stale
        )
        if kept + cells > MAX_CELLS:
            raise ExportError(
                f"Spreadsheet {self.spreadsheet_id} holds {kept:,} cells and the report "
                f"needs {cells:,} more while it is written, above Google's limit of "
                f"{MAX_CELLS:,}. Remove tabs you do not need or write into another "
                "spreadsheet."
            )
        return existing, stale

    def _add_tabs(
        self, tabs: list[Tab], stale: list[dict[str, Any]], taken: set[int]
    ) -> dict[str, int]:
        """One structural request: drop leftovers of a failed run, add the fresh tabs."""
        requests: list[dict[str, Any]] = [
            {"deleteSheet": {"sheetId": props["sheetId"]}} for props in stale
        ]
        fresh: dict[str, int] = {}
        for tab in tabs:
            sheet_id = _free_id(taken)
            taken.add(sheet_id)
            fresh[tab.name] = sheet_id
            requests.extend(_tab_requests(tab, sheet_id))
        self._call(
            "post",
            self._sheets_url(f"/{self.spreadsheet_id}:batchUpdate"),
            json={"requests": requests},
        )
        return fresh

    def _swap(
        self,
        tabs: list[Tab],
        fresh: dict[str, int],
        existing: list[dict[str, Any]],
        stale: list[dict[str, Any]],
    ) -> None:
        """Replace the previous report's tabs by the fresh ones in one request."""
        # Sheets compares tab titles without regard to case.
        names = {tab.name.casefold() for tab in tabs}
        stale_ids = {props["sheetId"] for props in stale}
        requests: list[dict[str, Any]] = []
        for sheet in existing:
            props = sheet["properties"]
            replaced = props["title"].casefold() in names
            # A new spreadsheet's empty first tab goes too.
            placeholder = self.create and len(existing) == 1
            if props["sheetId"] not in stale_ids and (replaced or placeholder):
                requests.append({"deleteSheet": {"sheetId": props["sheetId"]}})
        for index, tab in enumerate(tabs):
            requests.append(
                {
                    "updateSheetProperties": {
                        "properties": {
                            "sheetId": fresh[tab.name],
                            "title": tab.name,
                            "index": index,
                        },
                        "fields": "title,index",
                    }
                }
            )
        self._call(
            "post",
            self._sheets_url(f"/{self.spreadsheet_id}:batchUpdate"),
            json={"requests": requests},
        )

    def _discard(self, fresh: dict[str, int]) -> None:
        """Remove the half-written tabs; if that fails too, the next run does."""
        try:
            self._call(
                "post",
                self._sheets_url(f"/{self.spreadsheet_id}:batchUpdate"),
                json={
                    "requests": [
                        {"deleteSheet": {"sheetId": sheet_id}}
                        for sheet_id in fresh.values()
                    ]
                },
                retry=False,
            )
        except ExportError as exc:
            log.warning("Could not remove the unfinished tabs yet: %s", exc)

    def _share(self, email: str) -> None:
        self._call(
            "post",
            f"{self.settings.drive_url}/files/{self.spreadsheet_id}/permissions",
            params={"sendNotificationEmail": "false", "supportsAllDrives": "true"},
            json={"type": "user", "role": "writer", "emailAddress": email},
        )
        log.info("Shared the spreadsheet with %s", email)

    # -- transport -------------------------------------------------------------------

    def _sheets_url(self, path: str) -> str:
        return f"{self.settings.api_url}/spreadsheets{path}"

    def _session(self) -> Any:
        if self._client is None:
            import gspread
            from google.oauth2 import credentials as user_credentials
            from google.oauth2 import service_account

            info = self.credentials.info
            try:
                if self.credentials.kind == "service_account":
                    auth = service_account.Credentials.from_service_account_info(
                        info, scopes=SCOPES
                    )
                else:
                    auth = user_credentials.Credentials.from_authorized_user_info(
                        info, scopes=SCOPES
                    )
                    # google-auth would use Google's own address whatever the file says.
                    if info.get("token_uri"):
                        auth = auth.with_token_uri(info["token_uri"])
            except (ValueError, KeyError) as exc:
                # The library's text may point at its FAQ; the first sentence is enough.
                reason = _first_line(exc).split(". See ")[0]
                raise ConfigError(
                    f"Google credentials {self.credentials.path} are incomplete or "
                    f"damaged ({reason}); download the file again.",
                    key="sheets.credentials",
                ) from None
            self._client = gspread.Client(auth)
            self._client.http_client.set_timeout(REQUEST_TIMEOUT)
        return self._client.http_client

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        retry: bool = True,
    ) -> dict[str, Any]:
        """One API call; 429 answers are waited out as asked, within the settings."""
        from google.auth.exceptions import GoogleAuthError, TransportError
        from gspread.exceptions import APIError
        from requests import RequestException

        session = self._session()
        waits = 0
        while True:
            self.calls += 1
            try:
                return session.request(method, url, params=params, json=json).json()
            except APIError as exc:
                status = exc.response.status_code
                if status == 429 and retry:
                    wait = self._wait(exc.response, waits)
                    waits += 1
                    log.warning(
                        "Google Sheets quota exhausted; waiting %.0f s (%d of %d).",
                        wait,
                        waits,
                        self.settings.max_rate_limit_retries,
                    )
                    self.sleep(wait)
                    continue
                raise self._explain(status, exc) from None
            except TransportError as exc:
                raise ExportError(
                    f"Cannot reach Google to sign in: {_first_line(exc)}. "
                    "Check the network and run the export again."
                ) from None
            except GoogleAuthError as exc:
                raise ExportError(
                    f"Google refused the credentials in {self.credentials.path}: "
                    f"{_first_line(exc)}. Check the file: download a new key for a "
                    "service account, or sign in again for your own account."
                ) from None
            except RequestException as exc:
                raise ExportError(
                    f"Cannot reach Google Sheets: {_first_line(exc)}. "
                    "Check the network and run the export again."
                ) from None

    def _wait(self, response: Any, waits: int) -> float:
        limit = self.settings.max_retry_wait
        if waits >= self.settings.max_rate_limit_retries:
            raise QuotaExhaustedError(
                f"Google Sheets kept answering 429 (quota exhausted) after {waits} "
                "waits."
            )
        asked = response.headers.get("Retry-After", "")
        wait = float(asked) if asked.replace(".", "", 1).isdigit() else 2.0**waits
        if wait > limit:
            raise QuotaExhaustedError(
                f"Google Sheets asked to wait {wait:.0f} s, longer than "
                f"sheets.max_retry_wait ({limit:.0f} s)."
            )
        return wait

    def _explain(self, status: int, exc: Any) -> ExportError:
        message = _google_message(exc)
        if status in (401, 403):
            who = self.credentials.email or "the signed-in user"
            return ExportError(
                f"Google refused access to spreadsheet {self.spreadsheet_id} "
                f"({status}: {message}). Share it with {who} as an editor."
            )
        if status == 404:
            return ExportError(
                f"Spreadsheet {self.spreadsheet_id} was not found (404). Check "
                "--spreadsheet-id or sheets.spreadsheet_id (the id in its address)."
            )
        return ExportError(f"Google Sheets refused the request ({status}: {message}).")


def _google_message(exc: Any) -> str:
    try:
        return exc.response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return exc.response.reason or "no reason given"


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _grid(tab: Tab) -> tuple[int, int]:
    """Rows and columns of a tab's grid: its header and rows."""
    return len(tab.rows) + 1, len(tab.header)


def _cells(props: dict[str, Any]) -> int:
    grid = props.get("gridProperties", {})
    return grid.get("rowCount", 0) * grid.get("columnCount", 0)


def _free_id(taken: set[int]) -> int:
    """A sheet id unlikely to be in use: ids are per spreadsheet, chosen by the caller."""
    candidate = int(time.time() * 1000) % 2_000_000_000
    while candidate in taken:
        candidate += 1
    return candidate


def _tab_requests(tab: Tab, sheet_id: int) -> list[dict[str, Any]]:
    rows, columns = _grid(tab)
    requests: list[dict[str, Any]] = [
        {
            "addSheet": {
                "properties": {
                    "sheetId": sheet_id,
                    "title": tab.name + WRITING_SUFFIX,
                    "gridProperties": {
                        "rowCount": rows,
                        "columnCount": columns,
                        "frozenRowCount": 1,
                    },
                }
            }
        },
        {
            "repeatCell": {
                "range": {"sheetId": sheet_id, "startRowIndex": 0, "endRowIndex": 1},
                "cell": {"userEnteredFormat": {"textFormat": {"bold": True}}},
                "fields": "userEnteredFormat.textFormat.bold",
            }
        },
        {
            "setBasicFilter": {
                "filter": {
                    "range": {
                        "sheetId": sheet_id,
                        "startRowIndex": 0,
                        "endRowIndex": rows,
                        "startColumnIndex": 0,
                        "endColumnIndex": columns,
                    }
                }
            }
        },
    ]
    for column, kind in enumerate(tab.kinds):
        if kind in _NUMBER_FORMATS:
            kind_name, pattern = _NUMBER_FORMATS[kind]
            requests.append(
                {
                    "repeatCell": {
                        "range": {
                            "sheetId": sheet_id,
                            "startRowIndex": 1,
                            "endRowIndex": rows,
                            "startColumnIndex": column,
                            "endColumnIndex": column + 1,
                        },
                        "cell": {
                            "userEnteredFormat": {
                                "numberFormat": {"type": kind_name, "pattern": pattern}
                            }
                        },
                        "fields": "userEnteredFormat.numberFormat",
                    }
                }
            )
    requests.append(
        {
            "autoResizeDimensions": {
                "dimensions": {
                    "sheetId": sheet_id,
                    "dimension": "COLUMNS",
                    "startIndex": 0,
                    "endIndex": columns,
                }
            }
        }
    )
    return requests


def _a1(title: str, row: int) -> str:
    """`'Daily (writing)'!A12`: a range by its first cell, the title quoted."""
    quoted = title.replace("'", "''")
    return f"'{quoted}'!A{row}"


def _cell(value: Any) -> Any:
    if value is None:
        return ""  # an empty cell
    if isinstance(value, date):
        return value.toordinal() - _SERIAL_EPOCH
    if isinstance(value, str):
        return fit_text(value, MAX_CELL_CHARACTERS)[0]
    return value


def _chunks(tabs: list[Tab], fresh: dict[str, int]) -> Iterator[list[dict[str, Any]]]:
    """The values of every tab in value ranges of under CHUNK_BYTES per call."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for tab in tabs:
        title = tab.name + WRITING_SUFFIX
        block: list[list[Any]] = []
        first_row = 1
        for number, row in enumerate([tab.header, *tab.rows], start=1):
            cells = [_cell(value) for value in row]
            # As sent: requests writes JSON with non-ASCII characters escaped.
            row_bytes = len(json.dumps(cells)) + 2
            if size + row_bytes > CHUNK_BYTES and (block or chunk):
                if block:
                    chunk.append({"range": _a1(title, first_row), "values": block})
                yield chunk
                chunk, block, size, first_row = [], [], 0, number
            block.append(cells)
            size += row_bytes
        chunk.append({"range": _a1(title, first_row), "values": block})
    if chunk:
        yield chunk
