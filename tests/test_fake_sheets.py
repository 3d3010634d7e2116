"""The Google Sheets fake: real gspread sign-in against it, and the refusals it mirrors."""

from __future__ import annotations

import json
from pathlib import Path

import discovery
import fake_sheets
import google.auth.exceptions
import gspread
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fake_sheets import GOOGLE_TOKEN_URL, SPREADSHEETS_SCOPE, FakeSheets, NetworkRefused
from google.oauth2.credentials import Credentials as UserCredentials

# The fake's fixtures, made visible to this module.
fake_google = fake_sheets.fake_google
no_google_network = fake_sheets.no_google_network


@pytest.fixture
def fake(fake_google: FakeSheets) -> FakeSheets:
    return fake_google


@pytest.fixture
def book(fake: FakeSheets) -> str:
    return fake.add_spreadsheet(
        "Campaign report",
        [
            "Summary",
            {"title": "Daily", "gridProperties": {"rowCount": 50, "columnCount": 5}},
        ],
    )


@pytest.fixture
def service_account(fake: FakeSheets, tmp_path: Path) -> gspread.Client:
    """gspread signed in as a service account, the way the export signs in."""
    return gspread.service_account(
        filename=fake.service_account_key(tmp_path / "sa.json")
    )


@pytest.fixture
def session(service_account: gspread.Client) -> requests.Session:
    """The service account's authorized session: it answers errors instead of raising."""
    return service_account.http_client.session


def user_client(fake: FakeSheets, tmp_path: Path) -> gspread.Client:
    info = json.loads(fake.authorized_user(tmp_path / "user.json").read_text())
    # from_authorized_user_info always sets Google's token URL; the file's is restored.
    credentials = UserCredentials.from_authorized_user_info(
        info, gspread.auth.DEFAULT_SCOPES
    ).with_token_uri(info["token_uri"])
    return gspread.Client(auth=credentials)


def values_body(*data: tuple[str, list]) -> dict:
    return {
        "valueInputOption": "RAW",
        "data": [{"range": text, "values": rows} for text, rows in data],
    }


# --- sign-in --------------------------------------------------------------------------


def test_service_account_signs_in_with_gspread_and_reads_a_spreadsheet(
    fake: FakeSheets, service_account: gspread.Client, book: str
):
    response = service_account.http_client.request(
        "get", f"{fake.url}/v4/spreadsheets/{book}"
    )

    sheets = [sheet["properties"] for sheet in response.json()["sheets"]]
    assert response.json()["properties"]["title"] == "Campaign report"
    assert (sheets[0]["sheetId"], sheets[0]["title"], sheets[0]["index"]) == (
        0,
        "Summary",
        0,
    )
    assert sheets[1]["gridProperties"] == {"rowCount": 50, "columnCount": 5}
    token, read = fake.calls
    assert token.path == "/token"
    assert token.body == {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}
    assert read.principal.kind == "service_account"
    assert (
        read.principal.account == "peachdw-export@peachdw-test.iam.gserviceaccount.com"
    )


def test_token_endpoint_refuses_a_key_it_did_not_write(
    fake: FakeSheets, tmp_path: Path
):
    key_file = fake.service_account_key(tmp_path / "sa.json")
    info = json.loads(key_file.read_text())
    info["private_key"] = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    client = gspread.service_account_from_dict(info)

    with pytest.raises(
        google.auth.exceptions.RefreshError, match="Invalid JWT Signature"
    ):
        client.http_client.request("get", f"{fake.url}/v4/spreadsheets/anything")


def test_user_signs_in_with_the_token_uri_of_the_file_and_creates_a_spreadsheet(
    fake: FakeSheets, tmp_path: Path
):
    client = user_client(fake, tmp_path)

    response = client.http_client.request(
        "post", f"{fake.url}/v4/spreadsheets", json={"properties": {"title": "Weekly"}}
    )

    created = fake.spreadsheet(response.json()["spreadsheetId"])
    assert created["properties"]["title"] == "Weekly"
    assert created["sheets"] == [
        {
            "properties": {
                "sheetId": 0,
                "title": "Sheet1",
                "index": 0,
                "sheetType": "GRID",
                "gridProperties": {"rowCount": 1000, "columnCount": 26},
            }
        }
    ]
    assert fake.calls[0].body == {"grant_type": "refresh_token"}
    assert fake.calls[1].principal.kind == "user"


def test_google_auth_ignores_the_token_uri_of_an_authorized_user_file(
    fake: FakeSheets, tmp_path: Path, no_google_network: list[str]
):
    info = json.loads(fake.authorized_user(tmp_path / "user.json").read_text())
    client, _ = gspread.oauth_from_dict(authorized_user_info=info)

    with pytest.raises(NetworkRefused, match=r"oauth2\.googleapis\.com"):
        client.http_client.request("get", f"{fake.url}/v4/spreadsheets/anything")

    assert no_google_network == [GOOGLE_TOKEN_URL]
    no_google_network.clear()
    assert fake.calls == []


def test_a_call_to_a_real_google_host_is_refused(no_google_network: list[str]):
    url = "https://sheets.googleapis.com/v4/spreadsheets/abc"

    with pytest.raises(NetworkRefused, match=r"sheets\.googleapis\.com"):
        requests.get(url, timeout=5)

    assert no_google_network == [url]
    no_google_network.clear()


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing required authentication credential"),
        ("Bearer ya29.made-up", "invalid authentication credentials"),
    ],
    ids=["no-token", "unknown-token"],
)
def test_a_call_without_a_token_the_fake_issued_is_refused(
    fake: FakeSheets, book: str, authorization: str | None, message: str
):
    headers = {"Authorization": authorization} if authorization else {}

    response = requests.get(
        f"{fake.url}/v4/spreadsheets/{book}", headers=headers, timeout=5
    )

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert message in response.json()["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_tokens_are_refused_and_google_auth_signs_in_again(
    fake: FakeSheets, service_account: gspread.Client, book: str
):
    service_account.http_client.request("get", f"{fake.url}/v4/spreadsheets/{book}")

    fake.revoke_tokens()
    service_account.http_client.request("get", f"{fake.url}/v4/spreadsheets/{book}")

    assert [call.status for call in fake.calls] == [200, 200, 401, 200, 200]


def test_a_token_without_a_drive_scope_cannot_share(
    fake: FakeSheets, book: str, tmp_path: Path
):
    key = fake.service_account_key(tmp_path / "sa.json")
    client = gspread.service_account(filename=key, scopes=[SPREADSHEETS_SCOPE])

    response = client.http_client.session.post(
        f"{fake.url}/drive/v3/files/{book}/permissions",
        json={"type": "user", "role": "reader", "emailAddress": "ana@example.com"},
    )

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["message"] == "Request had insufficient authentication scopes."
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


# --- spreadsheets ---------------------------------------------------------------------


def test_a_service_account_cannot_create_a_spreadsheet(
    fake: FakeSheets, session: requests.Session
):
    response = session.post(
        f"{fake.url}/v4/spreadsheets", json={"properties": {"title": "Weekly"}}
    )

    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_an_unknown_spreadsheet_is_not_found(
    fake: FakeSheets, session: requests.Session
):
    response = session.get(f"{fake.url}/v4/spreadsheets/no-such-id")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": 404,
        "message": "Requested entity was not found.",
        "status": "NOT_FOUND",
    }


def test_a_call_the_fake_does_not_serve_is_named(
    fake: FakeSheets, session: requests.Session, book: str
):
    response = session.put(f"{fake.url}/v4/spreadsheets/{book}/values/A1", json={})

    assert response.status_code == 404
    assert "PUT /v4/spreadsheets/" in response.json()["error"]["message"]
    assert "not a call the fake serves" in response.json()["error"]["message"]


def test_batch_update_applies_its_requests_in_order(
    fake: FakeSheets, session: requests.Session, book: str
):
    body = {
        "requests": [
            {"addSheet": {"properties": {"title": "Campaigns", "index": 0}}},
            {
                "updateSheetProperties": {
                    "properties": {
                        "sheetId": 0,
                        "title": "Totals",
                        "gridProperties": {"rowCount": 200, "frozenRowCount": 1},
                    },
                    "fields": "title,gridProperties(rowCount,frozenRowCount)",
                }
            },
            {"appendDimension": {"sheetId": 0, "dimension": "COLUMNS", "length": 4}},
            {
                "repeatCell": {
                    "range": {"sheetId": 0, "startRowIndex": 0, "endRowIndex": 1},
                    "cell": {"userEnteredFormat": {"textFormat": {"bold": True}}},
                    "fields": "userEnteredFormat.textFormat.bold",
                }
            },
        ]
    }

    response = session.post(f"{fake.url}/v4/spreadsheets/{book}:batchUpdate", json=body)

    assert response.status_code == 200
    replies = response.json()["replies"]
    assert replies[0]["addSheet"]["properties"]["title"] == "Campaigns"
    assert replies[1:] == [{}, {}, {}]
    sheets = [sheet["properties"] for sheet in fake.spreadsheet(book)["sheets"]]
    assert [sheet["title"] for sheet in sheets] == ["Campaigns", "Totals", "Daily"]
    assert sheets[1]["gridProperties"] == {
        "rowCount": 200,
        "columnCount": 30,
        "frozenRowCount": 1,
    }


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            {
                "updateSheetProperties": {
                    "properties": {
                        "sheetId": 0,
                        "gridProperties": {"frozenRowCunt": 1},
                    },
                    "fields": "gridProperties.frozenRowCount",
                }
            },
            "requests[0].updateSheetProperties.properties.gridProperties.frozenRowCunt: "
            "unknown field",
        ),
        (
            {
                "repeatCell": {
                    "range": {"sheetId": 0},
                    "cell": {"userEnteredFormat": {"horizontalAlignment": "MIDDLE"}},
                    "fields": "userEnteredFormat.horizontalAlignment",
                }
            },
            "requests[0].repeatCell.cell.userEnteredFormat.horizontalAlignment: "
            "'MIDDLE' is not one of",
        ),
        (
            {"addSheet": {"properties": {"gridProperties": {"rowCount": "200"}}}},
            "requests[0].addSheet.properties.gridProperties.rowCount: expected an integer",
        ),
        (
            {
                "updateSheetProperties": {
                    "properties": {"sheetId": 0},
                    "fields": "gridProperties.frozenRows",
                }
            },
            "'gridProperties.frozenRows' in the field mask is not a field",
        ),
        (
            {"deleteSheet": {"sheetId": 12345}},
            "Invalid requests[0].deleteSheet: No grid with id: 12345",
        ),
        (
            {"addSheet": {"properties": {"title": "daily"}}},
            'A sheet with the name "daily" already exists.',
        ),
    ],
    ids=[
        "unknown-field",
        "wrong-enum",
        "wrong-type",
        "bad-mask",
        "unknown-sheet",
        "dup-title",
    ],
)
def test_a_bad_batch_update_is_refused_naming_the_problem(
    fake: FakeSheets, session: requests.Session, book: str, request_: dict, message: str
):
    before = fake.spreadsheet(book)

    response = session.post(
        f"{fake.url}/v4/spreadsheets/{book}:batchUpdate", json={"requests": [request_]}
    )

    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert message in response.json()["error"]["message"]
    assert fake.spreadsheet(book) == before


def test_the_ten_million_cell_limit_refuses_the_whole_batch(
    fake: FakeSheets, session: requests.Session, book: str
):
    body = {
        "requests": [
            {"addSheet": {"properties": {"title": "Fits"}}},
            {
                "updateSheetProperties": {
                    "properties": {
                        "sheetId": 0,
                        "gridProperties": {"rowCount": 400_000},
                    },
                    "fields": "gridProperties.rowCount",
                }
            },
        ]
    }

    response = session.post(f"{fake.url}/v4/spreadsheets/{book}:batchUpdate", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Invalid requests[1].updateSheetProperties: This action would increase the "
        "number of cells in the workbook above the limit of 10000000 cells."
    )
    titles = [
        sheet["properties"]["title"] for sheet in fake.spreadsheet(book)["sheets"]
    ]
    assert titles == ["Summary", "Daily"]


# --- values ---------------------------------------------------------------------------


def test_values_are_stored_as_sent(
    fake: FakeSheets, session: requests.Session, book: str
):
    body = values_body(
        ("'Summary'!A1:C3", [["campaign", "sessions", "rate"], ["Spring", 120, 0.25]]),
        ("Daily!B2", [["2025-08-01", 7], [None, 8], ["", 9]]),
    )

    response = session.post(
        f"{fake.url}/v4/spreadsheets/{book}/values:batchUpdate", json=body
    )

    assert response.status_code == 200
    # 6 + 5 cells: None leaves a cell alone, "" empties it.
    assert response.json()["totalUpdatedCells"] == 11
    assert response.json()["responses"][1]["updatedRange"] == "Daily!B2:C4"
    assert fake.values(book, "Summary") == [
        ["campaign", "sessions", "rate"],
        ["Spring", 120, 0.25],
    ]
    assert fake.values(book, "Daily") == [
        [],
        ["", "2025-08-01", 7],
        ["", "", 8],
        ["", "", 9],
    ]
    assert fake.calls_to("values:batchUpdate")[0].body_size == len(
        json.dumps(body).encode()
    )


@pytest.mark.parametrize(
    ("range_text", "rows", "message"),
    [
        (
            "Daily!A1:Z2000",
            [[1]],
            "Range (Daily!A1:Z2000) exceeds grid limits. Max rows: 50, max columns: 5",
        ),
        (
            "Daily!A49",
            [[1], [2], [3]],
            "Range (Daily!A51) exceeds grid limits. Max rows: 50, max columns: 5",
        ),
        (
            "'Daily'!D1",
            [[1, 2, 3]],
            "Range (Daily!F1) exceeds grid limits. Max rows: 50, max columns: 5",
        ),
        (
            "Summary!A1:B2",
            [[1, 2], [3, 4], [5, 6]],
            "Requested writing within range [Summary!A1:B2], but tried writing to row [3]",
        ),
        ("Weekly!A1", [[1]], "Unable to parse range: Weekly!A1"),
    ],
    ids=[
        "range-off-grid",
        "rows-off-grid",
        "columns-off-grid",
        "past-range",
        "no-sheet",
    ],
)
def test_a_write_outside_the_grid_or_range_is_refused_and_applies_nothing(
    fake: FakeSheets,
    session: requests.Session,
    book: str,
    range_text: str,
    rows: list,
    message: str,
):
    body = values_body(("Summary!A1", [["kept out"]]), (range_text, rows))

    response = session.post(
        f"{fake.url}/v4/spreadsheets/{book}/values:batchUpdate", json=body
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert fake.values(book, "Summary") == []


def test_values_need_a_value_input_option(
    fake: FakeSheets, session: requests.Session, book: str
):
    response = session.post(
        f"{fake.url}/v4/spreadsheets/{book}/values:batchUpdate",
        json={"data": [{"range": "Summary!A1", "values": [[1]]}]},
    )

    assert response.status_code == 400
    assert "valueInputOption" in response.json()["error"]["message"]


def test_429_on_cue_then_success(
    fake: FakeSheets, session: requests.Session, book: str
):
    fake.fail(429, route="values:batchUpdate", retry_after=3)
    url = f"{fake.url}/v4/spreadsheets/{book}/values:batchUpdate"
    body = values_body(("Summary!A1", [["ok"]]))

    refused = session.post(url, json=body)
    stored_after_refusal = fake.values(book, "Summary")
    accepted = session.post(url, json=body)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3"
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "Write requests" in refused.json()["error"]["message"]
    assert stored_after_refusal == []
    assert accepted.status_code == 200
    assert fake.values(book, "Summary") == [["ok"]]


def test_faults_match_only_their_route(
    fake: FakeSheets, session: requests.Session, book: str
):
    fake.fail(403, times=2, route="sheets.spreadsheets.batchUpdate")

    read = session.get(f"{fake.url}/v4/spreadsheets/{book}")
    written = session.post(
        f"{fake.url}/v4/spreadsheets/{book}/values:batchUpdate",
        json=values_body(("Summary!A1", [[1]])),
    )
    updates = [
        session.post(
            f"{fake.url}/v4/spreadsheets/{book}:batchUpdate", json={"requests": []}
        )
        for _ in range(3)
    ]

    assert (read.status_code, written.status_code) == (200, 200)
    assert [response.status_code for response in updates] == [403, 403, 200]
    assert (
        updates[0].json()["error"]["message"] == "The caller does not have permission"
    )


# --- Drive ----------------------------------------------------------------------------


def test_a_permission_is_validated_and_recorded(
    fake: FakeSheets, session: requests.Session, book: str
):
    url = f"{fake.url}/drive/v3/files/{book}/permissions"
    permission = {"type": "user", "role": "writer", "emailAddress": "ana@example.com"}

    created = session.post(
        url, params={"sendNotificationEmail": "false"}, json=permission
    )
    no_role = session.post(
        url, json={"type": "user", "emailAddress": "ana@example.com"}
    )
    unknown_parameter = session.post(url, params={"notify": "false"}, json=permission)

    assert created.status_code == 200
    assert created.json()["role"] == "writer"
    assert fake.permissions(book) == [{"id": created.json()["id"], **permission}]
    assert fake.calls_to("permissions")[0].query == {"sendNotificationEmail": ["false"]}
    assert no_role.status_code == 400
    assert (
        "role: required by drive.permissions.create"
        in no_role.json()["error"]["message"]
    )
    assert unknown_parameter.status_code == 400
    assert (
        "?notify: unknown query parameter"
        in unknown_parameter.json()["error"]["message"]
    )


# --- the discovery documents ----------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "method_id", "schema"),
    [
        ("sheets.v4", "spreadsheets.batchUpdate", "BatchUpdateSpreadsheetRequest"),
        ("sheets.v4", "spreadsheets.values.batchUpdate", "BatchUpdateValuesRequest"),
        ("sheets.v4", "spreadsheets.create", "Spreadsheet"),
        ("drive.v3", "permissions.create", "Permission"),
    ],
)
def test_discovery_names_the_request_schema_of_a_method(
    api: str, method_id: str, schema: str
):
    assert discovery.load(api).request_schema(method_id) == schema


def test_discovery_reads_the_query_parameters_a_method_takes():
    accepted = discovery.load("drive.v3").query_parameters("permissions.create")

    assert {"fields", "alt", "prettyPrint", "quotaUser"} <= accepted.keys()
    assert {"sendNotificationEmail", "supportsAllDrives"} <= accepted.keys()
    assert "fileId" not in accepted
