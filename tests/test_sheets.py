"""The Google Sheets export against the local fake of the Sheets and Drive APIs.

Every request body is checked by the fake against Google's discovery documents, and every
call that would leave the machine is refused (tests/fake_sheets.py).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime

import openpyxl
import pytest
from click.testing import CliRunner

from peachdw import rules, sheets
from peachdw.cli import cli
from peachdw.db import connect, transaction
from peachdw.metrics import BUILTIN_METRICS
from peachdw.report import (
    TAB_NAMES,
    daily_columns,
    hierarchy_columns,
    summary_columns,
)
from peachdw.sandbox import Dataset

AUGUST = int(datetime(2025, 8, 1, tzinfo=UTC).timestamp()) // 3600
EVIL = '=HYPERLINK("http://x.test","click")'
AUGUST_TO_SHEETS = [
    "export-month",
    "--month",
    "8",
    "--year",
    "2025",
    "--format",
    "sheets",
]
FIRST_WEEK = [
    "export-daterange",
    "--start-date",
    "2025-08-01",
    "--end-date",
    "2025-08-07",
]


@pytest.fixture
def august(warehouse, db_path):
    """A warehouse with August 2025 for 40 sandbox campaigns and one formula-like name."""
    dataset = Dataset(seed=3, campaigns=40)
    picked = random.Random(5)
    with transaction(warehouse):
        for number, campaign in enumerate(dataset.campaigns[:40]):
            name = EVIL if number == 7 else campaign["name"]
            warehouse.execute(
                "INSERT INTO campaigns (id, name, is_serving) VALUES (?, ?, 1)",
                (campaign["id"], name),
            )
            warehouse.executemany(
                f"INSERT INTO hourly_data (campaign_id, unix_hour, {', '.join(BUILTIN_METRICS)}) "
                f"VALUES (?, ?, {', '.join('?' for _ in BUILTIN_METRICS)})",
                [
                    (
                        campaign["id"],
                        hour,
                        *(picked.randint(0, 50) for _ in BUILTIN_METRICS),
                    )
                    for hour in range(AUGUST - 24, AUGUST + 32 * 24)
                    if picked.random() < 0.5
                ],
            )
        rules.map_campaigns(warehouse)
    return db_path


def invoke(db_path, tmp_path, args, env=None):
    base = {
        "PEACHDW_DATABASE_PATH": str(db_path),
        "PEACHDW_EXPORT_DIRECTORY": str(tmp_path),
    }
    return CliRunner().invoke(
        cli, args, env={**base, **(env or {})}, catch_exceptions=False
    )


def sheets_env(fake, key, **extra):
    env = {
        "PEACHDW_SHEETS_CREDENTIALS": str(key),
        "PEACHDW_SHEETS_API_URL": f"{fake.url}/v4",
        "PEACHDW_SHEETS_DRIVE_URL": f"{fake.url}/drive/v3",
    }
    env.update({f"PEACHDW_SHEETS_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def api_calls(fake):
    return [call for call in fake.calls if call.path != "/token"]


def from_sheet(value, kind):
    """A value read back from the fake as the report holds it."""
    if kind == "date":
        return date.fromordinal(value + date(1899, 12, 30).toordinal())
    return None if value == "" else value


def from_excel(value):
    return value.date() if isinstance(value, datetime) else value


def test_export_month_to_sheets_agrees_with_excel_in_a_handful_of_calls(
    august, tmp_path, fake_google
):
    key = fake_google.service_account_key(tmp_path / "key.json")
    book = fake_google.add_spreadsheet("Monthly", sheets=["Notes", "Summary"])
    env = sheets_env(
        fake_google,
        key,
        spreadsheet_id=book,
        share_with="ana@example.com,bo@example.com",
    )
    month = ["export-month", "--month", "August", "--year", "2025"]

    shared = invoke(august, tmp_path, [*month, "--format", "sheets"], env)
    assert shared.exit_code == 0, shared.output
    excel = invoke(august, tmp_path, [*month, "--output", str(tmp_path / "a.xlsx")])
    assert excel.exit_code == 0, excel.output

    # get, structure, values, swap, and one permission per address.
    calls = api_calls(fake_google)
    assert [call.api_method.split(".", 1)[1] for call in calls] == [
        "spreadsheets.get",
        "spreadsheets.batchUpdate",
        "spreadsheets.values.batchUpdate",
        "spreadsheets.batchUpdate",
        "permissions.create",
        "permissions.create",
    ]
    assert all(call.status == 200 for call in calls)
    values_call = calls[2]
    assert values_call.body["valueInputOption"] == "RAW"
    assert values_call.body_size < 2_000_000
    assert [p["emailAddress"] for p in fake_google.permissions(book)] == [
        "ana@example.com",
        "bo@example.com",
    ]

    titles = [s["properties"]["title"] for s in fake_google.spreadsheet(book)["sheets"]]
    assert titles == ["Summary", "Daily", "Hierarchy", "Notes"]
    workbook = openpyxl.load_workbook(tmp_path / "a.xlsx")
    kinds = {
        name: columns(BUILTIN_METRICS)[1]
        for name, columns in zip(
            TAB_NAMES, (summary_columns, daily_columns, hierarchy_columns), strict=True
        )
    }
    for name in TAB_NAMES:
        sheet_rows = fake_google.values(book, name)
        header, rows = sheet_rows[0], sheet_rows[1:]
        parsed = [
            [from_sheet(v, k) for v, k in zip(row, kinds[name], strict=False)]
            for row in rows
        ]
        excel_rows = [
            [from_excel(v) for v in row]
            for row in workbook[name].iter_rows(min_row=2, values_only=True)
        ]
        # Trailing empty cells are trimmed in the fake's read-back.
        assert [r + [None] * (len(header) - len(r)) for r in parsed] == excel_rows, name

    summary = fake_google.values(book, "Summary")
    assert any(row[1] == EVIL for row in summary[1:])  # text, sent RAW
    sessions = summary[0].index("sessions")
    conn = connect(august)
    start = AUGUST
    end = AUGUST + 31 * 24
    stored = conn.execute(
        "SELECT sum(sessions) FROM hourly_data WHERE unix_hour >= ? AND unix_hour < ?",
        (start, end),
    ).fetchone()[0]
    assert sum(row[sessions] for row in summary[1:]) == stored
    history = conn.execute(
        "SELECT * FROM export_history WHERE format = 'sheets'"
    ).fetchone()
    assert history["status"] == "success"
    assert history["target"].endswith(book)
    assert json.loads(history["tab_rows"])["Summary"] == 40


def test_no_credentials_exits_2_before_any_call(august, tmp_path, fake_google):
    result = invoke(
        august,
        tmp_path,
        AUGUST_TO_SHEETS,
        {"PEACHDW_SHEETS_API_URL": f"{fake_google.url}/v4"},
    )
    assert result.exit_code == 2
    assert "No Google credentials" in result.output
    assert "share the spreadsheet" in result.output
    assert fake_google.calls == []
    refused = connect(august).execute("SELECT * FROM export_history").fetchone()
    assert (refused["format"], refused["status"]) == ("sheets", "failed")
    assert refused["error_message"].startswith("No Google credentials")


def test_a_broken_key_is_refused_and_recorded(august, tmp_path, fake_google):
    key = fake_google.service_account_key(tmp_path / "key.json")
    info = json.loads(key.read_text())
    info["private_key"] = (
        "-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n"
    )
    key.write_text(json.dumps(info))
    result = invoke(
        august,
        tmp_path,
        AUGUST_TO_SHEETS,
        sheets_env(fake_google, key, spreadsheet_id="abc"),
    )
    assert result.exit_code == 2
    assert "are incomplete" in result.output
    row = connect(august).execute("SELECT status, error_message FROM export_history")
    status, error = row.fetchone()
    assert status == "failed" and "are incomplete" in error
    assert "QUJD" not in result.output and "QUJD" not in error  # no key material


def test_rate_limit_waits_as_asked_then_writes(
    august, tmp_path, fake_google, monkeypatch
):
    waits = []
    monkeypatch.setattr(sheets.time, "sleep", waits.append)
    key = fake_google.service_account_key(tmp_path / "key.json")
    book = fake_google.add_spreadsheet("Monthly")
    fake_google.fail(429, times=2, route="values:batchUpdate", retry_after=3)
    result = invoke(
        august,
        tmp_path,
        ["export-daterange", "--start-date", "2025-08-01", "--end-date", "2025-08-03"],
        sheets_env(fake_google, key, spreadsheet_id=book),
    )
    assert result.exit_code == 0, result.output
    assert waits == [3.0, 3.0]
    titles = [s["properties"]["title"] for s in fake_google.spreadsheet(book)["sheets"]]
    assert titles == ["Summary", "Daily", "Hierarchy", "Sheet1"]


def test_quota_that_stays_exhausted_fails_naming_the_tabs_and_keeps_the_old_report(
    august, tmp_path, fake_google, monkeypatch
):
    monkeypatch.setattr(sheets.time, "sleep", lambda seconds: None)
    key = fake_google.service_account_key(tmp_path / "key.json")
    book = fake_google.add_spreadsheet("Monthly")
    env = sheets_env(fake_google, key, spreadsheet_id=book, max_rate_limit_retries=2)
    dates = ["--start-date", "2025-08-01", "--end-date", "2025-08-02"]
    first = invoke(august, tmp_path, ["export-daterange", *dates], env)
    assert first.exit_code == 0, first.output
    before = {name: fake_google.values(book, name) for name in TAB_NAMES}

    fake_google.fail(429, times=10, route="values:batchUpdate")
    later = ["--start-date", "2025-08-03", "--end-date", "2025-08-31"]
    result = invoke(august, tmp_path, ["export-daterange", *later], env)
    assert result.exit_code == 1
    assert "kept answering 429" in result.output
    assert "Tabs not written: Summary, Daily, Hierarchy" in result.output
    assert {name: fake_google.values(book, name) for name in TAB_NAMES} == before
    titles = [s["properties"]["title"] for s in fake_google.spreadsheet(book)["sheets"]]
    assert titles == ["Summary", "Daily", "Hierarchy", "Sheet1"]

    conn = connect(august)
    failed = conn.execute(
        "SELECT status, error_message FROM export_history ORDER BY id DESC"
    ).fetchone()
    assert failed["status"] == "failed"
    assert "Tabs not written" in failed["error_message"]


@pytest.mark.parametrize(
    ("route", "after"),
    [
        pytest.param("sheets.spreadsheets.get", 0, id="reading-the-tabs"),
        pytest.param("sheets.spreadsheets.batchUpdate", 0, id="adding-the-tabs"),
        pytest.param("sheets.spreadsheets.batchUpdate", 1, id="swapping-them-in"),
    ],
)
def test_quota_exhausted_at_any_step_names_every_tab_and_leaves_no_fresh_tab(
    august, tmp_path, fake_google, monkeypatch, route, after
):
    monkeypatch.setattr(sheets.time, "sleep", lambda seconds: None)
    key = fake_google.service_account_key(tmp_path / "key.json")
    book = fake_google.add_spreadsheet("Monthly")
    env = sheets_env(fake_google, key, spreadsheet_id=book, max_rate_limit_retries=1)
    fake_google.fail(429, times=2, route=route, after=after)

    result = invoke(august, tmp_path, FIRST_WEEK, env)

    assert result.exit_code == 1
    assert "Tabs not written: Summary, Daily, Hierarchy." in result.output
    titles = [s["properties"]["title"] for s in fake_google.spreadsheet(book)["sheets"]]
    assert titles == ["Sheet1"]
    failed = (
        connect(august)
        .execute("SELECT status, error_message FROM export_history ORDER BY id DESC")
        .fetchone()
    )
    assert failed["status"] == "failed"
    assert "kept answering 429" in failed["error_message"]
    assert "Tabs not written: Summary, Daily, Hierarchy." in failed["error_message"]


def test_tabs_named_in_another_case_are_replaced(august, tmp_path, fake_google):
    key = fake_google.service_account_key(tmp_path / "key.json")
    book = fake_google.add_spreadsheet("Monthly", sheets=["summary", "Notes"])

    result = invoke(
        august, tmp_path, FIRST_WEEK, sheets_env(fake_google, key, spreadsheet_id=book)
    )

    assert result.exit_code == 0, result.output
    titles = [s["properties"]["title"] for s in fake_google.spreadsheet(book)["sheets"]]
    assert titles == ["Summary", "Daily", "Hierarchy", "Notes"]


def test_a_failed_share_is_a_warning_once_the_report_is_written(
    august, tmp_path, fake_google, caplog
):
    key = fake_google.service_account_key(tmp_path / "key.json")
    book = fake_google.add_spreadsheet("Monthly")
    env = sheets_env(
        fake_google, key, spreadsheet_id=book, share_with="analyst@example.com"
    )
    fake_google.fail(404, route="permissions")

    result = invoke(august, tmp_path, FIRST_WEEK, env)

    assert result.exit_code == 0, result.output
    assert "not shared with analyst@example.com" in caplog.text
    assert fake_google.values(book, "Summary")[0][0] == "campaign_id"
    done = (
        connect(august)
        .execute("SELECT status FROM export_history ORDER BY id DESC")
        .fetchone()
    )
    assert done["status"] == "success"


def test_too_many_cells_is_refused_before_sending_anything(
    august, tmp_path, fake_google, monkeypatch
):
    key = fake_google.service_account_key(tmp_path / "key.json")
    book = fake_google.add_spreadsheet("Monthly")
    monkeypatch.setattr(sheets, "MAX_CELLS", 1_000)
    result = invoke(
        august,
        tmp_path,
        AUGUST_TO_SHEETS,
        sheets_env(fake_google, key, spreadsheet_id=book),
    )
    assert result.exit_code == 1
    assert "a Google spreadsheet holds at most 1,000" in result.output
    assert fake_google.calls == []


def test_a_full_spreadsheet_is_refused_before_the_tabs_are_added(
    august, tmp_path, fake_google
):
    key = fake_google.service_account_key(tmp_path / "key.json")
    big = {"title": "Raw", "gridProperties": {"rowCount": 499_990, "columnCount": 20}}
    book = fake_google.add_spreadsheet("Monthly", sheets=[big])
    result = invoke(
        august,
        tmp_path,
        AUGUST_TO_SHEETS,
        sheets_env(fake_google, key, spreadsheet_id=book),
    )
    assert result.exit_code == 1
    assert "above Google's limit of 10,000,000" in result.output
    assert [c.api_method for c in api_calls(fake_google)] == ["sheets.spreadsheets.get"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (403, "Share it with peachdw-export@"),
        (404, "was not found (404). Check --spreadsheet-id"),
    ],
)
def test_refusals_say_what_to_do(august, tmp_path, fake_google, status, expected):
    key = fake_google.service_account_key(tmp_path / "key.json")
    book = fake_google.add_spreadsheet("Monthly")
    fake_google.fail(status, route="sheets.spreadsheets.get")
    result = invoke(
        august,
        tmp_path,
        AUGUST_TO_SHEETS,
        sheets_env(fake_google, key, spreadsheet_id=book),
    )
    assert result.exit_code == 1
    assert expected in result.output


def test_user_credentials_create_a_spreadsheet_by_title(august, tmp_path, fake_google):
    key = fake_google.authorized_user(tmp_path / "user.json")
    result = invoke(
        august,
        tmp_path,
        [*FIRST_WEEK, "--spreadsheet-title", "First week"],
        sheets_env(fake_google, key),
    )
    assert result.exit_code == 0, result.output
    created = [c for c in api_calls(fake_google) if c.api_method.endswith("create")]
    assert created[0].body["properties"]["title"] == "First week"
    book = fake_google.calls_to("sheets.spreadsheets.get")[0].path.split("/")[-1]
    titles = [s["properties"]["title"] for s in fake_google.spreadsheet(book)["sheets"]]
    assert titles == ["Summary", "Daily", "Hierarchy"]


def test_a_service_account_cannot_be_asked_to_create(august, tmp_path, fake_google):
    key = fake_google.service_account_key(tmp_path / "key.json")
    result = invoke(
        august,
        tmp_path,
        [*FIRST_WEEK, "--spreadsheet-title", "First week"],
        sheets_env(fake_google, key),
    )
    assert result.exit_code == 2
    assert "A service account cannot create spreadsheets" in result.output
    assert fake_google.calls == []


def test_dry_run_names_tabs_rows_and_target_without_a_call(
    august, tmp_path, fake_google
):
    key = fake_google.service_account_key(tmp_path / "key.json")
    result = invoke(
        august,
        tmp_path,
        [
            "export-month",
            "--month",
            "8",
            "--year",
            "2025",
            "--format",
            "sheets",
            "--dry-run",
        ],
        sheets_env(fake_google, key, spreadsheet_id="abc123"),
    )
    assert result.exit_code == 0, result.output
    assert "Would write Summary 40 rows, Daily" in result.output
    assert "docs.google.com/spreadsheets/d/abc123" in result.output
    assert fake_google.calls == []
    conn = connect(august)
    assert conn.execute("SELECT count(*) FROM export_history").fetchone()[0] == 0


def test_dry_run_without_credentials_shows_the_tabs_then_the_refusal(
    august, tmp_path, fake_google
):
    args = [*FIRST_WEEK, "--spreadsheet-title", "Week one", "--dry-run"]
    result = invoke(august, tmp_path, args)

    assert result.exit_code == 2
    assert (
        "Would write Summary 40 rows, Daily 280 rows, Hierarchy 143 rows (2025-08-01 "
        "to 2025-08-07, days in UTC) as sheets to a new spreadsheet titled 'Week one'."
    ) in " ".join(result.output.split())
    assert "No Google credentials" in result.output
    assert fake_google.calls == []
    conn = connect(august)
    assert conn.execute("SELECT count(*) FROM export_history").fetchone()[0] == 0


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_dry_run_to_a_file_writes_nothing(august, tmp_path, fmt):
    out = tmp_path / "out"
    args = [*FIRST_WEEK, "--format", fmt, "--dry-run"]
    result = invoke(august, out, args)

    assert result.exit_code == 0, result.output
    assert "Would write Summary 40 rows, Daily 280 rows, Hierarchy 143 rows" in (
        " ".join(result.output.split())
    )
    assert f"as {fmt} to {out}" in " ".join(result.output.split())
    assert not out.exists()
    conn = connect(august)
    assert conn.execute("SELECT count(*) FROM export_history").fetchone()[0] == 0


def test_values_are_sent_in_chunks_under_the_size_limit(
    august, tmp_path, fake_google, monkeypatch
):
    monkeypatch.setattr(sheets, "CHUNK_BYTES", 50_000)
    key = fake_google.service_account_key(tmp_path / "key.json")
    book = fake_google.add_spreadsheet("Monthly")
    result = invoke(
        august,
        tmp_path,
        AUGUST_TO_SHEETS,
        sheets_env(fake_google, key, spreadsheet_id=book),
    )
    assert result.exit_code == 0, result.output
    chunks = fake_google.calls_to("values:batchUpdate")
    assert len(chunks) > 5
    assert all(call.body_size < 50_000 + 2_000 for call in chunks), [
        c.body_size for c in chunks
    ]
    daily = fake_google.values(book, "Daily")
    assert len(daily) == 1 + 40 * 31
