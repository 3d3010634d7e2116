from __future__ import annotations

import csv
import json
import os
import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from peachdw import rules
from peachdw.db import transaction
from peachdw.errors import ExportError
from peachdw.export import CsvWriter, export_report, guard_cell
from peachdw.hours import day_spans
from peachdw.metrics import BUILTIN_METRICS
from peachdw.quality import describe_short_days, short_days
from peachdw.report import ReportPeriod, _hour_day, build_tabs
from peachdw.xlsx import EXCEL_CELL_UNITS, XlsxWriter, fit_text, utf16_units

UTC = ZoneInfo("UTC")


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
EVIL = '=HYPERLINK("http://x.test","click")'


@pytest.fixture
def filled(warehouse):
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO campaigns (id, name, is_serving, is_deleted) VALUES "
            "(1, 'EXO_peach.ai_Native_US_RT', 1, 0), (2, ?, 1, 0), "
            "(3, 'TJ_peach.ai_Banner_München_日本_🔥', 0, 0), (4, 'gone', 0, 1)",
            (EVIL,),
        )
        rows = [
            (1, HOUR_2025_08_01 - 1, 100, 10),  # 2025-07-31 23:00 UTC
            (1, HOUR_2025_08_01, 10, 1),
            (1, HOUR_2025_08_01 + 23, 20, 4),
            (1, HOUR_2025_08_01 + 24, 40, 0),  # 2025-08-02
            (2, HOUR_2025_08_01 + 2, 0, 0),  # messages only: no sessions
            (3, HOUR_2025_08_01 + 5, 7, 2),
        ]
        warehouse.executemany(
            "INSERT INTO hourly_data (campaign_id, unix_hour, sessions, "
            "registrations, messages) VALUES (?, ?, ?, ?, ?)",
            [(c, h, s, r, s * 3 + 1) for c, h, s, r in rows],
        )
        rules.map_campaigns(warehouse)
    return warehouse


def by_name(tabs):
    return {tab.name: tab for tab in tabs}


def column(tab, name):
    return tab.header.index(name)


def test_three_tabs_agree_with_each_other_and_the_database(filled):
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 2), UTC)
    tabs = by_name(build_tabs(filled, period))
    summary, daily, hierarchy = tabs["Summary"], tabs["Daily"], tabs["Hierarchy"]
    start, end = period.hours()
    for metric in BUILTIN_METRICS:
        stored = filled.execute(
            f"SELECT coalesce(sum({metric}), 0) FROM hourly_data "
            "WHERE unix_hour >= ? AND unix_hour < ?",
            (start, end),
        ).fetchone()[0]
        index = (column(summary, metric), column(daily, metric))
        assert sum(row[index[0]] for row in summary.rows) == stored, metric
        assert sum(row[index[1]] for row in daily.rows) == stored, metric
        grand = hierarchy.rows[-1]
        assert grand[0] == "Total"
        assert grand[column(hierarchy, metric)] == stored, metric
        assert grand[column(hierarchy, "campaigns")] == len(summary.rows)
        networks = [row for row in hierarchy.rows if row[0] == "Network"]
        assert sum(row[column(hierarchy, metric)] for row in networks) == stored

    sessions = {row[0]: row[column(summary, "sessions")] for row in summary.rows}
    # The hour before UTC midnight is July's; the deleted campaign with no hours is left out.
    assert sessions == {1: 70, 2: 0, 3: 7}


def test_rates_are_empty_where_the_denominator_is_zero(filled):
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 1), UTC)
    summary = by_name(build_tabs(filled, period))["Summary"]
    rows = {row[0]: row for row in summary.rows}
    per_session = column(summary, "registrations_per_session")
    assert rows[1][per_session] == round(5 / 30, 6)
    assert rows[2][per_session] is None  # no sessions
    assert rows[3][column(summary, "converted_per_registration")] == 0.0


def test_hierarchy_subtotals_nest(filled):
    period = ReportPeriod(date(2025, 7, 31), date(2025, 8, 2), UTC)
    hierarchy = by_name(build_tabs(filled, period))["Hierarchy"]
    sessions = column(hierarchy, "sessions")
    levels = ("Network", "Domain", "Placement", "Targeting", "Special")
    for depth in range(1, len(levels)):
        parents = [row for row in hierarchy.rows if row[0] == levels[depth - 1]]
        for parent in parents:
            children = [
                row
                for row in hierarchy.rows
                if row[0] == levels[depth]
                and row[1 : depth + 1] == parent[1 : depth + 1]
            ]
            assert sum(row[sessions] for row in children) == parent[sessions]


def hourly_warehouse(warehouse, first_hour, last_hour):
    """One campaign with 1 session in every hour first..last, so a day's total is its
    length in hours."""
    with transaction(warehouse):
        warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'EXO_x')")
        warehouse.executemany(
            "INSERT INTO hourly_data (campaign_id, unix_hour, sessions) VALUES (1, ?, 1)",
            [(hour,) for hour in range(first_hour, last_hour + 1)],
        )
    return warehouse


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        ("Europe/Berlin", date(2025, 3, 30), date(2025, 10, 26)),
        ("America/New_York", date(2025, 3, 9), date(2025, 11, 2)),
    ],
)
def test_days_are_cut_in_the_reporting_zone_across_clock_changes(
    warehouse, zone, spring, autumn
):
    tz = ZoneInfo(zone)
    first = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp()) // 3600
    last = int(datetime(2025, 12, 1, tzinfo=UTC).timestamp()) // 3600
    hourly_warehouse(warehouse, first, last)
    period = ReportPeriod(date(2025, 3, 2), date(2025, 11, 29), tz)
    daily = by_name(build_tabs(warehouse, period, ("Daily",)))["Daily"]
    lengths = {row[0]: row[column(daily, "sessions")] for row in daily.rows}
    assert lengths[spring] == 23
    assert lengths[autumn] == 25
    assert {n for d, n in lengths.items() if d not in (spring, autumn)} == {24}
    # Every hour of the period lands in exactly one day.
    start, end = period.hours()
    assert sum(lengths.values()) == end - start
    assert all(
        _hour_day(hour, tz) == day
        for day, s, e in day_spans(period.first, period.last, tz)
        for hour in range(s, e)
    )


def test_the_machines_time_zone_changes_nothing(warehouse, monkeypatch):
    first = int(datetime(2025, 3, 28, tzinfo=UTC).timestamp()) // 3600
    hourly_warehouse(warehouse, first, first + 24 * 5)
    period = ReportPeriod(
        date(2025, 3, 29), date(2025, 3, 31), ZoneInfo("Europe/Berlin")
    )
    results = []
    for machine in ("UTC", "Asia/Kolkata", "America/Los_Angeles"):
        monkeypatch.setenv("TZ", machine)
        time.tzset()
        results.append(build_tabs(warehouse, period, ("Daily",))[0].rows)
    monkeypatch.delenv("TZ")
    time.tzset()
    assert results[0] == results[1] == results[2]
    assert [row[column_of_sessions()] for row in results[0]] == [24, 23, 24]


def column_of_sessions():
    from peachdw.report import daily_columns

    return daily_columns(BUILTIN_METRICS)[0].index("sessions")


def read_csv(path):
    with open(path, encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def test_csv_writes_one_file_per_tab_with_a_bom_and_formula_guard(filled, tmp_path):
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 2), UTC)
    writer = CsvWriter(
        ("Summary", "Daily", "Hierarchy"),
        period,
        output=tmp_path / "r.csv",
        directory=tmp_path,
    )
    result = export_report(filled, period, writer, fmt="csv")
    files = {
        name: tmp_path / f"r_{name}.csv" for name in ("summary", "daily", "hierarchy")
    }
    assert all(path.read_bytes().startswith(b"\xef\xbb\xbf") for path in files.values())
    summary = {row["campaign_id"]: row for row in read_csv(files["summary"])}
    assert summary["2"]["campaign_name"] == "'" + EVIL
    assert summary["3"]["campaign_name"] == "TJ_peach.ai_Banner_München_日本_🔥"
    assert summary["2"]["registrations_per_session"] == ""
    daily = read_csv(files["daily"])
    assert [(r["date"], r["campaign_id"], r["sessions"]) for r in daily][:2] == [
        ("2025-08-01", "1", "30"),
        ("2025-08-01", "2", "0"),
    ]
    assert result.tab_rows == {
        "Summary": 3,
        "Daily": 4,
        "Hierarchy": len(read_csv(files["hierarchy"])),
    }

    row = filled.execute("SELECT * FROM export_history").fetchone()
    assert (row["status"], row["format"], row["timezone"]) == ("success", "csv", "UTC")
    assert json.loads(row["tab_rows"]) == result.tab_rows
    assert (row["period_start"], row["period_end"]) == ("2025-08-01", "2025-08-02")
    assert row["duration_ms"] >= 0


def test_failed_export_leaves_no_file_and_records_the_failure(filled, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 1), UTC)
    writer = XlsxWriter(blocker / "report.xlsx")
    with pytest.raises(ExportError, match="Cannot write the export"):
        export_report(filled, period, writer, fmt="xlsx")
    row = filled.execute("SELECT status, error_message FROM export_history").fetchone()
    assert row["status"] == "failed"
    assert "not-a-folder" in row["error_message"]
    assert blocker.read_text() == "x"


def test_an_unwritable_folder_is_named_by_the_file_asked_for(
    filled, tmp_path, monkeypatch
):
    import peachdw.export as export

    def refuse(dir, prefix, suffix):
        # What mkstemp raises in a folder the user may not write to.
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}x1y2{suffix}")

    monkeypatch.setattr(export.tempfile, "mkstemp", refuse)
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 1), UTC)
    target = tmp_path / "report.xlsx"
    with pytest.raises(ExportError) as raised:
        export_report(filled, period, XlsxWriter(target), fmt="xlsx")
    assert str(raised.value) == (
        f"Cannot write the export to {target}: Permission denied. Choose another "
        "--output, or make its folder writable."
    )


def test_a_failed_tab_replaces_no_csv_file(filled, tmp_path, monkeypatch):
    old = tmp_path / "r_summary.csv"
    old.write_text("previous report")
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 1), UTC)
    writer = CsvWriter(
        ("Summary", "Daily"), period, output=tmp_path / "r.csv", directory=tmp_path
    )
    import peachdw.export as export

    real = export._write_rows
    calls = []

    def fail_on_second(stream, tab):
        calls.append(tab.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(stream, tab)

    monkeypatch.setattr(export, "_write_rows", fail_on_second)
    with pytest.raises(ExportError, match="No space left"):
        export_report(filled, period, writer, fmt="csv")
    assert old.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "r_summary.csv",
        "warehouse.db",
    ] + [p.name for p in tmp_path.iterdir() if p.name.startswith("warehouse.db-")]


def test_excel_cells_are_typed_and_sheets_are_formatted(filled, tmp_path):
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 2), UTC)
    path = tmp_path / "report.xlsx"
    export_report(filled, period, XlsxWriter(path), fmt="xlsx")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", "Daily", "Hierarchy"]
    tabs = by_name(build_tabs(filled, period))
    for name, tab in tabs.items():
        sheet = book[name]
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref.startswith("A1:")
        assert all(cell.font.b for cell in sheet[1])
        values = [list(row) for row in sheet.iter_rows(min_row=2, values_only=True)]
        expected = [
            [
                datetime(v.year, v.month, v.day) if isinstance(v, date) else v
                for v in row
            ]
            for row in tab.rows
        ]
        assert values == expected, name

    summary = book["Summary"]
    evil = next(row for row in summary.iter_rows(min_row=2) if row[0].value == 2)
    assert evil[1].data_type == "s" and evil[1].value == EVIL
    assert book["Daily"]["A2"].is_date
    assert book["Daily"]["A2"].number_format == "yyyy-mm-dd"
    sessions = column(tabs["Summary"], "sessions") + 1
    assert summary.cell(row=2, column=sessions).number_format == "#,##0"
    assert summary.column_dimensions["B"].width > len("campaign_name")


def test_fit_text_removes_xml_illegal_characters_and_cuts_at_a_whole_character():
    assert fit_text("a\x00b\x07c\td\ne\x1f") == ("abc\td\ne", False)
    long = "x" * (EXCEL_CELL_UNITS - 1) + "🔥🔥"  # the emoji takes two UTF-16 units
    text, cut = fit_text(long)
    assert cut and text == "x" * (EXCEL_CELL_UNITS - 1)
    accents = "e\u0301" * 20_000  # é as a letter and a combining accent
    text, cut = fit_text(accents)
    assert cut and utf16_units(text) <= EXCEL_CELL_UNITS and text.endswith("e\u0301")


def test_excel_export_completes_with_a_control_character_and_an_overlong_name(
    filled, tmp_path
):
    with transaction(filled):
        filled.execute(
            "UPDATE campaigns SET name = ? WHERE id = 1", ("bell\x07" + "n" * 40_000,)
        )
        filled.execute("UPDATE campaigns SET name = 'tab\x0bname' WHERE id = 3")
        # The same overlong name on another campaign is cut and named too.
        filled.execute(
            "UPDATE campaigns SET name = ? WHERE id = 2", ("bell\x07" + "n" * 40_000,)
        )
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 1), UTC)
    path = tmp_path / "report.xlsx"
    result = export_report(filled, period, XlsxWriter(path), fmt="xlsx")
    cut = f"is longer than Excel's {EXCEL_CELL_UNITS:,} characters and was cut."
    assert sorted(result.warnings) == sorted(
        f"{tab}: campaign_name of campaign {cid} {cut}"
        for tab in ("Summary", "Daily")
        for cid in (1, 2)
    )
    summary = openpyxl.load_workbook(path)["Summary"]
    names = {row[0]: row[1] for row in summary.iter_rows(min_row=2, values_only=True)}
    assert names[1] == ("bell" + "n" * 40_000)[:EXCEL_CELL_UNITS]
    assert names[3] == "tabname"


def test_a_failed_excel_export_keeps_the_previous_file(filled, tmp_path, monkeypatch):
    path = tmp_path / "report.xlsx"
    path.write_bytes(b"previous workbook")
    period = ReportPeriod(date(2025, 8, 1), date(2025, 8, 1), UTC)
    writer = XlsxWriter(path)
    monkeypatch.setattr(
        writer, "_records", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error"))
    )
    with pytest.raises(ExportError, match="I/O error"):
        export_report(filled, period, writer, fmt="xlsx")
    assert path.read_bytes() == b"previous workbook"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_export_month_workbook_agrees_with_itself_and_the_database(
    warehouse, db_path, tmp_path
):
    """The month of the autumn clock change in Berlin, through the command line, read
    back with openpyxl: every tab agrees with the others and with the stored hours."""
    from click.testing import CliRunner

    from peachdw.cli import cli
    from peachdw.sandbox import Dataset

    berlin = ZoneInfo("Europe/Berlin")
    start = int(datetime(2025, 10, 1, tzinfo=berlin).timestamp()) // 3600
    end = int(datetime(2025, 11, 1, tzinfo=berlin).timestamp()) // 3600
    assert end - start == 31 * 24 + 1  # October has a 25-hour day there
    dataset = Dataset(seed=11, campaigns=30, now=datetime(2025, 11, 3, tzinfo=UTC))
    with transaction(warehouse):
        for campaign in dataset.campaigns:
            warehouse.execute(
                "INSERT INTO campaigns (id, name, is_serving) VALUES (?, ?, 1)",
                (campaign["id"], campaign["name"]),
            )
        # A day either side, so the edges of the month are cut where Berlin cuts them.
        rows = dataset.metrics(start - 24, end + 24)
        warehouse.executemany(
            f"INSERT INTO hourly_data (campaign_id, unix_hour, "
            f"{', '.join(BUILTIN_METRICS)}) VALUES (?, ?, "
            f"{', '.join('?' for _ in BUILTIN_METRICS)})",
            [
                (r["campaign_id"], r["unix_hour"], *map(r.get, BUILTIN_METRICS))
                for r in rows
            ],
        )
        rules.map_campaigns(warehouse)
    stored = {}
    for r in rows:
        if start <= r["unix_hour"] < end:
            totals = stored.setdefault(r["campaign_id"], [0] * len(BUILTIN_METRICS))
            for i, name in enumerate(BUILTIN_METRICS):
                totals[i] += r[name]

    path = tmp_path / "october.xlsx"
    result = CliRunner().invoke(
        cli,
        ["export-month", "--month", "October", "--year", "2025", "--output", str(path)],
        env={
            "PEACHDW_DATABASE_PATH": str(db_path),
            "PEACHDW_REPORTING_TIMEZONE": "Europe/Berlin",
            "TZ": "Pacific/Kiritimati",
        },
    )
    assert result.exit_code == 0, result.output

    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", "Daily", "Hierarchy"]

    def records(name):
        rows = list(book[name].iter_rows(values_only=True))
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]

    summary, daily, hierarchy = (records(n) for n in book.sheetnames)
    # Summary: one row per campaign, each total the sum of its stored hours.
    assert len(summary) == 30
    zeros = [0] * len(BUILTIN_METRICS)
    assert {
        row["campaign_id"]: [row[m] for m in BUILTIN_METRICS] for row in summary
    } == {
        campaign["id"]: stored.get(campaign["id"], zeros)
        for campaign in dataset.campaigns
    }
    # Daily: every day of October in Berlin, nothing outside, and sums equal Summary.
    days = {row["date"].date() for row in daily}
    assert min(days) == date(2025, 10, 1) and max(days) == date(2025, 10, 31)
    by_campaign = {}
    for row in daily:
        sums = by_campaign.setdefault(row["campaign_id"], [0] * len(BUILTIN_METRICS))
        for i, name in enumerate(BUILTIN_METRICS):
            sums[i] += row[name]
    assert by_campaign == {cid: v for cid, v in stored.items() if any(v)}
    # Hierarchy: the total equals the sum of Summary; each level sums to the one above.
    grand = [sum(row[m] for row in summary) for m in BUILTIN_METRICS]
    total = next(row for row in hierarchy if row["level"] == "Total")
    assert [total[m] for m in BUILTIN_METRICS] == grand
    assert total["campaigns"] == 30
    levels = ["Network", "Domain", "Placement", "Targeting", "Special"]
    tiers = ["network", "domain", "placement", "targeting", "special"]
    assert all(any(r["level"] == level for r in hierarchy) for level in levels)
    for depth in range(1, len(levels)):
        for parent in (r for r in hierarchy if r["level"] == levels[depth - 1]):
            key = [parent[t] for t in tiers[:depth]]
            children = [
                r
                for r in hierarchy
                if r["level"] == levels[depth] and [r[t] for t in tiers[:depth]] == key
            ]
            for m in (*BUILTIN_METRICS, "campaigns"):
                assert sum(r[m] for r in children) == parent[m], (key, m)
    networks = [r for r in hierarchy if r["level"] == "Network"]
    assert [sum(r[m] for r in networks) for m in BUILTIN_METRICS] == grand


def test_short_days_come_from_the_sync_ledger_in_the_reporting_zone(warehouse):
    # Read: 2025-08-01 00:00Z to 08-02 10:00Z and 08-04 00:00Z to 08-05 00:00Z; a
    # window for one campaign only and a failed window count for nothing.
    day = HOUR_2025_08_01
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO sync_history (id, sync_type, status, started_at) "
            "VALUES (1, 'incremental', 'success', '2025-08-05T00:00:00Z')"
        )
        warehouse.executemany(
            "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status, "
            "finished_at) VALUES (1, ?, ?, ?, '2025-08-05T00:00:00Z')",
            [
                (day, day + 24, "done"),
                (day + 24, day + 34, "done"),
                (day + 34, day + 48, "failed"),
                (day + 72, day + 96, "done"),
            ],
        )
        warehouse.execute("INSERT INTO campaigns (id, name) VALUES (7, 'x')")
        warehouse.execute(
            "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status, "
            "finished_at, campaign_id) VALUES (1, ?, ?, 'done', 'x', 7)",
            (day + 48, day + 72),
        )
    period = ReportPeriod(date(2025, 7, 31), date(2025, 8, 6), UTC)
    now = day + 24 * 5 + 6  # 2025-08-06 06:00Z: six hours of the last day are over

    short = short_days(warehouse, period, now)

    assert [(d.day.isoformat(), d.hours, d.read, d.to_come) for d in short] == [
        ("2025-07-31", 24, 0, 0),
        ("2025-08-02", 24, 10, 0),
        ("2025-08-03", 24, 0, 0),
        ("2025-08-05", 24, 0, 0),
        ("2025-08-06", 24, 0, 18),
    ]
    assert describe_short_days(short) == (
        "2025-07-31 (not read), 2025-08-02 (10 of 24 hours read), 2025-08-03 "
        "(not read), 2025-08-05 (not read), 2025-08-06 (0 of 24 hours read)"
    )
    assert describe_short_days(short, limit=2).endswith(", and 3 more")

    # In Berlin the same ledger cuts other days: 08-01 starts at 07-31 22:00Z.
    berlin = ReportPeriod(date(2025, 8, 1), date(2025, 8, 1), ZoneInfo("Europe/Berlin"))
    assert [(d.read, d.hours) for d in short_days(warehouse, berlin, now)] == [(22, 24)]


def test_consecutive_days_in_one_state_are_one_run():
    from peachdw.quality import DayCoverage

    days = [DayCoverage(date(2025, 3, n), 24, 0, 0) for n in (1, 2, 3, 5)]
    days.append(DayCoverage(date(2025, 3, 30), 23, 0, 23))
    days.append(DayCoverage(date(2025, 3, 31), 24, 0, 24))
    assert describe_short_days(days) == (
        "2025-03-01 to 2025-03-03 (not read), 2025-03-05 (not read), "
        "2025-03-30 to 2025-03-31 (still to come)"
    )
