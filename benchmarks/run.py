"""Benchmarks at production volume: `make bench`.

Loads one dense year of the sandbox's data (every campaign active every hour it has
traffic) through the real validation, upsert and daily-rollup path, and sets the figures
beside the physical limit measured in the same run: a bare `executemany` of the same tuples
into the same table. Prints a table and writes the same as JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from peachdw import db, loader, rollup, rules
from peachdw.client import PeachClient, window_bounds
from peachdw.export import CsvWriter, export_report
from peachdw.metrics import BUILTIN_METRICS
from peachdw.records import Campaign, parse_metrics
from peachdw.report import ReportPeriod, daily_totals
from peachdw.sandbox import Dataset, SandboxServer
from peachdw.sync import SyncOptions, SyncPlan, run_sync

RESULTS = Path(__file__).resolve().parent / "results"
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2026, 1, 1, tzinfo=UTC)
#: reporting.timezone for the run: the year's days and months are UTC ones.
ZONE = ZoneInfo("UTC")


def dense_dataset(campaigns: int) -> Dataset:
    """The sandbox's data with every campaign serving for the whole year."""
    dataset = Dataset(seed=1, campaigns=campaigns, now=YEAR_END, min_sessions=1)
    for campaign in dataset.campaigns:
        campaign.update(
            created_at="2024-12-31T00:00:00Z", deleted_at=None, is_serving=True
        )
    return dataset


def windows(dataset: Dataset) -> list[tuple[int, int, list[dict]]]:
    """The year as the API would send it: (start hour, end hour, rows) per window."""
    start = int(YEAR_START.timestamp()) // 3600
    end = int(YEAR_END.timestamp()) // 3600
    return [(s, e, dataset.metrics(s, e)) for s, e in window_bounds(start, end, 168)]


#: Campaign ids of the scale point's copies are offset by multiples of this.
ID_STRIDE = 100_000


def scaled_campaigns(dataset: Dataset, factor: int) -> list[dict]:
    """The dataset's campaigns, `factor` times over under new ids."""
    return [
        {**campaign, "id": campaign["id"] + copy * ID_STRIDE}
        for copy in range(factor)
        for campaign in dataset.campaigns
    ]


def scaled(payloads: list, factor: int) -> Iterator[tuple[int, int, list[dict]]]:
    """Each window's rows, `factor` times over for the copied campaigns, one window at
    a time so that a scale point never holds its whole year in memory."""
    for start, end, rows in payloads:
        if factor == 1:
            yield start, end, rows
            continue
        yield (
            start,
            end,
            [
                {**row, "campaign_id": row["campaign_id"] + copy * ID_STRIDE}
                for copy in range(factor)
                for row in rows
            ],
        )


def load_year(
    folder: Path, campaigns: list[dict], payloads: Iterable, *, compact: bool = True
) -> dict:
    """The real path and the physical limit, window by window, side by side.

    The real path: validation, plan (compare with what is stored), upsert, and the daily
    rollup kept in step in each window's transaction, as a sync does, into real.db. The
    limit: the same rows as tuples, one bare `executemany` per window, no checks at all,
    into bare.db (turning the rows into tuples is not timed). Each window is loaded both
    ways in turn, so that both see the same machine: on a shared one the rates drift by
    a third within minutes.
    """
    real = _open(folder / "real.db", campaigns)
    with db.transaction(real):
        rules.load_default_rules(real)
        # As a sync does before its first window: from here every write keeps it.
        rollup.ensure(real, ZONE)
        # Mapped, as after a sync, so that the reports' Hierarchy tab is realistic.
        rules.map_campaigns(real)
        # Rows carry the id of the sync that wrote them, as in a real sync.
        sync_id = real.execute(
            "INSERT INTO sync_history (sync_type, status, started_at) "
            "VALUES ('historical', 'running', ?)",
            (db.utc_now(),),
        ).lastrowid
    known = loader.known_campaign_ids(real)
    bare = _open(folder / "bare.db", campaigns)
    columns = ("campaign_id", "unix_hour", *BUILTIN_METRICS)
    sql = (
        f"INSERT INTO hourly_data ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )

    rows = bare_rows = 0
    seconds = bare_seconds = 0.0
    for start, end, payload in payloads:
        started = time.perf_counter()
        window = parse_metrics({"data": payload}, start, end)
        with db.transaction(real):
            plan = loader.plan_hourly(real, window, known)
            loader.apply_hourly(real, plan, sync_id)
        seconds += time.perf_counter() - started
        rows += plan.inserted

        batch = [tuple(row[name] for name in columns) for row in payload]
        started = time.perf_counter()
        with db.transaction(bare):
            bare.executemany(sql, batch)
        bare_seconds += time.perf_counter() - started
        bare_rows += len(batch)
    bare.close()
    (folder / "bare.db").unlink()

    real.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    days = real.execute("SELECT count(*) FROM daily_totals").fetchone()[0]
    try:
        rollup_bytes = real.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name = 'daily_totals'"
        ).fetchone()[0]
    except sqlite3.OperationalError:  # SQLite built without the dbstat table
        rollup_bytes = None
    loaded_bytes = (folder / "real.db").stat().st_size
    compact_seconds = None
    if compact:
        # `peachdw compact`, as the runbook has it after a big load: inserts into the
        # middle of each campaign's key range leave the pages they split part empty.
        started = time.perf_counter()
        db.compact(real)
        compact_seconds = time.perf_counter() - started
    real.close()
    return {
        "rows": rows,
        "seconds": seconds,
        "bare_rows": bare_rows,
        "bare_seconds": bare_seconds,
        "loaded_bytes": loaded_bytes,
        "bytes": (folder / "real.db").stat().st_size,
        "compact_seconds": compact_seconds,
        "rollup_rows": days,
        "rollup_bytes": rollup_bytes,
    }


def _open(path: Path, campaigns: list[dict]) -> sqlite3.Connection:
    conn = db.connect(path)
    db.migrate(conn)
    with db.transaction(conn):
        loader.upsert_campaigns(
            conn, [Campaign.model_validate(c) for c in campaigns], None
        )
    return conn


def backfill_year(folder: Path, dataset: Dataset) -> dict:
    """The whole job as a user runs it: `peachdw sync-historical` for the year, over HTTP
    from the sandbox (served from this process), in a process of its own so that its peak
    memory can be read."""
    token = "bench-token"
    with SandboxServer(dataset, token) as api:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "peachdw",
                "sync-historical",
                "--start-date",
                YEAR_START.date().isoformat(),
                "--end-date",
                (YEAR_END.date() - timedelta(days=1)).isoformat(),
                "--api-url",
                api.url,
                "--db-path",
                str(folder / "backfill.db"),
            ],
            env={**os.environ, "PEACHAI_API_TOKEN": token},
            check=True,
            capture_output=True,
        )
        seconds = time.perf_counter() - started
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"seconds": seconds, "peak_bytes": peak}


def mapping_speed(campaigns: int = 10_000, rule_count: int = 300) -> dict:
    """Map sandbox campaign names against the default rules plus user-like rules."""
    extra = []
    kinds = ("contains", "regex", "glob", "prefix")
    for number in range(rule_count - len(rules.default_rules())):
        kind = kinds[number % 4]
        word = f"promo{number}"
        pattern = {
            "contains": word,
            "regex": f"(?i)(?<![a-z0-9]){word}(?![a-z0-9])",
            "glob": f"*{word}*",
            "prefix": f"cmp{number}",
        }[kind]
        extra.append(
            rules.Rule(
                id=10_000 + number,
                pattern=pattern,
                match_type=kind,
                tiers={"special": f"S{number}"},
                priority=100 + number % 50,
            )
        )
    ruleset = rules.RuleSet([*rules.default_rules(), *extra])
    names = Dataset(seed=5, campaigns=campaigns).campaigns
    started = time.perf_counter()
    for campaign in names:
        ruleset.map(campaign)
    seconds = time.perf_counter() - started
    return {"campaigns": campaigns, "rules": len(ruleset.rules), "seconds": seconds}


def median_ms(action, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def campaign_sync(runs: int = 5) -> float:
    """Median seconds of the campaign phase of a sync (listing, upsert, mapping, history)
    of the sandbox's 230 campaigns into a fresh file, over real HTTP."""
    times = []
    with SandboxServer(Dataset(seed=42), "bench-token") as api:
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as folder:
                conn = db.connect(Path(folder) / "c.db")
                db.migrate(conn)
                with db.transaction(conn):
                    rules.load_default_rules(conn)
                hour = int(time.time() // 3600)
                plan = SyncPlan("incremental", hour, hour, ())
                with PeachClient(api.url, "bench-token") as client:
                    started = time.perf_counter()
                    run_sync(conn, client, SyncOptions(), plan=plan)
                    times.append(time.perf_counter() - started)
                conn.close()
    return statistics.median(times)


def queries(path: Path, payloads: list | None) -> dict:
    """Reads an analyst runs on the loaded year, and a resync of an unchanged week
    (without `payloads`, only the three aggregations: the scale point)."""
    conn = db.connect(path)
    start = int(YEAR_START.timestamp()) // 3600
    end = int(YEAR_END.timestamp()) // 3600
    metrics = ", ".join(f"sum({m})" for m in BUILTIN_METRICS)
    first_campaign = conn.execute("SELECT min(id) FROM campaigns").fetchone()[0]

    def one_campaign_daily() -> None:
        conn.execute(
            f"SELECT unix_hour / 24, {metrics} FROM hourly_data WHERE campaign_id = ? "
            "AND unix_hour >= ? AND unix_hour < ? GROUP BY unix_hour / 24",
            (first_campaign, start, end),
        ).fetchall()

    first_day = YEAR_START.date().isoformat()
    last_day = (YEAR_END.date() - timedelta(days=1)).isoformat()

    def all_monthly() -> None:
        # Months in the reporting zone are runs of its days in the rollup.
        conn.execute(
            f"SELECT c.id, substr(r.day, 1, 7) AS month, {metrics} "
            "FROM campaigns AS c CROSS JOIN daily_totals AS r ON r.campaign_id = c.id "
            "WHERE r.day >= ? AND r.day <= ? GROUP BY c.id, month",
            (first_day, last_day),
        ).fetchall()

    def all_monthly_from_hours() -> None:
        conn.execute(
            "SELECT c.id, strftime('%Y-%m', d.unix_hour * 3600, 'unixepoch') AS month, "
            f"{metrics} FROM campaigns AS c CROSS JOIN hourly_data AS d "
            "ON d.campaign_id = c.id WHERE d.unix_hour >= ? AND d.unix_hour < ? "
            "GROUP BY c.id, month",
            (start, end),
        ).fetchall()

    year = ReportPeriod(YEAR_START.date(), YEAR_END.date() - timedelta(days=1), ZONE)

    def year_daily() -> None:
        for _ in daily_totals(conn, year):
            pass

    def year_daily_from_hours() -> None:
        # As report.daily_totals reads while the rollup is not built for its zone.
        conn.execute("BEGIN")
        try:
            conn.execute("UPDATE rollup_state SET zone = NULL")
            year_daily()
        finally:
            conn.execute("ROLLBACK")

    def top_ten() -> None:
        conn.execute(
            "SELECT c.id, sum(d.sessions) AS s FROM campaigns AS c CROSS JOIN "
            "hourly_data AS d ON d.campaign_id = c.id WHERE d.unix_hour >= ? "
            "AND d.unix_hour < ? GROUP BY c.id ORDER BY s DESC LIMIT 10",
            (end - 30 * 24, end),
        ).fetchall()

    figures = {
        "one_campaign_daily_ms": median_ms(one_campaign_daily, 7),
        "all_monthly_ms": median_ms(all_monthly, 7),
        "top_ten_ms": median_ms(top_ten, 7),
    }
    if payloads is None:
        conn.close()
        return figures
    figures["all_monthly_from_hours_ms"] = median_ms(all_monthly_from_hours, 3)
    figures["year_daily_ms"] = median_ms(year_daily, 7)
    figures["year_daily_from_hours_ms"] = median_ms(year_daily_from_hours, 3)

    week_start, week_end, rows = payloads[len(payloads) // 2]
    window = parse_metrics({"data": rows}, week_start, week_end)
    known = loader.known_campaign_ids(conn)
    changes = conn.total_changes
    started = time.perf_counter()
    with db.transaction(conn):
        plan = loader.plan_hourly(conn, window, known)
        loader.apply_hourly(conn, plan, None)
    seconds = time.perf_counter() - started
    figures["resync_rows_per_s"] = len(window.rows) / seconds
    figures["resync_rewritten"] = conn.total_changes - changes

    conn.close()
    return figures


def scale_point(folder: Path, dataset: Dataset, payloads: list, factor: int) -> dict:
    """The year with `factor` times the campaigns: size, loader rate against the bare
    limit, and the aggregations, to show how cost grows with the work."""
    campaigns = scaled_campaigns(dataset, factor)
    scale = folder / "scale"
    scale.mkdir()
    # As loaded: compacting 700 MB would add a minute and show nothing new.
    real = load_year(scale, campaigns, scaled(payloads, factor), compact=False)
    return {
        "campaigns": len(campaigns),
        "rows": real["rows"],
        "bytes": real["bytes"],
        "loader_rows_per_s": real["rows"] / real["seconds"],
        "bare_rows_per_s": real["bare_rows"] / real["bare_seconds"],
        **queries(scale / "real.db", None),
    }


def year_period() -> ReportPeriod:
    last = (YEAR_END - timedelta(days=1)).date()
    return ReportPeriod(YEAR_START.date(), last, ZoneInfo("UTC"))


def report_exports(path: Path) -> dict:
    """The year's report as CSV (Daily tab), as Excel (three tabs), and to the local
    fake of Google Sheets used by the tests (three tabs; calls per 2 MB of values)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fake_sheets import FakeSheets

    from peachdw.config import SheetsSettings
    from peachdw.sheets import SheetsWriter, load_credentials
    from peachdw.xlsx import XlsxWriter

    conn = db.connect(path)
    figures = {}
    period = year_period()
    with tempfile.TemporaryDirectory() as folder:
        csv_writer = CsvWriter(
            ("Daily",), period, output=Path(folder) / "d.csv", directory=Path(folder)
        )
        started = time.perf_counter()
        export_report(conn, period, csv_writer, fmt="csv", tabs=("Daily",))
        figures["csv_daily_s"] = time.perf_counter() - started

        started = time.perf_counter()
        result = export_report(
            conn, period, XlsxWriter(Path(folder) / "y.xlsx"), fmt="xlsx"
        )
        figures["xlsx_s"] = time.perf_counter() - started
        figures["xlsx_rows"] = sum(result.tab_rows.values())

        with FakeSheets() as fake:
            key = fake.service_account_key(Path(folder) / "key.json")
            book = fake.add_spreadsheet("Year")
            settings = SheetsSettings(
                credentials=key,
                api_url=f"{fake.url}/v4",
                drive_url=f"{fake.url}/drive/v3",
            )
            writer = SheetsWriter(
                settings,
                load_credentials(key),
                spreadsheet_id=book,
                title="Year",
                create=False,
            )
            started = time.perf_counter()
            export_report(conn, period, writer, fmt="sheets")
            figures["sheets_s"] = time.perf_counter() - started
            calls = [c for c in fake.calls if c.path != "/token"]
            figures["sheets_calls"] = len(calls)
            figures["sheets_value_bytes"] = sum(
                c.body_size for c in calls if "values" in c.path
            )
    conn.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument(
        "--scale",
        type=int,
        default=10,
        help="The scale point has this many times the campaigns (0: leave it out).",
    )
    args = parser.parse_args()

    dataset = dense_dataset(args.campaigns)
    with tempfile.TemporaryDirectory() as folder:
        # First, while this process is small: a child's peak memory on Linux includes the
        # parent's at the moment it was started.
        backfill = backfill_year(Path(folder), dataset)

    mapping = mapping_speed()
    generated = time.perf_counter()
    payloads = windows(dataset)
    generated = time.perf_counter() - generated
    # The year's rows stay in memory for the whole run, which a sync never does; keep
    # the garbage collector from walking them again and again while it is measured.
    gc.freeze()

    with tempfile.TemporaryDirectory() as folder:
        real = load_year(Path(folder), dataset.campaigns, payloads)
        reads = queries(Path(folder) / "real.db", payloads)
        reads.update(report_exports(Path(folder) / "real.db"))
    scale = {}
    if args.scale:
        with tempfile.TemporaryDirectory() as folder:
            scale = scale_point(Path(folder), dataset, payloads, args.scale)
    campaigns_s = campaign_sync()

    real_rate = real["rows"] / real["seconds"]
    bare_rate = real["bare_rows"] / real["bare_seconds"]
    ratio = real_rate / bare_rate
    sheets_per_2mb = reads["sheets_calls"] / max(reads["sheets_value_bytes"] / 2e6, 1)
    # (figure, result, goal, met): met is None where there is no goal.
    figures = [
        (
            "campaign sync, 230 campaigns (median of 5)",
            f"{campaigns_s:.2f} s",
            "< 0.5 s",
            campaigns_s < 0.5,
        ),
        ("hourly rows in a dense year", f"{real['rows']:,}", "", None),
        (
            "database size, daily rollup included, after peachdw compact",
            f"{real['bytes'] / 1e6:.1f} MB "
            f"({real['bytes'] / max(real['rows'], 1):.1f} bytes/row, "
            f"compacted in {real['compact_seconds']:.1f} s)",
            "< 60 MB",
            real["bytes"] < 60e6,
        ),
        (
            "  the same file as loaded, before compact",
            f"{real['loaded_bytes'] / 1e6:.1f} MB "
            f"({real['loaded_bytes'] / max(real['rows'], 1):.1f} bytes/row)",
            "",
            None,
        ),
        (
            "daily rollup (daily_totals)",
            f"{real['rollup_rows']:,} rows, "
            + (
                f"{real['rollup_bytes'] / 1e6:.1f} MB"
                if real["rollup_bytes"] is not None
                else "size not measured (no dbstat)"
            ),
            "",
            None,
        ),
        (
            "loader rate (validate + plan + write + rollup)",
            f"{real_rate:,.0f} rows/s",
            "",
            None,
        ),
        ("bare executemany, same tuples", f"{bare_rate:,.0f} rows/s", "", None),
        ("loader / bare", f"{ratio:.2f}", ">= 0.5", ratio >= 0.5),
        (
            "backfill of the year over HTTP (sync-historical)",
            f"{backfill['seconds']:.0f} s, peak {backfill['peak_bytes'] / 2**20:.0f} MiB",
            "< 120 s, < 300 MB",
            backfill["seconds"] < 120 and backfill["peak_bytes"] < 300e6,
        ),
        (
            "resync of an unchanged week",
            f"{reads['resync_rows_per_s']:,.0f} rows/s, "
            f"{reads['resync_rewritten']} rows rewritten",
            "nothing rewritten",
            reads["resync_rewritten"] == 0,
        ),
        (
            "one campaign, daily totals over the year",
            f"{reads['one_campaign_daily_ms']:.1f} ms",
            "< 20 ms",
            reads["one_campaign_daily_ms"] < 20,
        ),
        (
            "all campaigns, monthly totals over the year (rollup)",
            f"{reads['all_monthly_ms']:.1f} ms",
            "< 200 ms",
            reads["all_monthly_ms"] < 200,
        ),
        (
            "  the same summed from the hours",
            f"{reads['all_monthly_from_hours_ms']:.0f} ms",
            "",
            None,
        ),
        (
            "top 10 campaigns by sessions over 30 days",
            f"{reads['top_ten_ms']:.1f} ms",
            "< 50 ms",
            reads["top_ten_ms"] < 50,
        ),
        (
            f"hierarchy mapping, {mapping['campaigns']:,} campaigns x "
            f"{mapping['rules']} rules",
            f"{mapping['seconds']:.2f} s "
            f"({mapping['seconds'] / mapping['campaigns'] * 1000:.3f} ms each)",
            "< 1 s",
            mapping["seconds"] < 1,
        ),
        (
            "CSV daily export of the year",
            f"{reads['csv_daily_s']:.2f} s",
            "< 2 s",
            reads["csv_daily_s"] < 2,
        ),
        (
            "three-tab Excel export of the year",
            f"{reads['xlsx_s']:.2f} s ({reads['xlsx_rows']:,} rows)",
            "< 5 s",
            reads["xlsx_s"] < 5,
        ),
        (
            "three-tab Sheets export of the year (local fake)",
            f"{reads['sheets_calls']} calls for "
            f"{reads['sheets_value_bytes'] / 1e6:.1f} MB of values "
            f"({sheets_per_2mb:.2f} per 2 MB), {reads['sheets_s']:.1f} s",
            "<= 5 calls per 2 MB",
            sheets_per_2mb <= 5,
        ),
        (
            "daily totals of the year, all campaigns (report.daily_totals)",
            f"{reads['year_daily_ms']:.0f} ms",
            "",
            None,
        ),
        (
            "  the same summed from the hours",
            f"{reads['year_daily_from_hours_ms']:.0f} ms",
            "",
            None,
        ),
        ("sandbox generation of the year", f"{generated:.1f} s", "", None),
    ]
    if scale:
        growth = scale["rows"] / real["rows"]
        figures += [
            (
                f"scale point: {scale['campaigns']:,} campaigns, hourly rows",
                f"{scale['rows']:,} ({growth:.1f}x)",
                "",
                None,
            ),
            (
                "  database size as loaded",
                f"{scale['bytes'] / 1e6:.0f} MB "
                f"({scale['bytes'] / scale['rows']:.1f} bytes/row)",
                "",
                None,
            ),
            (
                "  loader / bare",
                f"{scale['loader_rows_per_s']:,.0f} / {scale['bare_rows_per_s']:,.0f} "
                f"rows/s = {scale['loader_rows_per_s'] / scale['bare_rows_per_s']:.2f}",
                ">= 0.5",
                scale["loader_rows_per_s"] / scale["bare_rows_per_s"] >= 0.5,
            ),
            (
                "  all campaigns, monthly totals over the year",
                f"{scale['all_monthly_ms']:.0f} ms "
                f"({scale['all_monthly_ms'] / reads['all_monthly_ms']:.1f}x)",
                "",
                None,
            ),
            (
                "  top 10 campaigns by sessions over 30 days",
                f"{scale['top_ten_ms']:.0f} ms "
                f"({scale['top_ten_ms'] / reads['top_ten_ms']:.1f}x)",
                "",
                None,
            ),
            (
                "  one campaign, daily totals over the year",
                f"{scale['one_campaign_daily_ms']:.1f} ms",
                "",
                None,
            ),
        ]
    width = max(len(name) for name, *_ in figures)
    print(
        f"peachdw benchmarks: {args.campaigns} campaigns, SQLite {sqlite3.sqlite_version}, "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores"
    )
    for name, value, goal, met in figures:
        verdict = "" if met is None else ("met" if met else "NOT MET")
        print(f"  {name:<{width}}  {value:<34} {goal:<20} {verdict}")

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{args.campaigns}.json"
    out.write_text(
        json.dumps(
            {
                "campaigns": args.campaigns,
                "sqlite": sqlite3.sqlite_version,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "rows": real["rows"],
                "bytes": real["bytes"],
                "loaded_bytes": real["loaded_bytes"],
                "compact_seconds": real["compact_seconds"],
                "rollup_rows": real["rollup_rows"],
                "rollup_bytes": real["rollup_bytes"],
                "loader_rows_per_s": real_rate,
                "bare_rows_per_s": bare_rate,
                "generation_s": generated,
                "backfill_s": backfill["seconds"],
                "mapping_s": mapping["seconds"],
                "backfill_peak_bytes": backfill["peak_bytes"],
                "campaign_sync_s": campaigns_s,
                "scale_point": scale,
                **reads,
                # The printed table, row by row: met is null where there is no goal.
                "table": [
                    {"figure": name.strip(), "result": value, "goal": goal, "met": met}
                    for name, value, goal, met in figures
                ],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
