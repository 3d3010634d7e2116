from __future__ import annotations

import csv
from datetime import date

import pytest

from peachdw import rules
from peachdw.db import transaction
from peachdw.errors import ExportError
from peachdw.export import Period, export_csv, guard_cell


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+1", "'+1"),
        ("-cmd", "'-cmd"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("EXO_peach.ai", "EXO_peach.ai"),
        (-5, -5),
        (0.5, 0.5),
        (None, None),
    ],
)
def test_guard_cell(value, expected):
    assert guard_cell(value) == expected


HOUR_2025_08_01 = 20301 * 24  # 2025-08-01T00:00Z is day 20301 since the epoch


@pytest.fixture
def filled(warehouse):
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO campaigns (id, name, is_serving) VALUES "
            "(1, 'EXO_peach.ai_Native_US_RT', 1), (2, '=HYPERLINK(\"evil\")', 1), "
            "(3, 'TJ_peach.ai_Banner_München_日本_🔥', 0)"
        )
        rows = [
            (1, HOUR_2025_08_01 - 1, 100),  # 2025-07-31 23:00
            (1, HOUR_2025_08_01, 10),
            (1, HOUR_2025_08_01 + 23, 20),
            (1, HOUR_2025_08_01 + 24, 40),  # 2025-08-02
            (3, HOUR_2025_08_01 + 5, 7),
        ]
        warehouse.executemany(
            "INSERT INTO hourly_data (campaign_id, unix_hour, sessions, messages) "
            "VALUES (?, ?, ?, ?)",
            [(c, h, s, s * 3) for c, h, s in rows],
        )
        rules.map_campaigns(warehouse)
    return warehouse


def read(path):
    with open(path, encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def test_summary_totals_per_campaign_over_the_period(filled, tmp_path):
    output = tmp_path / "out" / "summary.csv"
    result = export_csv(
        filled,
        daily=False,
        period=Period(date(2025, 8, 1), date(2025, 8, 1)),
        output=output,
    )
    rows = {row["campaign_id"]: row for row in read(output)}
    assert result.rows == 3
    assert rows["1"]["sessions"] == "30"
    assert rows["1"]["messages"] == "90"
    assert rows["1"]["network"] == "ExoClick"
    assert rows["2"]["sessions"] == "0"
    assert rows["3"]["sessions"] == "7"
    assert rows["3"]["status"] == "paused"


def test_names_round_trip_and_formulas_are_neutralised(filled, tmp_path):
    output = tmp_path / "summary.csv"
    export_csv(filled, daily=False, period=Period(), output=output)
    names = {row["campaign_id"]: row["campaign_name"] for row in read(output)}
    assert names["3"] == "TJ_peach.ai_Banner_München_日本_🔥"
    assert names["2"] == '\'=HYPERLINK("evil")'
    assert output.read_bytes().startswith(b"\xef\xbb\xbf")


def test_daily_rows_are_cut_at_utc_midnight(filled, tmp_path):
    output = tmp_path / "daily.csv"
    export_csv(filled, daily=True, period=Period(), output=output)
    rows = [(r["date"], r["campaign_id"], r["sessions"]) for r in read(output)]
    assert rows == [
        ("2025-07-31", "1", "100"),
        ("2025-08-01", "1", "30"),
        ("2025-08-01", "3", "7"),
        ("2025-08-02", "1", "40"),
    ]


def test_export_is_recorded(filled, tmp_path):
    output = tmp_path / "summary.csv"
    export_csv(
        filled, daily=False, period=Period(date(2025, 8, 1), None), output=output
    )
    row = filled.execute("SELECT * FROM export_history").fetchone()
    assert row["status"] == "success"
    assert row["rows_written"] == 3
    assert row["period_start"] == "2025-08-01"
    assert row["target"] == str(output)


def test_failed_export_leaves_no_file_and_records_the_failure(filled, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="Cannot write the summary export"):
        export_csv(filled, daily=False, period=Period(), output=blocker / "summary.csv")
    row = filled.execute("SELECT status, error_message FROM export_history").fetchone()
    assert row["status"] == "failed"
    assert row["error_message"]
    assert blocker.read_text() == "x"
