"""Shared helpers for tests that run the sync against the sandbox over real HTTP."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from peachdw.client import PeachClient
from peachdw.metrics import BUILTIN_METRICS

TOKEN = "test-token-0123456789"
# A frozen sandbox clock on an hour boundary, so every run sees the same data.
FROZEN = datetime(2025, 8, 8, 0, 0, tzinfo=UTC)
FROZEN_TS = FROZEN.timestamp()
FROZEN_HOUR = int(FROZEN_TS // 3600)


def make_client(url: str, token: str = TOKEN, **kwargs) -> PeachClient:
    kwargs.setdefault("sleep", lambda seconds: None)
    kwargs.setdefault("token_source", "environment variable PEACHAI_API_TOKEN")
    return PeachClient(url, token, **kwargs)


def api_hours(dataset, start_hour: int, end_hour: int) -> dict[tuple[int, int], tuple]:
    """What the API holds for a range, without zero hours: the warehouse's expected rows."""
    expected = {}
    for start in range(start_hour, end_hour, 168):
        for row in dataset.metrics(start, min(start + 168, end_hour)):
            values = tuple(int(row.get(m) or 0) for m in BUILTIN_METRICS)
            if any(values):
                expected[(row["campaign_id"], row["unix_hour"])] = values
    return expected


def stored_hours(conn, start_hour: int = 0, end_hour: int = 2**40) -> dict:
    sql = (
        f"SELECT campaign_id, unix_hour, {', '.join(BUILTIN_METRICS)} FROM hourly_data "
        "WHERE unix_hour >= ? AND unix_hour < ?"
    )
    return {
        (r[0], r[1]): tuple(r[2:]) for r in conn.execute(sql, (start_hour, end_hour))
    }


def totals(rows: dict) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    for values in rows.values():
        for name, value in zip(BUILTIN_METRICS, values, strict=True):
            sums[name] += value
    return dict(sums)
