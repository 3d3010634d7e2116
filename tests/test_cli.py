"""The command line as a user runs it: real processes, a real sandbox, real files."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sandbox_helpers import FROZEN, TOKEN, stored_hours

from peachdw.cli import cli
from peachdw.sandbox import Dataset, FaultPlan, SandboxServer

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(cli.commands)


def leaf_commands(group, prefix=()):
    """Every command a user can run, as its words, subcommands of groups included."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def run(args, cwd, env=None, timeout=120):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PEACH",))}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "peachdw", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def live_api():
    """A sandbox on the live clock, as a user would start it."""
    with SandboxServer(Dataset(seed=3, campaigns=60), TOKEN) as server:
        yield server


@pytest.mark.parametrize("words", list(leaf_commands(cli)), ids=" ".join)
def test_every_command_has_help_with_the_global_options(words):
    result = CliRunner().invoke(cli, [*words, "--help"])
    assert result.exit_code == 0
    for option in (
        "--config",
        "--db-path",
        "--api-url",
        "--api-token",
        "--verbose",
        "--dry-run",
    ):
        assert option in result.output


def test_commands_of_this_release_are_all_there():
    assert {"init", "sync", "status", "export", "sandbox", "demo"} <= set(COMMANDS)


def test_main_py_runs_the_same_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "sync" in result.stdout


def test_sync_without_a_token_says_how_to_give_one(tmp_path):
    result = run(["sync"], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "Error: No API token: set PEACHAI_API_TOKEN, pass --api-token, or set "
        "api.bearer_token in config/settings.yaml."
    ]


def test_unknown_setting_is_one_line_naming_key_and_file(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.yaml").write_text("sync:\n  look_back: 3\n")
    result = run(["status"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: Setting 'sync.look_back' from config/settings.yaml is not a known "
        "setting; see config/settings.example.yaml for the valid keys."
    )


def test_bad_date_is_a_usage_error(tmp_path):
    run(["init"], tmp_path)
    result = run(["export", "--start-date", "2025-13-01"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: Invalid value for --start-date: '2025-13-01' is not a date; use "
        "YYYY-MM-DD. See `peachdw export --help`."
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--bogus", "status"],
            "No such option '--bogus'. Did you mean '--verbose'? See `peachdw --help`.",
        ),
        (
            ["exprot"],
            "No such command 'exprot'. Did you mean 'export'? See `peachdw --help`.",
        ),
        (
            ["debug-campaign"],
            "Missing argument 'CAMPAIGN_ID'. See `peachdw debug-campaign --help`.",
        ),
        (
            ["hierarchy", "rules", "add"],
            "Missing option '--pattern'. See `peachdw hierarchy rules add --help`.",
        ),
        (
            ["debug-campaign", "abc"],
            "Invalid value for 'CAMPAIGN_ID': 'abc' is not a campaign id; give the "
            "number from `peachdw status` or the exports. See `peachdw debug-campaign "
            "--help`.",
        ),
        (
            ["sync-historical", "--campaign-id", "0", "--month", "8", "--year", "2025"],
            "Invalid value for '--campaign-id': '0' is not a campaign id; give the "
            "number from `peachdw status` or the exports. See `peachdw sync-historical "
            "--help`.",
        ),
    ],
)
def test_usage_errors_are_one_line_naming_the_help(args, line):
    result = CliRunner().invoke(cli, args, prog_name="peachdw")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {line}\n"


def test_a_group_without_a_command_still_shows_its_help():
    result = CliRunner().invoke(cli, ["hierarchy"])
    assert "Commands:" in result.output
    assert "Error" not in result.output


def test_status_before_init_says_run_init(tmp_path):
    result = run(["status"], tmp_path)
    assert result.returncode == 1
    assert "Run `peachdw init` first" in result.stderr


def test_dry_run_sync_creates_no_file(tmp_path, live_api):
    result = run(
        ["sync", "--dry-run", "--api-url", live_api.url],
        tmp_path,
        env={"PEACHAI_API_TOKEN": TOKEN},
    )
    assert result.returncode == 0, result.stderr
    assert "would be inserted" in result.stdout
    assert not (tmp_path / "data").exists()


def test_bad_token_exits_non_zero_and_is_never_shown(tmp_path, live_api):
    secret = "not-the-right-token-42"
    result = run(
        ["sync", "--api-url", live_api.url], tmp_path, env={"PEACHAI_API_TOKEN": secret}
    )
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert "PEACHAI_API_TOKEN" in result.stderr
    assert live_api.requests["/admin/campaigns"] == 1
    assert "again" not in result.stderr  # a rerun cannot cure a refused token
    assert secret not in result.stdout + result.stderr
    database = (tmp_path / "data" / "datawarehouse.db").read_bytes()
    assert secret.encode() not in database
    for extra in tmp_path.joinpath("data").glob("*-wal"):
        assert secret.encode() not in extra.read_bytes()


def test_sync_status_export_against_a_flaky_sandbox(tmp_path):
    dataset = Dataset(seed=4, campaigns=60)
    plan = FaultPlan({"429": 0.2, "500": 0.1}, seed=8)
    with SandboxServer(dataset, TOKEN, faults=plan) as flaky:
        env = {"PEACHAI_API_TOKEN": TOKEN, "PEACHDW_SYNC_WINDOW_HOURS": "24"}
        synced = run(["sync", "--api-url", flaky.url], tmp_path, env=env)
        injected = sum(flaky.faults_injected.values())
    assert synced.returncode == 0, synced.stderr
    assert injected > 0

    conn = sqlite3.connect(tmp_path / "data" / "datawarehouse.db")
    status, retries, inserted = conn.execute(
        "SELECT status, api_retries, records_inserted FROM sync_history"
    ).fetchone()
    assert (status, retries) == ("success", injected)
    assert inserted > 0

    shown = run(["status"], tmp_path)
    assert shown.returncode == 0
    assert "success" in shown.stdout

    output = tmp_path / "report.csv"
    exported = run(["export", "--format", "csv", "--output", str(output)], tmp_path)
    assert exported.returncode == 0, exported.stderr
    with open(tmp_path / "report_summary.csv", encoding="utf-8-sig") as stream:
        rows = list(csv.DictReader(stream))
    # Every campaign but the deleted ones that have no hours in the report.
    shown = conn.execute(
        "SELECT count(*) FROM campaigns WHERE NOT is_deleted "
        "OR id IN (SELECT campaign_id FROM hourly_data)"
    ).fetchone()[0]
    assert len(rows) == shown > 50
    assert (
        sum(int(r["sessions"]) for r in rows)
        == conn.execute("SELECT sum(sessions) FROM hourly_data").fetchone()[0]
    )


def test_sync_killed_midway_leaves_a_sound_file_and_the_next_sync_completes(tmp_path):
    dataset = Dataset(seed=5, campaigns=60)
    env = {"PEACHAI_API_TOKEN": TOKEN, "PEACHDW_SYNC_WINDOW_HOURS": "24"}
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    killed_dir.mkdir()
    clean_dir.mkdir()
    killed_db = killed_dir / "data" / "datawarehouse.db"

    with SandboxServer(dataset, TOKEN, latency=0.3) as api:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PEACH")}
        process = subprocess.Popen(
            [sys.executable, "-m", "peachdw", "sync", "--api-url", api.url],
            cwd=killed_dir,
            env={**environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and done < 2:
            time.sleep(0.05)
            if killed_db.exists():
                try:
                    with sqlite3.connect(killed_db, timeout=1) as probe:
                        done = probe.execute(
                            "SELECT count(*) FROM sync_windows WHERE status = 'done'"
                        ).fetchone()[0]
                except sqlite3.OperationalError:
                    continue
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert done >= 2

        conn = sqlite3.connect(killed_db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        windows = conn.execute("SELECT count(*) FROM sync_windows").fetchone()[0]
        assert 2 <= windows < 7
        assert (
            conn.execute("SELECT status FROM sync_history").fetchone()[0] == "running"
        )

        api.latency = 0
        resumed = run(["sync", "--api-url", api.url], killed_dir, env=env)
        assert resumed.returncode == 0, resumed.stderr
        clean = run(["sync", "--api-url", api.url], clean_dir, env=env)
        assert clean.returncode == 0, clean.stderr

    statuses = [
        row[0] for row in conn.execute("SELECT status FROM sync_history ORDER BY id")
    ]
    assert statuses == ["interrupted", "success"]
    other = sqlite3.connect(clean_dir / "data" / "datawarehouse.db")
    # Compare the hours both runs cover that the API no longer changes.
    first = max(
        c.execute("SELECT min(start_hour) FROM sync_windows").fetchone()[0]
        for c in (conn, other)
    )
    last = int(time.time() // 3600) - 4
    killed_rows = stored_hours(conn, first, last)
    assert killed_rows == stored_hours(other, first, last)
    assert len(killed_rows) > 1000


def test_demo_from_an_empty_folder(tmp_path):
    result = run(["demo"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    conn = sqlite3.connect(tmp_path / "data" / "datawarehouse.db")
    assert conn.execute("SELECT count(*) FROM campaigns").fetchone()[0] >= 200
    assert conn.execute("SELECT count(*) FROM campaign_hierarchy").fetchone()[0] >= 200
    hours = conn.execute("SELECT max(unix_hour) - min(unix_hour) FROM hourly_data")
    assert hours.fetchone()[0] >= 7 * 24 - 2
    status, inserted = conn.execute(
        "SELECT status, records_inserted FROM sync_history"
    ).fetchone()
    assert status == "success" and inserted > 0
    assert len(list((tmp_path / "exports").glob("*.csv"))) == 1
    assert len(list((tmp_path / "exports").glob("*.xlsx"))) == 1
    assert "Demo finished" in result.stdout


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """A folder whose warehouse holds one sync of a small sandbox."""
    folder = tmp_path_factory.mktemp("synced")
    with SandboxServer(Dataset(seed=6, campaigns=30), TOKEN) as server:
        result = run(
            ["sync", "--api-url", server.url], folder, env={"PEACHAI_API_TOKEN": TOKEN}
        )
    assert result.returncode == 0, result.stderr
    return folder


def test_export_to_standard_output(synced):
    result = run(["export", "--daily", "--output", "-"], synced)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("date,campaign_id,campaign_name,network")
    assert len(lines) > 30
    assert "Wrote" in result.stderr


def test_export_writes_through_a_symbolic_link(synced, tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old")
    target.chmod(0o600)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    result = run(["export", "--tab", "summary", "--output", str(link)], synced)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert target.read_text(encoding="utf-8-sig").startswith("campaign_id,")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_export_of_an_empty_period_warns_with_what_is_held(synced):
    result = run(
        ["export", "--start-date", "2001-01-01", "--end-date", "2001-01-31"], synced
    )
    assert result.returncode == 0
    assert (
        "No hour of 2001-01-01 to 2001-01-31 has been synced, so every total in the "
        "report is 0 (the warehouse holds 20"
    ) in result.stderr
    assert (
        "`peachdw sync-historical --start-date 2001-01-01 --end-date 2001-01-31` "
        "reads the hours missing."
    ) in result.stderr
    assert "Daily 0 rows" in result.stdout


def test_export_warns_of_days_the_syncs_left_short(synced):
    conn = sqlite3.connect(synced / "data" / "datawarehouse.db")
    (first,) = conn.execute("SELECT min(start_hour) FROM sync_windows").fetchone()
    conn.close()
    first_day = datetime.fromtimestamp(first * 3600, UTC).date()
    before = first_day - timedelta(days=3)

    result = run(["export", "--start-date", str(before), "--dry-run"], synced)

    assert result.returncode == 0, result.stderr
    # The first sync starts at the hour it ran, so its first day is partly read,
    # unless it ran in the first hour of a UTC day.
    read = 24 - first % 24
    partial = f", {first_day} ({read} of 24 hours read)" if read < 24 else ""
    last_unread = first_day if read < 24 else first_day - timedelta(days=1)
    assert (
        f"Days not wholly synced, whose totals are short: {before} to "
        f"{first_day - timedelta(days=1)} (not read){partial}"
    ) in result.stderr
    assert f"--start-date {before} --end-date {last_unread}` reads" in result.stderr


def test_export_of_a_period_to_come_says_so(synced):
    result = run(
        ["export-month", "--month", "1", "--year", "2100", "--dry-run"], synced
    )
    assert result.returncode == 0, result.stderr
    assert "2100-01-01 to 2100-01-31 has not begun yet" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--start-date", "2100-01-01"],
            "Invalid value for --start-date: 2100-01-01 is after the last day the "
            "warehouse holds",
        ),
        (
            ["--end-date", "2001-01-01"],
            "Invalid value for --end-date: 2001-01-01 is before the first day the "
            "warehouse holds",
        ),
        (
            ["--start-date", "20010101"],
            "'20010101' is not a date; use YYYY-MM-DD.",
        ),
        (
            ["--output", "report.xlsx"],
            "report.xlsx names a workbook but --format is csv; add --format xlsx",
        ),
        (
            ["--format", "xlsx", "--output", "report.csv"],
            "report.csv does not end in .xlsx, by which Excel opens workbooks",
        ),
        (
            ["--daily", "--tab", "summary"],
            "--daily is the Daily tab alone; give it or --tab, not both",
        ),
    ],
    ids=[
        "start-after-held",
        "end-before-held",
        "basic-date",
        "csv-as-xlsx",
        "xlsx-as-csv",
        "daily-and-tab",
    ],
)
def test_export_refuses_a_period_or_target_that_cannot_be_meant(synced, args, message):
    result = run(["export", *args], synced)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (synced / "report.xlsx").exists()
    assert not (synced / "report.csv").exists()


def test_excel_export_into_a_folder_gets_a_dated_workbook(synced, tmp_path):
    folder = tmp_path / "reports"
    result = run(["export", "--format", "xlsx", "--output", str(folder)], synced)
    assert result.returncode == 0, result.stderr
    (workbook,) = folder.glob("peachdw_*.xlsx")
    assert str(workbook) in result.stdout


def test_demo_keeps_to_its_own_file(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.yaml").write_text("database:\n  path: prod.db\n")
    result = run(["demo", "--dry-run"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sync into data/datawarehouse.db" in result.stdout
    assert not (tmp_path / "prod.db").exists()


def test_demo_refuses_a_warehouse_synced_from_a_real_api(tmp_path):
    run(["init", "--db-path", "real.db"], tmp_path)
    conn = sqlite3.connect(tmp_path / "real.db")
    conn.execute(
        "INSERT INTO sync_history (sync_type, status, started_at, api_base_url) "
        "VALUES ('incremental', 'success', '2026-01-01T00:00:00Z', 'https://api.example')"
    )
    conn.commit()
    result = run(["demo", "--db-path", "real.db"], tmp_path)
    assert result.returncode == 1
    assert "holds data synced from https://api.example" in result.stderr
    assert conn.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_sandbox_command_serves_a_sync_through_its_faults(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PEACH")}
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "peachdw",
            "sandbox",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--seed",
            "1",
            "--campaigns",
            "40",
            "--faults",
            "429:0.2,500:0.1",
        ],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = sandbox.stdout.readline()
        url = line.split()[3]
        assert url.startswith("http://127.0.0.1:")
        env = {"PEACHAI_API_TOKEN": TOKEN, "PEACHDW_SYNC_WINDOW_HOURS": "12"}
        result = run(["sync", "--api-url", url], tmp_path, env=env)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(tmp_path / "data" / "datawarehouse.db")
    status, retries, calls = conn.execute(
        "SELECT status, api_retries, api_calls FROM sync_history"
    ).fetchone()
    assert status == "success"
    assert retries > 0
    # One campaign page, fourteen 12-hour windows and the daily reports.
    assert calls == retries + 1 + 14 + 1


def test_bad_fault_spec_is_a_usage_error(tmp_path):
    result = run(["sandbox", "--faults", "429:lots"], tmp_path)
    assert result.returncode == 2
    assert "--faults" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "August"], "--month needs --year"),
        (["--month", "Augst", "--year", "2025"], "'Augst' is not a month"),
        (
            ["--month", "8", "--year", "2025", "--start-date", "2025-08-01"],
            "Give --month and --year, or --start-date and --end-date",
        ),
        (["--start-date", "2025-08-01"], "Say what to load"),
        (
            ["--start-date", "2025-08-09", "--end-date", "2025-08-01"],
            "after --end-date",
        ),
        (["--start-date", "2999-01-01", "--end-date", "2999-01-02"], "not in the past"),
    ],
)
def test_sync_historical_says_what_is_wrong_with_its_range(tmp_path, args, message):
    result = run(["sync-historical", *args], tmp_path, env={"PEACHAI_API_TOKEN": TOKEN})
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "data").exists()


def test_sync_historical_month_logs_each_window_and_resume_reads_nothing(tmp_path):
    with SandboxServer(Dataset(seed=8, campaigns=20, now=FROZEN), TOKEN) as api:
        args = [
            "sync-historical",
            "--month",
            "July",
            "--year",
            "2025",
            "--api-url",
            api.url,
        ]
        first = run(args, tmp_path, env={"PEACHAI_API_TOKEN": TOKEN})
        metrics_calls = api.requests["/admin/metrics"]
        again = run([*args, "--resume"], tmp_path, env={"PEACHAI_API_TOKEN": TOKEN})
        assert api.requests["/admin/metrics"] == metrics_calls == 5

    assert first.returncode == 0, first.stderr
    assert "Windows 5/5 done (0 failed)" in first.stderr
    assert "2025-07-01 00:00 UTC to 2025-07-31 23:00 UTC" in first.stdout
    assert again.returncode == 0, again.stderr
    assert "0 done, 0 failed, 5 already done before" in again.stdout


def test_hierarchy_test_explains_a_name_without_writing(tmp_path):
    run(["init"], tmp_path)
    database = tmp_path / "data" / "datawarehouse.db"
    before = database.read_bytes()
    result = run(
        ["hierarchy", "test", "Exo-Click|peach.ai|Native|US Mobile|LAL"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    network = next(line for line in lines if "│ network" in line)
    assert "ExoClick" in network and "network.exoclick" in network
    assert "(?<![a-z0-9])" in result.stdout  # patterns shown as written, brackets too
    assert "confidence 0.96: ok" in result.stdout
    geo = next(line for line in lines if "│   geo" in line)
    assert "US" in geo and "targeting.geo.us" in geo
    assert "Lookalike · US · Mobile" in result.stdout
    assert database.read_bytes() == before


def test_hierarchy_test_flags_a_name_that_needs_a_rule(tmp_path):
    result = run(["hierarchy", "test", "Mystery campaign 7"], tmp_path)
    assert result.returncode == 0, result.stderr
    network = next(line for line in result.stdout.splitlines() if "│ network" in line)
    assert "Unknown" in network and "fallback.network" in network
    assert "needs a rule" in result.stdout
    assert not (tmp_path / "data").exists()


def test_export_into_a_pipe_closed_early_is_quiet(synced):
    # `true` exits at once, so the export writes into a pipe nobody reads any more.
    # (A reader that takes a few lines first may let a small tab fit whole into the
    # pipe's buffer before it stops, and the export then rightly says it wrote it all.)
    command = f"{sys.executable} -m peachdw export --daily --output - | true"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PEACH")}
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=synced,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Broken pipe" not in result.stderr
    assert "Error" not in result.stderr
    # Nothing claims the tab was written whole, here or in the history.
    assert "Wrote" not in result.stderr
    assert (
        "Stopped early: The reader closed standard output before the end of Daily"
        in (result.stderr)
    )
    conn = sqlite3.connect(synced / "data" / "datawarehouse.db")
    note, written, tab_rows = conn.execute(
        "SELECT error_message, rows_written, tab_rows FROM export_history "
        "ORDER BY id DESC"
    ).fetchone()
    (daily,) = conn.execute("SELECT count(*) FROM daily_totals").fetchone()
    # Rows before the first write that failed may count as written; never the whole
    # tab.
    assert 0 <= written < daily
    assert json.loads(tab_rows) == {"Daily": written}
    assert note == (
        "The reader closed standard output before the end of Daily, after at most "
        f"{written:,} of its {daily:,} rows."
    )


def test_backfill_of_an_unknown_campaign_fails_clearly(tmp_path):
    with SandboxServer(Dataset(seed=9, campaigns=10, now=FROZEN), TOKEN) as api:
        result = run(
            [
                "sync-historical",
                "--month",
                "July",
                "--year",
                "2025",
                "--campaign-id",
                "99999",
                "--api-url",
                api.url,
            ],
            tmp_path,
            env={"PEACHAI_API_TOKEN": TOKEN},
        )
        assert api.requests["/admin/metrics"] == 0
    # A typo, refused before any sync starts: nothing for `status --check` to alert on.
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for --campaign-id: campaign 99999 is neither in the "
        "warehouse nor in the API's campaign listing (10 campaigns); `peachdw export "
        "--tab summary --output -` lists every campaign's id. See `peachdw "
        "sync-historical --help`."
    )
    assert not (tmp_path / "data").exists()


def test_rule_add_then_remap_dry_run_shows_exactly_what_moves(tmp_path):
    run(["init"], tmp_path)
    conn = sqlite3.connect(tmp_path / "data" / "datawarehouse.db")
    conn.executemany(
        "INSERT INTO campaigns (id, name) VALUES (?, ?)",
        [
            (1, "EXO_peach.ai_Native_LatAm_RT"),
            (2, "TJ_peach.ai_Banner_US_broad"),
            (3, "TS_peach.ai_Native_LATAM_LAL"),
        ],
    )
    conn.commit()
    assert run(["hierarchy", "remap"], tmp_path).returncode == 0

    added = run(
        [
            "hierarchy",
            "rules",
            "add",
            "--pattern",
            "latam",
            "--set",
            "special=LatAm",
            "--priority",
            "200",
        ],
        tmp_path,
    )
    assert added.returncode == 0, added.stderr
    preview = run(["hierarchy", "remap", "--dry-run"], tmp_path)
    assert "2 mappings would change" in preview.stdout
    moved = [
        line.split("│")[1].strip()
        for line in preview.stdout.splitlines()
        if line.startswith("│") and line.split("│")[1].strip().isdigit()
    ]
    assert moved == ["1", "3"]
    assert "Standard" in preview.stdout and "LatAm" in preview.stdout
    assert (
        conn.execute(
            "SELECT count(*) FROM campaign_hierarchy WHERE special = 'LatAm'"
        ).fetchone()[0]
        == 0
    )

    assert "2 mappings changed" in run(["hierarchy", "remap"], tmp_path).stdout
    assert (
        "No mapping changes"
        in run(["hierarchy", "remap", "--dry-run"], tmp_path).stdout
    )
    unmapped = run(["hierarchy", "unmapped"], tmp_path)
    assert unmapped.returncode == 0


def test_rule_commands_write_nothing_with_dry_run(tmp_path):
    run(["init"], tmp_path)
    database = tmp_path / "data" / "datawarehouse.db"

    def stored_rules():
        with sqlite3.connect(database) as conn:
            return conn.execute("SELECT * FROM hierarchy_rules ORDER BY id").fetchall()

    before = stored_rules()
    for words in (
        ["remove", "1"],
        ["disable", "1"],
        ["enable", "1"],
        ["export", str(tmp_path / "r.yaml")],
    ):
        result = run(["hierarchy", "rules", *words, "--dry-run"], tmp_path)
        assert result.returncode == 0, result.stderr
        assert "would" in result.stdout.lower()
    assert stored_rules() == before
    assert not (tmp_path / "r.yaml").exists()
    # Without --dry-run the same command does write, so the comparison can fail.
    assert run(["hierarchy", "rules", "disable", "1"], tmp_path).returncode == 0
    assert stored_rules() != before


def test_hierarchy_test_explains_a_stored_campaign_with_its_override(tmp_path):
    run(["init"], tmp_path)
    conn = sqlite3.connect(tmp_path / "data" / "datawarehouse.db")
    conn.execute("INSERT INTO campaigns (id, name) VALUES (7, 'Mystery campaign')")
    conn.commit()
    added = run(
        [
            "hierarchy",
            "rules",
            "add",
            "--type",
            "campaign_id",
            "--pattern",
            "7",
            "--set",
            "network=Hand-picked",
        ],
        tmp_path,
    )
    assert added.returncode == 0, added.stderr

    by_id = run(["hierarchy", "test", "--campaign-id", "7"], tmp_path)
    assert by_id.returncode == 0, by_id.stderr
    network = next(line for line in by_id.stdout.splitlines() if "│ network" in line)
    assert "Hand-picked" in network and "campaign_id 7" in network

    missing = run(["hierarchy", "test", "--campaign-id", "8"], tmp_path)
    assert missing.returncode == 2
    assert "no campaign 8" in missing.stderr
    neither = run(["hierarchy", "test"], tmp_path)
    assert neither.returncode == 2


def test_status_check_is_quiet_when_fresh_and_names_each_problem(tmp_path, live_api):
    env = {"PEACHAI_API_TOKEN": TOKEN}
    assert run(["sync", "--api-url", live_api.url], tmp_path, env=env).returncode == 0
    fresh = run(["status", "--check"], tmp_path)
    assert fresh.returncode == 0, fresh.stdout
    assert fresh.stdout == ""  # no terminal, as under cron: nothing to mail

    failed = run(
        ["sync", "--api-url", live_api.url],
        tmp_path,
        env={"PEACHAI_API_TOKEN": "wrong-token-xyz"},
    )
    assert failed.returncode == 1
    stale = run(
        ["status", "--check"], tmp_path, env={"PEACHDW_QUALITY_MAX_LAG_HOURS": "1"}
    )
    problems = [
        line for line in stale.stdout.splitlines() if line.startswith("PROBLEM")
    ]
    assert stale.returncode == 1
    assert len(problems) == 1
    assert "ended failed" in problems[0] and "HTTP 401" in problems[0]


def test_status_check_names_stale_data(tmp_path):
    with SandboxServer(Dataset(seed=12, campaigns=10, now=FROZEN), TOKEN) as api:
        args = [
            "sync-historical",
            "--start-date",
            "2025-07-01",
            "--end-date",
            "2025-07-02",
            "--api-url",
            api.url,
        ]
        assert run(args, tmp_path, env={"PEACHAI_API_TOKEN": TOKEN}).returncode == 0
    result = run(["status", "--check"], tmp_path)
    assert result.returncode == 1
    assert "PROBLEM: Data is" in result.stdout
    assert "more than quality.max_lag_hours (26)" in result.stdout

    as_json = run(["status", "--json"], tmp_path)
    document = json.loads(as_json.stdout)
    assert document["syncs"][0]["sync_type"] == "historical"
    assert document["hourly_rows"] > 0
    # The unix hours, and beside them the same hours as people read them.
    for name in ("first_hour", "latest_hour"):
        hour = document[name]
        assert document[f"{name}_utc"] == (
            datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H:00:00Z")
        )
    assert document["first_hour_utc"].startswith("2025-07-01T")
    assert document["latest_hour_utc"].startswith("2025-07-02T")
    # The sync read 2025-07-01 00:00 up to (not including) 2025-07-03 00:00.
    sync = document["syncs"][0]
    assert (sync["window_start_utc"], sync["window_end_utc"]) == (
        "2025-07-01T00:00:00Z",
        "2025-07-03T00:00:00Z",
    )
    assert sync["window_end_hour"] - sync["window_start_hour"] == 48


def test_a_first_sync_says_it_creates_the_warehouse(tmp_path, live_api):
    env = {"PEACHAI_API_TOKEN": TOKEN}
    args = ["sync", "--api-url", live_api.url, "--db-path", "typo.db"]
    first = run(args, tmp_path, env=env)
    second = run(args, tmp_path, env=env)
    assert first.returncode == second.returncode == 0, first.stderr
    assert "No database at typo.db: creating a new warehouse there." in first.stderr
    assert "No database at" not in second.stderr


def test_an_unreachable_api_names_the_setting_to_fix(tmp_path):
    result = run(
        ["sync", "--api-url", "http://127.0.0.1:9"],
        tmp_path,
        env={"PEACHAI_API_TOKEN": TOKEN, "PEACHDW_API_MAX_ATTEMPTS": "1"},
    )
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert "Cannot reach the API at http://127.0.0.1:9" in line
    assert "If that is not the API's address, fix api.base_url (or --api-url)." in line
