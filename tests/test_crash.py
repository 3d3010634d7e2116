"""Crash safety and one writer at a time, with real processes killed by SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox_helpers import FROZEN, TOKEN, stored_hours

from peachdw.sandbox import Dataset, SandboxServer

DAYS = ["--start-date", "2025-07-20", "--end-date", "2025-07-29"]  # ten 24-hour windows
ENV = {"PEACHAI_API_TOKEN": TOKEN, "PEACHDW_SYNC_WINDOW_HOURS": "24"}


def start(args, cwd: Path, **env) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PEACH")}
    return subprocess.Popen(
        [sys.executable, "-m", "peachdw", *args],
        cwd=cwd,
        env={**environ, **ENV, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def start_held(args, folder: Path, point: str) -> subprocess.Popen:
    """Start a sync that stops at `point` (see peachdw.sync.hold); return it once there."""
    marker = folder / "held"
    process = start(
        args, folder, PEACHDW_TEST_HOLD=point, PEACHDW_TEST_HOLD_FILE=str(marker)
    )
    wait_for(marker.exists)
    return process


def database(folder: Path) -> sqlite3.Connection:
    return sqlite3.connect(folder / "data" / "datawarehouse.db")


@pytest.fixture(scope="module")
def clean_load(tmp_path_factory):
    """The reference: the same backfill, never interrupted."""
    folder = tmp_path_factory.mktemp("clean")
    with SandboxServer(Dataset(seed=31, campaigns=40, now=FROZEN), TOKEN) as api:
        code, _, err = finish(
            start(["sync-historical", *DAYS, "--api-url", api.url], folder)
        )
    assert code == 0, err
    return stored_hours(database(folder))


@pytest.mark.parametrize("moment", ["during-fetch", "window-write", "between-windows"])
def test_kill_then_resume_equals_an_uninterrupted_load(tmp_path, clean_load, moment):
    dataset = Dataset(seed=31, campaigns=40, now=FROZEN)
    with SandboxServer(dataset, TOKEN) as api:
        args = ["sync-historical", *DAYS, "--api-url", api.url]
        if moment == "during-fetch":
            api.latency = 0.5
            process = start(args, tmp_path)
            wait_for(lambda: api.requests["/admin/metrics"] >= 4)
        else:
            process = start_held(args, tmp_path, f"{moment}:4")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        api.latency = 0

        conn = database(tmp_path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done_before = conn.execute(
            "SELECT count(*) FROM sync_windows WHERE status = 'done'"
        ).fetchone()[0]
        # Killed in the fetch or the write of window 4, none of it is there; killed
        # after window 4 was committed, all of it is.
        assert done_before == (4 if moment == "between-windows" else 3)

        code, _, err = finish(start([*args, "--resume"], tmp_path))
        assert code == 0, err

    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert stored_hours(conn) == clean_load
    windows = conn.execute(
        "SELECT start_hour, count(*) FROM sync_windows WHERE status = 'done' "
        "GROUP BY start_hour"
    ).fetchall()
    assert len(windows) == 10
    assert {count for _, count in windows} == {1}, "a window was counted twice"
    inserted = conn.execute(
        "SELECT sum(records_inserted) FROM sync_windows"
    ).fetchone()[0]
    assert inserted == len(clean_load)
    statuses = [
        r[0] for r in conn.execute("SELECT status FROM sync_history ORDER BY id")
    ]
    assert statuses == ["interrupted", "success"]


def test_two_syncs_started_together_leave_one_running_and_one_refused(tmp_path):
    with SandboxServer(
        Dataset(seed=32, campaigns=30, now=FROZEN), TOKEN, latency=0.3
    ) as api:
        args = ["sync-historical", *DAYS, "--api-url", api.url]
        first, second = start(args, tmp_path), start(args, tmp_path)
        results = [finish(first), finish(second)]

    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], [err[-500:] for _, _, err in results]
    refused = next(err for code, _, err in results if code == 1)
    winner = first if results[0][0] == 0 else second
    assert f"Another sync is running on this database: process {winner.pid}" in refused
    assert "changed nothing" in refused
    conn = database(tmp_path)
    assert conn.execute("SELECT count(*) FROM sync_history").fetchone()[0] == 1
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_second_sync_is_refused_at_once_and_readers_keep_working(tmp_path):
    with SandboxServer(
        Dataset(seed=33, campaigns=30, now=FROZEN), TOKEN, latency=0.4
    ) as api:
        running = start(["sync-historical", *DAYS, "--api-url", api.url], tmp_path)
        lock = tmp_path / "data" / "datawarehouse.db.lock"
        wait_for(lambda: lock.exists() and lock.read_text().startswith("{"))
        wait_for(lambda: api.requests["/admin/metrics"] >= 2)

        began = time.monotonic()
        code, _, err = finish(start(["sync", "--api-url", api.url], tmp_path))
        refused_in = time.monotonic() - began
        assert code == 1
        assert f"process {running.pid}, started 20" in err
        assert "(peachdw sync-historical)" in err
        # Python's start-up included; the lock itself is tried once, without waiting.
        assert refused_in < 5

        status = finish(start(["status"], tmp_path))
        export = finish(
            start(["export", "--output", str(tmp_path / "r.csv")], tmp_path)
        )
        assert status[0] == 0, status[2]
        assert export[0] == 0, export[2]
        assert running.poll() is None, "the sync should still be running"
        assert finish(running)[0] == 0


def test_ctrl_c_ends_the_sync_interrupted_with_a_resume_hint(tmp_path):
    with SandboxServer(Dataset(seed=34, campaigns=20, now=FROZEN), TOKEN) as api:
        process = start_held(
            ["sync-historical", *DAYS, "--api-url", api.url],
            tmp_path,
            "between-windows:2",
        )
        process.send_signal(signal.SIGINT)
        code, out, err = finish(process)

    assert code == 130
    assert "ended interrupted: Stopped by the user after 2 of 10 windows" in err
    assert "--resume" in err
    assert "Sync 1 (interrupted)" in out
    row = (
        database(tmp_path)
        .execute("SELECT status, records_inserted FROM sync_history")
        .fetchone()
    )
    assert row[0] == "interrupted" and row[1] > 0


def test_status_names_a_sync_whose_process_is_gone(tmp_path):
    with SandboxServer(Dataset(seed=35, campaigns=20, now=FROZEN), TOKEN) as api:
        process = start_held(
            ["sync-historical", *DAYS, "--api-url", api.url],
            tmp_path,
            "between-windows:3",
        )
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    code, out, err = finish(start(["status"], tmp_path))
    assert code == 0, err
    assert f"its process {process.pid} is gone" in out
    # The running row's counts come from the windows it finished.
    line = next(line for line in out.splitlines() if "historical" in line)
    assert "running" in line and " 0/0/0/0 " not in line
