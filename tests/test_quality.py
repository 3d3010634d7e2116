"""Knowing when the numbers are wrong: reconciliation, completeness, plausibility, drift,
status --detailed / --check and sync --heal, against a sandbox told to misbehave."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sandbox_helpers import TOKEN

from peachdw import quality
from peachdw.cli import cli
from peachdw.db import connect, transaction
from peachdw.errors import ConfigError
from peachdw.hours import current_hour, days_to_hours, hour_text
from peachdw.metrics import REPORT_METRICS
from peachdw.sandbox import Dataset, Quirks, SandboxServer
from peachdw.sync import SyncOptions, plan_heal

QUIRKS = Quirks(drop_hours=0.01, skew_report=0.03, seed=11)


@pytest.fixture
def world(tmp_path):
    """A sandbox frozen an hour ahead of the wall clock (so the sync's hours all exist
    and never change under the test), misbehaving as QUIRKS says, and a folder."""
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    dataset = Dataset(seed=8, campaigns=40, now=now)
    with SandboxServer(dataset, TOKEN, quirks=QUIRKS) as server:
        yield dataset, server, tmp_path


def peachdw(folder, server, *args, env=None):
    env = {
        "PEACHAI_API_TOKEN": TOKEN,
        "PEACHDW_API_BASE_URL": server.url,
        "PEACHDW_DATABASE_PATH": str(folder / "warehouse.db"),
        **(env or {}),
    }
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def flat(output: str) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(output.split())


def expected_differences(dataset, db_path) -> dict[tuple[int, str, str], int]:
    """(campaign, UTC day, metric) -> warehouse minus API, from what the quirks did on
    the days the status reconciles."""
    conn = connect(db_path)
    begins = quality.coverage_start(conn)
    conn.close()
    first, last = quality.report_days(current_hour(), 7)
    first = max(first, date(1970, 1, 1) + timedelta(days=-(-begins // 24)))
    start = (first - date(1970, 1, 1)).days * 24
    end = (last - date(1970, 1, 1)).days * 24 + 24
    changes = QUIRKS.changes(dataset, start, end)
    delta: dict[tuple[int, str, str], int] = defaultdict(int)
    for campaign_id, hour in changes.dropped:
        (row,) = dataset.metrics(hour, hour + 1, campaign_id) or [{}]
        day = datetime.fromtimestamp(hour * 3600, UTC).date().isoformat()
        for metric in REPORT_METRICS:
            delta[(campaign_id, day, metric)] -= row.get(metric, 0)
    for (campaign_id, day, metric), amount in changes.skewed.items():
        delta[(campaign_id, day, metric)] += amount
    return {key: value for key, value in delta.items() if value}


def test_status_names_each_difference_check_fails_and_heal_fixes_them(world):
    dataset, server, folder = world
    synced = peachdw(folder, server, "sync")
    assert synced.exit_code == 0, synced.output

    expected = expected_differences(dataset, folder / "warehouse.db")
    assert len(expected) >= 5  # the quirks did bite in the reconciled days

    detailed = peachdw(folder, server, "status", "--detailed", "--json")
    assert detailed.exit_code == 0, detailed.output
    state = json.loads(detailed.output)
    found = {
        (d["campaign_id"], d["day"], d["metric"]): d["delta"]
        for d in state["reconciliation"]["differences"]
    }
    assert found == expected
    assert state["score_parts"]["reconciliation"] < 1

    shown = peachdw(folder, server, "status", "--detailed")
    # The table shows the first 100 differences, by day and campaign.
    for campaign_id, day, metric in sorted(expected, key=lambda k: (k[1], k[0]))[:5]:
        assert any(
            str(campaign_id) in line and day in line and metric in line
            for line in shown.output.splitlines()
        )

    check = peachdw(folder, server, "status", "--check")
    assert check.exit_code == 1
    problems = [
        line for line in check.output.splitlines() if line.startswith("PROBLEM")
    ]
    assert len(problems) == min(len(expected), 100) + (len(expected) > 100)
    as_json = peachdw(folder, server, "status", "--check", "--json")
    assert as_json.exit_code == 1
    assert len(json.loads(as_json.output)["problems"]) == len(expected)

    # A dry run of the heal reads and plans, and changes nothing.
    server.quirks = Quirks()
    trial = peachdw(folder, server, "sync", "--heal", "--dry-run")
    assert trial.exit_code == 0, trial.output
    assert peachdw(folder, server, "status", "--check").exit_code == 1

    # The API corrects its hours; the heal re-reads only the days that differ.
    healed = peachdw(folder, server, "sync", "--heal")
    assert healed.exit_code == 0, healed.output
    differing_days = {(c, d) for c, d, _ in expected}
    assert f"{len(differing_days)} of {len(differing_days)} differing" in healed.output

    conn = connect(folder / "warehouse.db")
    heal = conn.execute(
        "SELECT sync_type, status FROM sync_history ORDER BY id DESC"
    ).fetchone()
    assert tuple(heal) == ("heal", "success")
    windows = conn.execute(
        "SELECT sum(end_hour - start_hour) FROM sync_windows WHERE sync_id = "
        "(SELECT max(id) FROM sync_history)"
    ).fetchone()[0]
    days = {d for _, d, _ in expected}
    assert windows == 24 * len(days)  # only the differing UTC days were read again

    after = peachdw(folder, server, "status", "--check")
    assert after.exit_code == 0, after.output
    assert after.output == ""


def test_heal_names_the_campaign_days_it_fixed(world):
    dataset, server, folder = world
    assert peachdw(folder, server, "sync").exit_code == 0
    expected = expected_differences(dataset, folder / "warehouse.db")
    differing = sorted(
        {(c, d) for c, d, _ in expected}, key=lambda key: (key[1], key[0])
    )

    server.quirks = Quirks()
    healed = peachdw(folder, server, "sync", "--heal", "--verbose")
    assert healed.exit_code == 0, healed.output
    assert (
        "Fixed: "
        + ", ".join(f"campaign {campaign} on {day}" for campaign, day in differing)
        + "."
    ) in flat(healed.output)
    assert (
        f"Heal: {len(differing)} of {len(differing)} differing campaign-day(s) fixed; "
        "0 still differ. 0 of 0 never-read campaign-hour(s) filled"
    ) in flat(healed.output)


def test_debug_campaign_shows_daily_totals_and_the_syncs_that_read_it(world):
    dataset, server, folder = world
    assert peachdw(folder, server, "sync").exit_code == 0
    expected = expected_differences(dataset, folder / "warehouse.db")
    campaign_id = sorted(expected)[0][0]
    assert peachdw(folder, server, "sync", "--heal").exit_code == 1  # API still wrong
    shown = peachdw(folder, server, "debug-campaign", str(campaign_id))
    state = json.loads(
        peachdw(folder, server, "debug-campaign", str(campaign_id), "--json").output
    )

    conn = connect(folder / "warehouse.db")
    reported = [
        row[0] for row in conn.execute("SELECT day FROM api_report_days ORDER BY day")
    ]
    api = {
        row[0]: dict(zip(REPORT_METRICS, row[1:], strict=True))
        for row in conn.execute(
            f"SELECT day, {', '.join(REPORT_METRICS)} FROM api_reports "
            "WHERE campaign_id = ?",
            (campaign_id,),
        )
    }
    stored: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(REPORT_METRICS, 0)
    )
    for row in conn.execute(
        f"SELECT unix_hour, {', '.join(REPORT_METRICS)} FROM hourly_data "
        "WHERE campaign_id = ?",
        (campaign_id,),
    ):
        day = quality.utc_day(row[0]).isoformat()
        for metric, value in zip(REPORT_METRICS, row[1:], strict=True):
            stored[day][metric] += value
    heal = conn.execute(
        "SELECT max(id) FROM sync_history WHERE sync_type = 'heal'"
    ).fetchone()[0]
    conn.close()

    days = state["reconciliation"]["days"]
    first = state["reconciliation"]["first_day"]
    assert [d["day"] for d in days] == [day for day in reported if day >= first]
    zero = dict.fromkeys(REPORT_METRICS, 0)
    for day in days:
        assert day["warehouse"] == stored.get(day["day"], zero)
        assert day["api"] == api.get(day["day"], zero)
        assert day["difference"] == {
            m: expected.get((campaign_id, day["day"], m), 0) for m in REPORT_METRICS
        }
    # The heal read the campaign's days again without changing a stored hour.
    (healed,) = [row for row in state["syncs"] if row["id"] == heal]
    assert healed["hours_written"] == 0
    assert healed["hours_read"] > 0
    assert "warehouse / API" in shown.output


def test_heal_that_cannot_fix_says_so_and_fails(world):
    dataset, server, folder = world
    assert peachdw(folder, server, "sync").exit_code == 0
    expected = expected_differences(dataset, folder / "warehouse.db")
    before = peachdw(folder, server, "status", "--check", "--json")
    assert all(
        line.endswith("; run `peachdw sync --heal`.")
        for line in json.loads(before.output)["problems"]
    )

    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append
    logging.getLogger("peachdw.sync").addHandler(handler)
    try:
        healed = peachdw(folder, server, "sync", "--heal")  # the API is still wrong
    finally:
        logging.getLogger("peachdw.sync").removeHandler(handler)
    assert healed.exit_code == 1

    # The heal read the days again and their reports: another heal would not help, and
    # it is recorded as unresolved, not as a success, with the reason.
    conn = connect(folder / "warehouse.db")
    heal, kind, status, message = conn.execute(
        "SELECT id, sync_type, status, error_message FROM sync_history "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    conn.close()
    differing = len({(c, d) for c, d, _ in expected})
    assert (kind, status) == ("heal", "unresolved")
    assert message == (
        f"{differing} campaign-day(s) still differ from the API's reports although a "
        "heal re-read every hour of them after their report: the API's hours and its "
        "own report disagree, and another heal would read the same numbers; ask the "
        "API's owners (`peachdw status --detailed` lists them)."
    )
    assert f"Sync {heal} (unresolved)" in healed.output
    # The log (what cron appends to its file) ends on the same word.
    assert (
        logged[-1]
        .getMessage()
        .startswith(f"Sync {heal} unresolved: {differing} campaign-day(s) still differ")
    )
    assert healed.output.splitlines()[-1] == (
        f"Error: Heal {heal} ended unresolved: {message}"
    )

    after = peachdw(folder, server, "status", "--check", "--json")
    assert after.exit_code == 1
    problems = json.loads(after.output)["problems"]
    assert problems[0] == f"The last sync, heal {heal}, ended unresolved: {message}"
    assert len(problems[1:]) == len(expected)
    assert all(
        line.endswith(
            f"; heal {heal} re-read that day and it still differs: the API's hours and "
            "its own report disagree; ask the API's owners."
        )
        for line in problems[1:]
    )


def test_heal_that_leaves_hours_never_read_says_to_heal_again(world, monkeypatch):
    from peachdw.cli import warehouse

    _, server, folder = world
    assert peachdw(folder, server, "sync").exit_code == 0
    server.quirks = Quirks()  # the API corrects its hours: the heal fixes every day

    # The clock passes midnight while the heal runs: the day that ends then is one
    # whose last hours no window has read yet.
    later = current_hour() + 24
    heal_for_real = warehouse.run_sync

    def heal_past_midnight(*args, **kwargs):
        result = heal_for_real(*args, **kwargs)
        monkeypatch.setattr(warehouse, "current_hour", lambda: later)
        return result

    monkeypatch.setattr(warehouse, "run_sync", heal_past_midnight)
    healed = peachdw(folder, server, "sync", "--heal")

    conn = connect(folder / "warehouse.db")
    heal, status, message = conn.execute(
        "SELECT id, status, error_message FROM sync_history ORDER BY id DESC LIMIT 1"
    ).fetchone()
    zone = ZoneInfo("UTC")
    first, last = quality.quality_days(later, 7, zone)
    _, gaps = quality.completeness(conn, first, last, zone, later)
    conn.close()
    unread = sum(gap.missing_hours for gap in gaps)
    assert unread > 0
    assert healed.exit_code == 1
    assert status == "unresolved"
    assert message == (
        f"{unread:,} serving campaign-hour(s) are still never read: run `peachdw sync "
        "--heal` again."
    )
    assert healed.output.splitlines()[-1] == (
        f"Error: Heal {heal} ended unresolved: {message}"
    )


def test_heal_advice_outlives_the_ordinary_syncs_that_read_the_same_report(world):
    dataset, server, folder = world
    assert peachdw(folder, server, "sync").exit_code == 0
    expected = expected_differences(dataset, folder / "warehouse.db")
    assert peachdw(folder, server, "sync", "--heal").exit_code == 1  # API still wrong
    # The next syncs read the look-back and every reconciled day's report again.
    assert peachdw(folder, server, "sync").exit_code == 0
    assert peachdw(folder, server, "sync").exit_code == 0

    conn = connect(folder / "warehouse.db")
    heal, last = conn.execute(
        "SELECT max(id) FILTER (WHERE sync_type = 'heal'), max(id) FROM sync_history"
    ).fetchone()
    reread = conn.execute(
        "SELECT count(*) FROM api_report_days WHERE sync_id = ?", (last,)
    ).fetchone()[0]
    conn.close()
    assert last == heal + 2 and reread > 0
    after = peachdw(folder, server, "status", "--check", "--json")
    assert after.exit_code == 1
    problems = json.loads(after.output)["problems"]
    assert len(problems) == len(expected)
    assert all(
        line.endswith(
            f"; heal {heal} re-read that day and it still differs: the API's hours and "
            "its own report disagree; ask the API's owners."
        )
        for line in problems
    )


def test_detailed_tells_differences_a_heal_already_re_read_from_the_others(world):
    dataset, server, folder = world
    assert peachdw(folder, server, "sync").exit_code == 0
    expected = expected_differences(dataset, folder / "warehouse.db")
    heal_title = "Differences (warehouse - API); fix with `peachdw sync --heal`"
    reread_title = "Differences a heal already re-read (warehouse - API)"

    before = json.loads(
        peachdw(folder, server, "status", "--detailed", "--json").output
    )["reconciliation"]
    assert before["healed_campaign_days"] == 0
    assert {
        (d["healed"], d["heal_sync_id"], d["remedy"]) for d in before["differences"]
    } == {(False, None, "run `peachdw sync --heal`.")}
    shown = flat(peachdw(folder, server, "status", "--detailed").output)
    assert heal_title in shown and reread_title not in shown

    assert peachdw(folder, server, "sync", "--heal").exit_code == 1  # API still wrong
    conn = connect(folder / "warehouse.db")
    heal = conn.execute("SELECT max(id) FROM sync_history").fetchone()[0]
    conn.close()
    after = json.loads(
        peachdw(folder, server, "status", "--detailed", "--json").output
    )["reconciliation"]
    differing = {(c, d) for c, d, _ in expected}
    assert after["healed_campaign_days"] == len(differing)
    assert {
        (d["campaign_id"], d["day"], d["metric"]) for d in after["differences"]
    } == set(expected)
    assert {
        (d["healed"], d["heal_sync_id"], d["remedy"]) for d in after["differences"]
    } == {
        (
            True,
            heal,
            f"heal {heal} re-read that day and it still differs: the API's hours and "
            "its own report disagree; ask the API's owners.",
        )
    }
    shown = flat(peachdw(folder, server, "status", "--detailed").output)
    assert heal_title not in shown
    assert (
        f"{reread_title}: the API's hours and its own report disagree, and another "
        "heal reads the same numbers; ask the API's owners" in shown
    )
    assert (
        f"{len(differing)} of {after['campaign_days']} campaign-days differ, "
        f"{len(differing)} of them already re-read by a heal (the API's hours and its "
        "own report disagree)." in shown
    )


def test_nothing_to_heal_on_a_clean_sandbox(tmp_path):
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    with SandboxServer(Dataset(seed=8, campaigns=20, now=now), TOKEN) as server:
        assert peachdw(tmp_path, server, "sync").exit_code == 0
        healed = peachdw(tmp_path, server, "sync", "--heal")
        check = peachdw(tmp_path, server, "status", "--check")
    assert healed.exit_code == 0
    assert "Nothing to heal" in healed.output
    assert check.exit_code == 0


@pytest.mark.parametrize("dry_run", [False, True], ids=["heal", "dry-run"])
def test_heal_refuses_a_database_that_does_not_exist(tmp_path, dry_run):
    folder = tmp_path / "data"
    env = {
        "PEACHAI_API_TOKEN": TOKEN,
        # Nothing answers here: the heal must stop before it reads anything.
        "PEACHDW_API_BASE_URL": "http://127.0.0.1:9",
        "PEACHDW_DATABASE_PATH": str(folder / "warehouse.db"),
    }
    args = ["sync", "--heal", *(["--dry-run"] if dry_run else [])]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: No database at {folder / 'warehouse.db'}. Run `peachdw init` first "
        "with the same --db-path or settings to create it there, or give --db-path "
        "the warehouse you meant.\n"
    )
    assert not folder.exists()  # no database, no lock file, no folder


def test_check_fails_on_a_rule_that_names_no_metric_as_detailed_does(tmp_path):
    broken = {"PEACHDW_QUALITY_PLAUSIBILITY": '["foo <= sessions"]'}
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    with SandboxServer(Dataset(seed=8, campaigns=10, now=now), TOKEN) as server:
        assert peachdw(tmp_path, server, "sync").exit_code == 0
        assert peachdw(tmp_path, server, "status", "--check").exit_code == 0
        detailed = peachdw(tmp_path, server, "status", "--detailed", env=broken)
        check = peachdw(tmp_path, server, "status", "--check", env=broken)
        as_json = peachdw(tmp_path, server, "status", "--check", "--json", env=broken)

    (line,) = detailed.output.splitlines()
    assert line.startswith(
        "Error: Plausibility rule 'foo <= sessions' names foo, not a metric; "
    )
    # Someone reading the settings file would not find it: the line says where it is.
    assert line.endswith(
        "(quality.plausibility is set by environment variable "
        "PEACHDW_QUALITY_PLAUSIBILITY.)"
    )
    assert (detailed.exit_code, check.exit_code, as_json.exit_code) == (2, 2, 2)
    assert check.output.splitlines() == as_json.output.splitlines() == [line]


def test_check_names_a_sync_marked_running_whose_process_is_gone(tmp_path):
    # A process that has exited: its pid is free, as after a kill -9.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    with SandboxServer(Dataset(seed=8, campaigns=10, now=now), TOKEN) as server:
        assert peachdw(tmp_path, server, "sync").exit_code == 0
        conn = connect(tmp_path / "warehouse.db")
        with transaction(conn):
            sync_id = conn.execute(
                "INSERT INTO sync_history (sync_type, status, started_at, pid) "
                "VALUES ('incremental', 'running', 'now', ?)",
                (dead_pid,),
            ).lastrowid
        conn.close()
        check = peachdw(tmp_path, server, "status", "--check")
    assert check.exit_code == 1
    assert check.output.splitlines() == [
        f"PROBLEM: The last sync ({sync_id}) is marked running but its process "
        f"{dead_pid} is gone: it was killed or crashed; the next sync marks it "
        "interrupted and resumes."
    ]


def test_heal_reads_the_hours_completeness_counts_in_a_local_zone(tmp_path):
    zone = ZoneInfo("America/Los_Angeles")
    local = {"PEACHDW_REPORTING_TIMEZONE": zone.key}
    today = datetime.fromtimestamp(current_hour() * 3600, zone).date()
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    with SandboxServer(Dataset(seed=8, campaigns=10, now=now), TOKEN) as server:
        # The first local day the status checks, and yesterday, are left unread: each
        # has hours outside the reconciled UTC days, whatever the hour of the test.
        for first, last in ((9, 8), (6, 2)):
            loaded = peachdw(
                tmp_path,
                server,
                "sync-historical",
                "--start-date",
                (today - timedelta(days=first)).isoformat(),
                "--end-date",
                (today - timedelta(days=last)).isoformat(),
                env=local,
            )
            assert loaded.exit_code == 0, loaded.output
        before = json.loads(
            peachdw(
                tmp_path, server, "status", "--detailed", "--json", env=local
            ).output
        )["completeness"]
        one_campaign = before["gaps"][0]["campaign_id"]
        unread = {
            gap["day"]: gap["missing_hours"]
            for gap in before["gaps"]
            if gap["campaign_id"] == one_campaign
        }
        edges = (today - timedelta(days=7), today - timedelta(days=1))
        assert unread == {
            day.isoformat(): len(range(*days_to_hours(day, day, zone))) for day in edges
        }

        healed = peachdw(tmp_path, server, "sync", "--heal", env=local)
        assert healed.exit_code == 0, healed.output
        missing = before["campaign_hours_missing"]
        assert missing == sum(unread.values()) * len(
            {gap["campaign_id"] for gap in before["gaps"]}
        )
        assert (
            f"{missing:,} of {missing:,} never-read campaign-hour(s) filled; "
            "0 still never read." in flat(healed.output)
        )
        after = json.loads(
            peachdw(
                tmp_path, server, "status", "--detailed", "--json", env=local
            ).output
        )["completeness"]

    assert after["campaign_hours_missing"] == 0
    assert after["gaps"] == []
    conn = connect(tmp_path / "warehouse.db")
    read = conn.execute(
        "SELECT sum(end_hour - start_hour) FROM sync_windows WHERE sync_id = "
        "(SELECT max(id) FROM sync_history WHERE sync_type = 'heal')"
    ).fetchone()[0]
    conn.close()
    assert read == sum(unread.values())  # those hours, and no others


def test_historical_load_keeps_reports_so_check_names_the_differences(tmp_path):
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    dataset = Dataset(seed=8, campaigns=20, now=now)
    quirks = Quirks(skew_report=0.05, seed=3)
    first, last = quality.report_days(current_hour(), 7)
    with SandboxServer(dataset, TOKEN, quirks=quirks) as server:
        loaded = peachdw(
            tmp_path,
            server,
            "sync-historical",
            "--start-date",
            first.isoformat(),
            "--end-date",
            last.isoformat(),
        )
        assert loaded.exit_code == 0, loaded.output
        check = peachdw(tmp_path, server, "status", "--check", "--json")

    start, end = days_to_hours(first, last)
    skewed = quirks.changes(dataset, start, end).skewed
    assert len(skewed) >= 3  # the quirk did bite in the days loaded
    assert check.exit_code == 1
    problems = json.loads(check.output)["problems"]
    # One line per skewed campaign, day and metric, with the skew as the difference.
    assert sorted(p.split(" is ")[0] for p in problems) == sorted(
        f"Campaign {campaign_id} on {day}: {metric}"
        for campaign_id, day, metric in skewed
    )
    for (campaign_id, day, metric), amount in skewed.items():
        (line,) = [
            p
            for p in problems
            if p.startswith(f"Campaign {campaign_id} on {day}: {metric} ")
        ]
        assert f"({amount:+,})" in line


def test_freshness_gives_each_serving_campaign_its_latest_complete_hour(tmp_path):
    today = datetime.fromtimestamp(current_hour() * 3600, UTC).date()
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    within = {"PEACHDW_QUALITY_MAX_LAG_HOURS": "71"}
    with SandboxServer(Dataset(seed=8, campaigns=10, now=now), TOKEN) as server:
        day = (today - timedelta(days=5)).isoformat()
        assert (
            peachdw(
                tmp_path,
                server,
                "sync-historical",
                "--start-date",
                day,
                "--end-date",
                (today - timedelta(days=4)).isoformat(),
            ).exit_code
            == 0
        )
        conn = connect(tmp_path / "warehouse.db")
        serving = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM campaigns WHERE is_serving AND NOT is_deleted "
                "ORDER BY id"
            )
        ]
        ahead = serving[0]
        # One campaign alone is read a day further.
        day = (today - timedelta(days=3)).isoformat()
        assert (
            peachdw(
                tmp_path,
                server,
                "sync-historical",
                "--start-date",
                day,
                "--end-date",
                day,
                "--campaign-id",
                str(ahead),
            ).exit_code
            == 0
        )
        detailed = peachdw(
            tmp_path, server, "status", "--detailed", "--json", env=within
        )
        shown = peachdw(tmp_path, server, "status", "--detailed", env=within)
    now_hour = current_hour()
    stored = dict(
        conn.execute(
            "SELECT campaign_id, max(unix_hour) FROM hourly_data GROUP BY campaign_id"
        ).fetchall()
    )
    conn.close()

    fresh = json.loads(detailed.output)["freshness"]
    ends = {
        campaign_id: days_to_hours(today, today)[0]
        - 24 * (2 if campaign_id == ahead else 3)
        for campaign_id in serving
    }
    assert [row["id"] for row in fresh["campaigns"]] == serving
    for row in fresh["campaigns"]:
        read_to = ends[row["id"]]
        assert row["latest_complete_hour"] == hour_text(read_to - 1)
        assert row["lag_hours"] == now_hour - read_to
        assert row["latest_stored_hour"] == hour_text(stored.get(row["id"]))
    assert fresh["serving_campaigns"] == len(serving)
    assert fresh["serving_campaigns_within_max_lag"] == 1
    assert f"read within 71 hours: 1 of {len(serving)}; most behind: " in shown.output
    assert f"{ahead} ({now_hour - ends[ahead]} h)" not in shown.output


def test_long_lists_say_how_many_more_and_where_they_all_are(tmp_path):
    today = datetime.fromtimestamp(current_hour() * 3600, UTC).date()
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    quirks = Quirks(skew_report=1.0, seed=5)
    with SandboxServer(
        Dataset(seed=8, campaigns=40, now=now), TOKEN, quirks=quirks
    ) as (server):
        # Two days left unread in the middle: a gap for every serving campaign on each.
        for first, last in ((9, 8), (5, 1)):
            loaded = peachdw(
                tmp_path,
                server,
                "sync-historical",
                "--start-date",
                (today - timedelta(days=first)).isoformat(),
                "--end-date",
                (today - timedelta(days=last)).isoformat(),
            )
            assert loaded.exit_code == 0, loaded.output
        state = json.loads(
            peachdw(tmp_path, server, "status", "--detailed", "--json").output
        )
        shown = flat(peachdw(tmp_path, server, "status", "--detailed").output)
        check = peachdw(tmp_path, server, "status", "--check")
        problems = json.loads(
            peachdw(tmp_path, server, "status", "--check", "--json").output
        )["problems"]

    gaps = state["completeness"]["gaps"]
    assert {gap["day"] for gap in gaps} == {
        (today - timedelta(days=n)).isoformat() for n in (7, 6)
    }
    assert len(gaps) > 30
    assert (
        f"... and {len(gaps) - 30:,} more campaign-days with hours never read; "
        "`peachdw status --detailed --json` lists them all." in shown
    )
    differences = state["reconciliation"]["differences"]
    assert len(differences) > 100
    assert (
        f"... and {len(differences) - 100:,} more differences; "
        "`peachdw status --detailed --json` lists them all." in shown
    )
    assert len(problems) > 100
    assert check.output.splitlines()[-1] == (
        f"PROBLEM: ... and {len(problems) - 100:,} more; "
        "`peachdw status --check --json` lists them all."
    )


def test_unknown_field_and_broken_rules_show_in_status_and_debug(tmp_path):
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    dataset = Dataset(seed=8, campaigns=20, now=now)
    quirks = Quirks(extra_field="video_views", implausible=0.02, seed=4)
    with SandboxServer(dataset, TOKEN, quirks=quirks) as server:
        assert peachdw(tmp_path, server, "sync").exit_code == 0
        state = json.loads(
            peachdw(tmp_path, server, "status", "--detailed", "--json").output
        )
        assert [d["field"] for d in state["schema_drift"]] == ["video_views"]
        shown = peachdw(tmp_path, server, "status", "--detailed")
        assert "video_views" in shown.output

        conn = connect(tmp_path / "warehouse.db")
        days = state["completeness"]
        start, end = days_to_hours(
            date.fromisoformat(days["first_day"]), date.fromisoformat(days["last_day"])
        )
        changes = quirks.changes(dataset, max(start, quality.coverage_start(conn)), end)
        broken = defaultdict(int)
        for _, _, rule in changes.implausible:
            broken[rule] += 1
        assert state["plausibility"]["by_rule"] == {
            rule: broken.get(rule, 0) for rule in quality.DEFAULT_PLAUSIBILITY
        }
        assert sum(broken.values()) > 0

        campaign_id, hour, rule = sorted(changes.implausible)[0]
        debug = peachdw(tmp_path, server, "debug-campaign", str(campaign_id), "--json")
        listed = json.loads(debug.output)["violations"]
        assert {"campaign_id": campaign_id, "unix_hour": hour, "rule": rule} in [
            {k: v[k] for k in ("campaign_id", "unix_hour", "rule")} for v in listed
        ]
        conn.close()


def test_plain_status_says_in_one_line_what_detailed_would_show(tmp_path):
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    dataset = Dataset(seed=8, campaigns=20, now=now)
    quirks = Quirks(
        skew_report=0.05, extra_field="video_views", implausible=0.02, seed=4
    )
    broken = {"PEACHDW_QUALITY_PLAUSIBILITY": '["foo <= sessions"]'}
    with SandboxServer(dataset, TOKEN) as server:
        assert peachdw(tmp_path, server, "sync").exit_code == 0
        clean = peachdw(tmp_path, server, "status")
        server.quirks = quirks
        assert peachdw(tmp_path, server, "sync", "--full").exit_code == 0
        state = json.loads(
            peachdw(tmp_path, server, "status", "--detailed", "--json").output
        )
        shown = peachdw(tmp_path, server, "status")
        with_broken_rule = peachdw(tmp_path, server, "status", env=broken)

    assert clean.exit_code == 0
    assert "To look into" not in clean.output
    differing = state["reconciliation"]["differing_campaign_days"]
    violating = state["plausibility"]["rows_violating"]
    assert differing > 0 and violating > 0
    assert shown.exit_code == 0
    assert flat(shown.output).endswith(
        f"To look into, over the last 7 days: {differing} campaign-day(s) differ from "
        f"the API's reports; {violating:,} row(s) break a plausibility rule; 1 field(s) "
        "the API sends are not stored (schema drift). `peachdw status --detailed` "
        "shows the details."
    )
    assert with_broken_rule.exit_code == 0
    assert (
        "the plausibility rule 'foo <= sessions' names no metric: fix "
        "quality.plausibility; 1 field(s)" in flat(with_broken_rule.output)
    )


def test_debug_campaign_shows_grid_rules_and_syncs(tmp_path):
    now = datetime.fromtimestamp((current_hour() + 1) * 3600, UTC)
    with SandboxServer(Dataset(seed=8, campaigns=20, now=now), TOKEN) as server:
        assert peachdw(tmp_path, server, "sync").exit_code == 0
        conn = connect(tmp_path / "warehouse.db")
        campaign_id, hours = conn.execute(
            "SELECT campaign_id, count(*) FROM hourly_data GROUP BY campaign_id "
            "ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        result = peachdw(tmp_path, server, "debug-campaign", str(campaign_id), "--json")
        missing = peachdw(tmp_path, server, "debug-campaign", "999999")
    state = json.loads(result.output)
    grid = "".join(line["hours"] for line in state["grid"])
    assert grid.count("#") == hours  # every stored hour of the last 14 days, marked
    assert all(tier["rule"] for tier in state["mapping"] if tier["value"] != "Unknown")
    assert state["syncs"][0]["hours_written"] == hours
    assert missing.exit_code == 1
    assert "Campaign 999999 is not in the warehouse" in missing.output


# -- the parts, one by one ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sessions => registrations", "is not of the form"),
        ("sessions <= visits", "names visits, not a metric"),
        ("", "is not of the form"),
    ],
)
def test_plausibility_rules_are_checked(text, message):
    with pytest.raises(ConfigError, match=message):
        quality.parse_rule(text)


def test_reconcile_counts_differences_beyond_the_tolerance(warehouse):
    with transaction(warehouse):
        warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'a'), (2, 'b')")
        warehouse.execute(
            "INSERT INTO sync_history (id, sync_type, status, started_at) "
            "VALUES (1, 'incremental', 'success', 'now')"
        )
        warehouse.execute(
            "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status, "
            "finished_at) VALUES (1, 0, 480000, 'done', 'now')"
        )
        day = 20000  # 2024-10-04
        warehouse.executemany(
            "INSERT INTO hourly_data (campaign_id, unix_hour, sessions) VALUES (?, ?, ?)",
            [(1, day * 24 + 3, 100), (1, day * 24 + 30, 5), (2, day * 24 + 1, 50)],
        )
        first = date(1970, 1, 1) + timedelta(days=day)
        quality.store_reports(
            warehouse,
            [
                {
                    "campaign_id": 1,
                    "date": first.isoformat(),
                    "sessions": 103,
                    "registrations": 0,
                    "converted_users": 0,
                    "messages": 0,
                },
                {
                    "campaign_id": 2,
                    "date": first.isoformat(),
                    "sessions": 50,
                    "registrations": 0,
                    "converted_users": 0,
                    "messages": 0,
                },
            ],
            first,
            first + timedelta(days=1),
            1,
        )
    exact = quality.reconcile(warehouse, first, first + timedelta(days=1))
    assert [(d.campaign_id, d.day, d.metric, d.delta) for d in exact.differences] == [
        (1, first.isoformat(), "sessions", -3),
        (1, (first + timedelta(days=1)).isoformat(), "sessions", 5),
    ]
    loose = quality.reconcile(
        warehouse, first, first + timedelta(days=1), tolerance=0.05
    )
    # 3 of 103 is within 5%; 5 against a report of 0 is not.
    assert [d.delta for d in loose.differences] == [5]


def test_check_gives_a_day_with_hours_never_read_one_line(warehouse):
    from peachdw.status import reconciliation_problems

    day = 20000  # 2024-10-04
    first = date(1970, 1, 1) + timedelta(days=day)
    with transaction(warehouse):
        warehouse.execute("INSERT INTO campaigns (id, name) VALUES (1, 'a'), (2, 'b')")
        warehouse.execute(
            "INSERT INTO sync_history (id, sync_type, status, started_at) "
            "VALUES (1, 'incremental', 'success', 'now')"
        )
        # Hours 05:00 to 11:00 of the first day were never read.
        warehouse.executemany(
            "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status, "
            "finished_at) VALUES (1, ?, ?, 'done', 'now')",
            [(0, day * 24 + 5), (day * 24 + 12, 600000)],
        )
        warehouse.executemany(
            "INSERT INTO hourly_data (campaign_id, unix_hour, sessions, messages) "
            "VALUES (?, ?, ?, ?)",
            [
                (1, day * 24 + 3, 100, 1),
                (2, day * 24 + 1, 50, 1),
                (1, day * 24 + 30, 5, 0),
            ],
        )
        quality.store_reports(
            warehouse,
            [
                {**_report(1, first, 120), "messages": 4},
                {**_report(2, first, 60), "messages": 2},
                _report(1, first + timedelta(days=1), 9),
            ],
            first,
            first + timedelta(days=1),
            1,
        )

    problems = reconciliation_problems(
        warehouse, now_hour=(day + 2) * 24 + 1, days=2, tolerance=0
    )

    # Four differences on the short day make one line; the whole day's stays its own.
    assert problems == [
        f"On {first} (UTC), 7 hour(s) were never read by a sync, so 2 campaign(s) fall "
        "short of the API's report for the day; run `peachdw sync --heal`.",
        f"Campaign 1 on {first + timedelta(days=1)}: sessions is 5 in the warehouse "
        "and 9 in the API's report (-4); run `peachdw sync --heal`.",
    ]


def _report(campaign_id: int, day: date, sessions: int) -> dict:
    return {
        "campaign_id": campaign_id,
        "date": day.isoformat(),
        "sessions": sessions,
        "registrations": 0,
        "converted_users": 0,
        "messages": 0,
    }


def test_a_heal_settles_a_day_until_the_report_changes(warehouse):
    day = date(2024, 10, 4)
    start, end = days_to_hours(day, day)
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO campaigns (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')"
        )
        warehouse.executemany(
            "INSERT INTO sync_history (id, sync_type, status, started_at) "
            "VALUES (?, ?, 'success', 'now')",
            [(1, "incremental"), (2, "heal"), (3, "incremental"), (4, "incremental")],
        )
        # The heal (2) read the whole day; the ordinary syncs read part of it.
        warehouse.executemany(
            "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status, "
            "finished_at) VALUES (?, ?, ?, 'done', 'now')",
            [(1, start, end), (2, start, end), (3, start + 12, end), (4, end - 1, end)],
        )
        first = [_report(1, day, 10), _report(2, day, 20), _report(3, day, 5)]
        quality.store_reports(warehouse, first, day, day, 1)
        quality.store_reports(warehouse, first, day, day, 2)  # the heal's own read
        quality.store_reports(warehouse, first, day, day, 3)  # the same figures
    keys = {(1, day.isoformat()), (2, day.isoformat())}
    assert quality.healed_campaign_days(warehouse, keys) == dict.fromkeys(keys, 2)

    # The API changes campaign 2's figure and drops campaign 3 from its report.
    with transaction(warehouse):
        quality.store_reports(
            warehouse, [_report(1, day, 10), _report(2, day, 21)], day, day, 4
        )
    figures = dict(
        warehouse.execute("SELECT campaign_id, figures_sync_id FROM api_reports")
    )
    assert figures == {1: 1, 2: 4}
    keys.add((3, day.isoformat()))
    # Only campaign 1's figure is the one the heal compared; campaign 3, left out of
    # the report, goes by the day's report, which changed.
    assert quality.healed_campaign_days(warehouse, keys) == {(1, day.isoformat()): 2}


def test_completeness_counts_hours_never_read_in_local_days(warehouse):
    zone = ZoneInfo("Europe/Berlin")
    spring = date(2025, 3, 30)  # 23 hours in Berlin
    start = int(datetime(2025, 3, 29, 23, tzinfo=UTC).timestamp()) // 3600
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO campaigns (id, name, is_serving) VALUES (1, 'a', 1)"
        )
        warehouse.execute(
            "INSERT INTO sync_history (id, sync_type, status, started_at) "
            "VALUES (1, 'incremental', 'success', 'now')"
        )
        warehouse.executemany(
            "INSERT INTO sync_windows (sync_id, start_hour, end_hour, status, "
            "finished_at) VALUES (1, ?, ?, 'done', 'now')",
            [(start, start + 10), (start + 12, start + 23)],
        )
    expected, gaps = quality.completeness(warehouse, spring, spring, zone, start + 100)
    assert expected == 23
    assert [(g.day, g.hours_in_day, g.missing_hours) for g in gaps] == [
        ("2025-03-30", 23, 2)
    ]
    plan = plan_heal(warehouse, SyncOptions(reconcile_days=3), start + 23 + 24)
    assert (start + 10, start + 12) in plan.windows


def test_score_leaves_out_what_could_not_be_measured():
    parts = {
        "freshness": 1.0,
        "completeness": 0.5,
        "reconciliation": None,
        "plausibility": 1.0,
        "mapping": 1.0,
    }
    assert quality.score(parts) == round(100 * (20 + 12.5 + 15 + 10) / 70, 1)
    assert quality.score(dict.fromkeys(parts)) is None


@pytest.mark.parametrize(
    ("share", "shown"),
    [
        (1, "100%"),
        (0.99999, "99.9%"),
        (0.9978, "99.8%"),
        (0.5, "50.0%"),
        (1e-5, "0.1%"),
    ],
)
def test_score_parts_read_whole_only_when_they_are(share, shown):
    from peachdw.cli.reports import _percent

    assert _percent(share) == shown
