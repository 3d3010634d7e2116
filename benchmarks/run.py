"""Benchmarks at production volume: `make bench`.

Loads one dense year of the sandbox's data (every campaign active every hour it has
traffic) through the real validation and upsert path, and sets the figures beside the
physical limit measured in the same run: a bare `executemany` of the same tuples into the
same table. Prints a table and writes the same as JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from peachdw import db, loader, rules
from peachdw.client import window_bounds
from peachdw.metrics import METRICS
from peachdw.records import Campaign, parse_metrics
from peachdw.sandbox import Dataset, SandboxServer

RESULTS = Path(__file__).resolve().parent / "results"
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2026, 1, 1, tzinfo=UTC)


def dense_dataset(campaigns: int) -> Dataset:
    """The sandbox's data with every campaign serving for the whole year."""
    dataset = Dataset(seed=1, campaigns=campaigns, now=YEAR_END)
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


def load_year(path: Path, dataset: Dataset, payloads: list) -> dict:
    """The real path: validation, plan (compare with what is stored), upsert."""
    conn = db.connect(path)
    db.migrate(conn)
    with db.transaction(conn):
        rules.load_default_rules(conn)
        loader.upsert_campaigns(
            conn, [Campaign.model_validate(c) for c in dataset.campaigns], None
        )
        # Rows carry the id of the sync that wrote them, as in a real sync.
        sync_id = conn.execute(
            "INSERT INTO sync_history (sync_type, status, started_at) "
            "VALUES ('historical', 'running', ?)",
            (db.utc_now(),),
        ).lastrowid
    known = loader.known_campaign_ids(conn)

    rows = 0
    started = time.perf_counter()
    for start, end, payload in payloads:
        window = parse_metrics({"data": payload}, start, end)
        with db.transaction(conn):
            plan = loader.plan_hourly(conn, window, known)
            loader.apply_hourly(conn, plan, sync_id)
        rows += plan.inserted
    seconds = time.perf_counter() - started

    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"rows": rows, "seconds": seconds, "bytes": path.stat().st_size}


def bare_executemany(path: Path, dataset: Dataset, payloads: list) -> dict:
    """The limit: the same tuples, one executemany per window, no checks at all."""
    conn = db.connect(path)
    db.migrate(conn)
    with db.transaction(conn):
        loader.upsert_campaigns(
            conn, [Campaign.model_validate(c) for c in dataset.campaigns], None
        )
    columns = ("campaign_id", "unix_hour", *METRICS)
    sql = (
        f"INSERT INTO hourly_data ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    tuples = [
        [tuple(row[name] for name in columns) for row in payload]
        for _, _, payload in payloads
    ]
    rows = 0
    started = time.perf_counter()
    for batch in tuples:
        with db.transaction(conn):
            conn.executemany(sql, batch)
        rows += len(batch)
    seconds = time.perf_counter() - started
    conn.close()
    return {"rows": rows, "seconds": seconds}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=200)
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

    with tempfile.TemporaryDirectory() as folder:
        real = load_year(Path(folder) / "real.db", dataset, payloads)
        bare = bare_executemany(Path(folder) / "bare.db", dataset, payloads)

    real_rate = real["rows"] / real["seconds"]
    bare_rate = bare["rows"] / bare["seconds"]
    figures = [
        ("hourly rows in a dense year", f"{real['rows']:,}", ""),
        (
            "database size",
            f"{real['bytes'] / 1e6:.1f} MB "
            f"({real['bytes'] / max(real['rows'], 1):.1f} bytes/row)",
            "under 60 MB",
        ),
        ("loader rate (validate + plan + upsert)", f"{real_rate:,.0f} rows/s", ""),
        ("bare executemany, same tuples", f"{bare_rate:,.0f} rows/s", ""),
        ("loader / bare", f"{real_rate / bare_rate:.2f}", "at least 0.5"),
        ("sandbox generation of the year", f"{generated:.1f} s", ""),
        (
            f"hierarchy mapping, {mapping['campaigns']:,} campaigns x "
            f"{mapping['rules']} rules",
            f"{mapping['seconds']:.2f} s "
            f"({mapping['seconds'] / mapping['campaigns'] * 1000:.3f} ms each)",
            "under 1 s",
        ),
        (
            "backfill of the year over HTTP (sync-historical)",
            f"{backfill['seconds']:.0f} s, peak {backfill['peak_bytes'] / 2**20:.0f} MiB",
            "under 120 s, under 300 MB",
        ),
    ]
    width = max(len(name) for name, _, _ in figures)
    print(
        f"peachdw benchmarks: {args.campaigns} campaigns, SQLite {sqlite3.sqlite_version}, "
        f"Python {platform.python_version()}, {platform.machine()}"
    )
    for name, value, goal in figures:
        print(f"  {name:<{width}}  {value:<28} {goal}")

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
                "loader_rows_per_s": real_rate,
                "bare_rows_per_s": bare_rate,
                "generation_s": generated,
                "backfill_s": backfill["seconds"],
                "mapping_s": mapping["seconds"],
                "backfill_peak_bytes": backfill["peak_bytes"],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
