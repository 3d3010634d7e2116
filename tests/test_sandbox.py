"""The sandbox: its dataset, its fault plan and its HTTP server, over loopback HTTP."""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from peachdw.metrics import BUILTIN_METRICS, MAX_COUNT, REPORT_METRICS
from peachdw.sandbox import Dataset, FaultPlan, SandboxServer, parse_faults
from peachdw.sandbox.data import FORMULA_NAME, MATURITY_SECONDS
from peachdw.sandbox.faults import FAULT_KINDS

TOKEN = "sandbox-test-token-7f3a"
NOW = datetime(2025, 8, 2, 9, 40, tzinfo=UTC)
NOW_HOUR = int(NOW.timestamp()) // 3600
WEEK = (NOW_HOUR - 167, NOW_HOUR + 1)
OPENAPI = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    # Shared and read-only: tests that change campaigns build their own.
    return Dataset(seed=42, now=NOW)


@pytest.fixture(scope="module")
def week(dataset: Dataset) -> list[dict]:
    return dataset.metrics(*WEEK)


@pytest.fixture(scope="module")
def server(dataset: Dataset):
    with SandboxServer(dataset, TOKEN) as running:
        yield running


def fetch(
    server: SandboxServer, path: str, token: str | None = TOKEN, timeout: float = 10
) -> tuple[int, http.client.HTTPMessage, bytes]:
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def fetch_json(server: SandboxServer, path: str, **kwargs) -> tuple[int, dict]:
    status, headers, body = fetch(server, path, **kwargs)
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    return status, json.loads(body)


def metrics_path(start: int, end: int, campaign_id: int | None = None) -> str:
    path = f"/admin/metrics?start_hour={start}&end_hour={end}"
    return path if campaign_id is None else f"{path}&campaign_id={campaign_id}"


def by_key(rows: list[dict]) -> dict[tuple[int, int], dict]:
    return {(row["campaign_id"], row["unix_hour"]): row for row in rows}


# --- the dataset ----------------------------------------------------------------------


def test_same_seed_gives_same_campaigns_and_metrics(dataset: Dataset):
    twin = Dataset(seed=42, now=NOW)
    other = Dataset(seed=43, now=NOW)

    assert twin.campaigns == dataset.campaigns
    assert twin.metrics(NOW_HOUR - 48, NOW_HOUR) == dataset.metrics(
        NOW_HOUR - 48, NOW_HOUR
    )
    assert [c["name"] for c in other.campaigns] != [
        c["name"] for c in dataset.campaigns
    ]
    assert other.metrics(NOW_HOUR - 48, NOW_HOUR) != dataset.metrics(
        NOW_HOUR - 48, NOW_HOUR
    )


def test_a_smaller_dataset_is_a_prefix_of_a_larger_one(dataset: Dataset):
    small = Dataset(seed=42, campaigns=10, now=NOW)

    assert small.campaigns == dataset.campaigns[:10]
    assert small.metrics(NOW_HOUR - 24, NOW_HOUR) == [
        row
        for row in dataset.metrics(NOW_HOUR - 24, NOW_HOUR)
        if row["campaign_id"] <= 1010
    ]


def test_min_sessions_fills_every_hour_of_a_serving_campaign(dataset: Dataset):
    dense = Dataset(seed=42, now=NOW, min_sessions=1)
    # Settled hours: the last few still receive late events and start from zero.
    start, end = NOW_HOUR - 48, NOW_HOUR - MATURITY_SECONDS // 3600
    sparse_rows = dataset.metrics(start, end)
    dense_rows = dense.metrics(start, end)
    serving = {
        c["id"]: c
        for c in dense.campaigns
        if c["is_serving"] and not c["deleted_at"] and c["created_at"] < "2025-07-30"
    }

    hours = {(r["campaign_id"], r["unix_hour"]) for r in dense_rows}
    assert all((cid, h) in hours for cid in serving for h in range(start, end))
    # Without the floor, small campaigns have quiet hours, left out as the API does.
    sparse = {(r["campaign_id"], r["unix_hour"]) for r in sparse_rows}
    assert not all((cid, h) in sparse for cid in serving for h in range(start, end))
    assert min(r["sessions"] for r in dense_rows) == 1


def test_campaigns_look_like_a_real_account(dataset: Dataset):
    campaigns = dataset.campaigns
    names = [campaign["name"] for campaign in campaigns]
    networks = Counter(campaign["slug"].split("-")[0] for campaign in campaigns)
    exo_spellings = {
        name.split("_")[0] for name in names if name.lower().startswith("exo")
    }

    assert len(campaigns) == 230
    assert [c["id"] for c in campaigns] == list(range(1001, 1231))
    assert len(networks) == 10 and min(networks.values()) >= 3
    assert len(exo_spellings) >= 3
    assert sum(not c["is_serving"] and c["deleted_at"] is None for c in campaigns) >= 10
    assert sum(c["deleted_at"] is not None for c in campaigns) >= 10
    assert FORMULA_NAME in names and FORMULA_NAME.startswith("=")
    assert any(not name.isascii() for name in names)
    assert {"_", "-", " ", "|"} <= {
        sep for name in names for sep in "_- |" if sep in name
    }
    assert len({c["slug"] for c in campaigns}) == len(campaigns)
    assert sum(c["description"] is None for c in campaigns) > len(campaigns) * 0.7


@pytest.mark.parametrize("field", ["created_at", "updated_at", "deleted_at"])
def test_campaign_timestamps_lie_in_the_past_year(dataset: Dataset, field: str):
    stamps = [
        datetime.fromisoformat(c[field])
        for c in dataset.campaigns
        if c[field] is not None
    ]

    assert stamps
    assert all(NOW - timedelta(days=366) < stamp < NOW for stamp in stamps)


def test_campaign_fields_are_plausible(dataset: Dataset):
    for campaign in dataset.campaigns:
        created = datetime.fromisoformat(campaign["created_at"])
        assert datetime.fromisoformat(campaign["updated_at"]) >= created
        if campaign["deleted_at"]:
            assert datetime.fromisoformat(campaign["deleted_at"]) > created
            assert campaign["is_serving"] is False
        assert 1 <= campaign["traffic_weight"] <= 100
        assert campaign["serving_url"] == "https://peach.ai" + campaign["path"]
        assert campaign["tracking_url"].startswith(
            f"https://t.example/c/{campaign['id']}"
        )


def test_funnel_identities_hold_on_every_row_of_a_week(week: list[dict]):
    assert len(week) > 20_000

    for row in week:
        assert list(row) == ["campaign_id", "unix_hour", *BUILTIN_METRICS]
        assert all(
            type(row[name]) is int and row[name] >= 0 for name in BUILTIN_METRICS
        )
        assert row["total_accounts"] == row["email_accounts"] + row["google_accounts"]
        assert row["registrations"] == row["total_accounts"]
        assert (
            row["total_user_chats"]
            == row["companion_chats"] + row["chat_room_user_chats"]
        )
        assert row["messages"] == row["total_user_chats"]
        assert row["registrations"] <= row["sessions"]
        assert row["terms_acceptances"] <= row["registrations"]
        assert row["converted_users"] <= row["registrations"]
        assert row["credit_cards"] <= row["payment_methods"]
        assert row["media"] <= row["messages"]


def test_rows_are_sorted_and_inside_the_window(week: list[dict]):
    keys = [(row["unix_hour"], row["campaign_id"]) for row in week]

    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert WEEK[0] <= keys[0][0] and keys[-1][0] < WEEK[1]


def test_traffic_has_a_long_tail_and_quiet_nights(dataset: Dataset, week: list[dict]):
    sessions = Counter()
    hours_with_rows = Counter()
    for row in week:
        sessions[row["campaign_id"]] += row["sessions"]
        hours_with_rows[row["campaign_id"]] += 1
    totals = sorted(sessions.values())
    top_tenth = sum(totals[-len(totals) // 10 :])

    # Long tail: a tenth of the campaigns brings more than a third of the sessions.
    assert top_tenth > sum(totals) / 3
    assert totals[0] * 50 < totals[-1]
    # Small campaigns have genuinely empty (omitted) hours.
    assert sum(count < 150 for count in hours_with_rows.values()) >= 10
    # For US campaigns (UTC-5) 08:00-10:00 UTC is night, 01:00-03:00 UTC evening.
    us = {c["id"] for c in dataset.campaigns if "-us-" in c["slug"]}
    night = sum(
        r["sessions"]
        for r in week
        if r["campaign_id"] in us and r["unix_hour"] % 24 in (8, 9)
    )
    evening = sum(
        r["sessions"]
        for r in week
        if r["campaign_id"] in us and r["unix_hour"] % 24 in (1, 2)
    )
    assert night * 3 < evening


def test_paused_deleted_and_new_campaigns_have_traffic_only_while_alive(
    dataset: Dataset, week: list[dict]
):
    active = {row["campaign_id"] for row in week}
    paused = [
        c for c in dataset.campaigns if not c["is_serving"] and not c["deleted_at"]
    ]
    deleted = [c for c in dataset.campaigns if c["deleted_at"]]
    newest = max(dataset.campaigns, key=lambda c: c["created_at"])

    assert not active & {c["id"] for c in paused}
    assert not active & {c["id"] for c in deleted if c["deleted_at"] < "2025-07-26"}

    for campaign in [*deleted, newest]:
        born = datetime.fromisoformat(campaign["created_at"]).timestamp()
        died = datetime.fromisoformat(
            campaign["deleted_at"] or NOW.isoformat()
        ).timestamp()
        rows = []
        for start in range(int(born) // 3600 - 24, int(died) // 3600 + 24, 168):
            rows += dataset.metrics(start, start + 168, campaign["id"])
        last_end = (max(row["unix_hour"] for row in rows) + 1) * 3600

        assert min(row["unix_hour"] for row in rows) * 3600 >= born
        if campaign["deleted_at"]:
            # Only hours that ended before the deletion carry traffic.
            assert last_end <= died
        else:
            assert last_end - 3600 < died < last_end


def test_reports_equal_the_hourly_sums(dataset: Dataset):
    first_day = NOW.date() - timedelta(days=2)
    start_hour = (first_day - date(1970, 1, 1)).days * 24
    expected: dict[tuple[int, str], Counter] = {}
    for row in dataset.metrics(start_hour, start_hour + 72):
        day = datetime.fromtimestamp(row["unix_hour"] * 3600, UTC).date().isoformat()
        expected.setdefault((row["campaign_id"], day), Counter()).update(
            {name: row[name] for name in REPORT_METRICS}
        )

    reports = dataset.reports(first_day, NOW.date())

    assert len(reports) == len(expected) > 400
    for report in reports:
        assert list(report) == ["campaign_id", "date", *REPORT_METRICS]
        totals = expected[report["campaign_id"], report["date"]]
        assert {name: report[name] for name in REPORT_METRICS} == {
            name: totals[name] for name in REPORT_METRICS
        }
    assert dataset.reports(first_day, NOW.date(), 1003) == [
        report for report in reports if report["campaign_id"] == 1003
    ]


def test_a_frozen_clock_gives_no_hour_at_or_after_it(dataset: Dataset):
    rows = dataset.metrics(NOW_HOUR - 6, NOW_HOUR + 48)
    on_the_hour = Dataset(seed=42, now=NOW.replace(minute=0))

    assert rows and all(row["unix_hour"] * 3600 < NOW.timestamp() for row in rows)
    # 09:40 is inside hour 09:00, which comes with what it has so far.
    assert max(row["unix_hour"] for row in rows) == NOW_HOUR
    assert max(
        row["unix_hour"] for row in on_the_hour.metrics(NOW_HOUR - 6, NOW_HOUR + 1)
    ) == (NOW_HOUR - 1)
    assert dataset.metrics(NOW_HOUR + 1, NOW_HOUR + 48) == []


def test_recent_hours_mature_while_old_hours_stay():
    clock = Dataset(seed=42, now=NOW)
    recent_then = by_key(clock.metrics(NOW_HOUR - 2, NOW_HOUR))
    old_then = clock.metrics(NOW_HOUR - 30, NOW_HOUR - 24)

    clock.set_now(NOW + timedelta(seconds=5))
    recent_seconds_later = by_key(clock.metrics(NOW_HOUR - 2, NOW_HOUR))
    clock.set_now(NOW + timedelta(days=1))
    recent_next_day = by_key(clock.metrics(NOW_HOUR - 2, NOW_HOUR))
    old_next_day = clock.metrics(NOW_HOUR - 30, NOW_HOUR - 24)

    assert recent_seconds_later == recent_then
    assert old_next_day == old_then
    assert set(recent_then) <= set(recent_next_day)
    grown = 0
    for key, row in recent_then.items():
        final = recent_next_day[key]
        assert all(row[name] <= final[name] for name in BUILTIN_METRICS)
        grown += row["sessions"] < final["sessions"]
    assert grown > len(recent_then) / 2


def test_campaign_changes_show_in_the_data():
    data = Dataset(seed=42, now=NOW)
    victim, renamed = data.campaigns[2], data.campaigns[3]
    before = data.metrics(NOW_HOUR - 24, NOW_HOUR, victim["id"])

    renamed["name"] = "Renamed ✓"
    data.campaigns.remove(victim)
    kept = data.campaigns[4]
    kept["deleted_at"] = (NOW - timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert before
    assert data.metrics(NOW_HOUR - 24, NOW_HOUR, victim["id"]) == []
    assert max(
        row["unix_hour"] for row in data.metrics(NOW_HOUR - 24, NOW_HOUR, kept["id"])
    ) < (NOW_HOUR - 12)
    assert data.metrics(NOW_HOUR - 24, NOW_HOUR, renamed["id"])


def test_a_naive_clock_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        Dataset(now=datetime(2025, 8, 2))


# --- the fault plan -------------------------------------------------------------------


def test_parse_faults_reads_a_spec():
    assert parse_faults("429:0.1,500:0.1,timeout:0.05") == {
        "429": 0.1,
        "500": 0.1,
        "timeout": 0.05,
    }
    assert parse_faults(" trickle:1 , ") == {"trickle": 1.0}
    assert parse_faults("") == {}


@pytest.mark.parametrize(
    ("spec", "bad_part"),
    [
        pytest.param("404:0.1", "404", id="unknown-kind"),
        pytest.param("429", "429", id="no-rate"),
        pytest.param("500:lots", "lots", id="rate-not-a-number"),
        pytest.param("timeout:1.5", "1.5", id="rate-above-one"),
        pytest.param("timeout:-0.1", "-0.1", id="negative-rate"),
        pytest.param("badvalue:nan", "nan", id="nan-rate"),
        pytest.param("429:0.1,429:0.2", "429", id="twice"),
        pytest.param("429:0.6,500:0.6", "429:0.6,500:0.6", id="sum-above-one"),
    ],
)
def test_parse_faults_names_the_bad_part(spec: str, bad_part: str):
    with pytest.raises(ValueError) as caught:
        parse_faults(spec)

    message = str(caught.value)
    assert bad_part in message
    assert all(kind in message for kind in FAULT_KINDS)
    assert "\n" not in message


def test_the_same_seed_gives_the_same_faults():
    rates = {"429": 0.2, "500": 0.2, "malformed": 0.1}
    one, two, other = (
        FaultPlan(rates, seed=9),
        FaultPlan(rates, seed=9),
        FaultPlan(rates, 10),
    )

    sequence = [one.draw() for _ in range(2000)]

    assert sequence == [two.draw() for _ in range(2000)]
    assert sequence != [other.draw() for _ in range(2000)]
    counts = Counter(sequence)
    assert 300 < counts["429"] < 500 and 300 < counts["500"] < 500
    assert 130 < counts["malformed"] < 270
    assert set(counts) == {"429", "500", "malformed", None}


def test_fault_plan_draws_are_thread_safe():
    rates = {"429": 0.3, "trickle": 0.3}
    alone = FaultPlan(rates, seed=3)
    expected = Counter(alone.draw() for _ in range(4000))
    shared = FaultPlan(rates, seed=3)
    drawn: list[str | None] = []

    def draw_many() -> None:
        kinds = [shared.draw() for _ in range(1000)]
        drawn.extend(kinds)

    threads = [threading.Thread(target=draw_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Counter(drawn) == expected


def test_fault_plan_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="valid kinds"):
        FaultPlan({"418": 0.5})


# --- the HTTP server ------------------------------------------------------------------


def test_metrics_over_http_match_the_dataset(server: SandboxServer, dataset: Dataset):
    status, body = fetch_json(server, metrics_path(NOW_HOUR - 24, NOW_HOUR))

    assert status == 200
    assert body["start_hour"] == NOW_HOUR - 24 and body["end_hour"] == NOW_HOUR
    assert body["data"] == dataset.metrics(NOW_HOUR - 24, NOW_HOUR)


def test_a_full_168_hour_window_is_served(server: SandboxServer):
    status, body = fetch_json(server, metrics_path(*WEEK))

    assert status == 200
    assert len(body["data"]) > 20_000


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        pytest.param(
            f"start_hour={NOW_HOUR - 169}&end_hour={NOW_HOUR}", "168", id="169-hours"
        ),
        pytest.param(
            f"start_hour={NOW_HOUR}&end_hour={NOW_HOUR}", "greater", id="empty"
        ),
        pytest.param(
            f"start_hour={NOW_HOUR}&end_hour={NOW_HOUR - 5}", "greater", id="reversed"
        ),
        pytest.param(f"start_hour={NOW_HOUR}", "end_hour", id="missing-end"),
        pytest.param("start_hour=abc&end_hour=5", "start_hour", id="not-an-integer"),
        pytest.param("start_hour=1.5&end_hour=5", "start_hour", id="fractional"),
        pytest.param(
            "start_hour=1&end_hour=5&campaign_id=x", "campaign_id", id="bad-campaign"
        ),
    ],
)
def test_bad_metrics_windows_get_400(server: SandboxServer, query: str, needle: str):
    status, body = fetch_json(server, f"/admin/metrics?{query}")

    assert status == 400
    assert needle in body["error"]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("start_date=2025-08-01", id="missing-end"),
        pytest.param("start_date=2025-13-01&end_date=2025-13-02", id="no-such-month"),
        pytest.param("start_date=20250801&end_date=20250802", id="compact"),
        pytest.param("start_date=2025-08-02&end_date=2025-08-01", id="reversed"),
    ],
)
def test_bad_report_dates_get_400(server: SandboxServer, query: str):
    status, body = fetch_json(server, f"/admin/reports?{query}")

    assert status == 400
    assert "date" in body["error"]


def test_reports_over_http_match_the_dataset(server: SandboxServer, dataset: Dataset):
    status, body = fetch_json(
        server,
        "/admin/reports?start_date=2025-07-30&end_date=2025-08-01&campaign_id=1005",
    )

    assert status == 200
    assert body == {"data": dataset.reports(date(2025, 7, 30), date(2025, 8, 1), 1005)}
    assert [row["date"] for row in body["data"]] == [
        "2025-07-30",
        "2025-07-31",
        "2025-08-01",
    ]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="missing"),
        pytest.param("wrong-token", id="wrong"),
        pytest.param(TOKEN + "x", id="longer"),
    ],
)
def test_a_bad_token_gets_401_without_echo(server: SandboxServer, token: str | None):
    status, headers, body = fetch(server, "/admin/campaigns", token=token)

    assert status == 401
    assert json.loads(body)["error"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN.encode() not in body
    assert b"wrong-token" not in body


def test_the_token_is_never_logged(
    server: SandboxServer, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.DEBUG, logger="peachdw.sandbox"):
        fetch(server, "/admin/campaigns?per_page=1")
        fetch(server, "/admin/campaigns", token="not-it")

    assert "/admin/campaigns?per_page=1" in caplog.text
    assert TOKEN not in caplog.text and "not-it" not in caplog.text


def test_pagination_covers_every_campaign_exactly_once(
    server: SandboxServer, dataset: Dataset
):
    seen: list[int] = []
    page, total_pages = 1, 1
    while page <= total_pages:
        status, body = fetch_json(server, f"/admin/campaigns?page={page}&per_page=37")
        assert status == 200
        assert body["pagination"] == {
            "page": page,
            "per_page": 37,
            "total": 230,
            "total_pages": 7,
        }
        total_pages = body["pagination"]["total_pages"]
        seen += [campaign["id"] for campaign in body["data"]]
        page += 1

    assert seen == [campaign["id"] for campaign in dataset.campaigns]
    assert fetch_json(server, "/admin/campaigns?page=8&per_page=37")[1]["data"] == []
    assert len(fetch_json(server, "/admin/campaigns")[1]["data"]) == 100


@pytest.mark.parametrize("query", ["per_page=101", "per_page=0", "page=0", "page=two"])
def test_bad_pages_get_400(server: SandboxServer, query: str):
    status, body = fetch_json(server, f"/admin/campaigns?{query}")

    assert status == 400
    assert body["error"]


def test_unknown_paths_and_methods_get_json_errors(server: SandboxServer):
    status, body = fetch_json(server, "/admin/users")
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    connection.request("POST", "/admin/campaigns", body=b"{}")
    posted = connection.getresponse()

    assert status == 404 and "/admin/users" in body["error"]
    assert posted.status == 405 and "error" in json.loads(posted.read())
    connection.close()


def test_requests_are_counted_per_path_from_many_threads(dataset: Dataset):
    results: list[int] = []
    with SandboxServer(dataset, TOKEN) as running:

        def call() -> None:
            results.append(fetch(running, "/admin/campaigns?per_page=5")[0])

        threads = [threading.Thread(target=call) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        fetch(running, "/admin/reports?start_date=2025-08-01&end_date=2025-08-01")

    assert results == [200] * 12
    assert running.requests == Counter({"/admin/campaigns": 12, "/admin/reports": 1})
    assert running.faults_injected == Counter()


def test_latency_delays_each_response(dataset: Dataset):
    with SandboxServer(dataset, TOKEN, latency=0.3) as slow:
        started = time.perf_counter()
        status = fetch(slow, "/admin/campaigns?per_page=1")[0]

    assert status == 200
    assert time.perf_counter() - started >= 0.3


def test_serve_forever_runs_until_stopped_from_another_thread():
    empty = SandboxServer(Dataset(campaigns=0, now=NOW), TOKEN)
    foreground = threading.Thread(target=empty.serve_forever)
    foreground.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            empty.url  # noqa: B018 - known once the socket is bound
            break
        except RuntimeError:
            time.sleep(0.01)

    status, body = fetch_json(empty, "/admin/campaigns")
    empty.stop()
    foreground.join(timeout=2)

    assert status == 200
    assert body == {
        "data": [],
        "pagination": {"page": 1, "per_page": 100, "total": 0, "total_pages": 0},
    }
    assert not foreground.is_alive()
    with pytest.raises(RuntimeError, match="not running"):
        empty.url  # noqa: B018 - the property raises once stopped


def test_a_request_http_server_refuses_still_gets_json(server: SandboxServer):
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    connection.connect()
    headers = b"".join(b"X-Filler-%d: 1\r\n" % number for number in range(120))
    connection.sock.sendall(b"GET /admin/campaigns HTTP/1.1\r\n" + headers + b"\r\n")
    response = http.client.HTTPResponse(connection.sock)
    response.begin()

    assert response.status == 431
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.read())["error"]
    connection.close()


# --- the contract document ------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi() -> dict:
    return yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))


def validator(openapi: dict, name: str) -> jsonschema.Draft202012Validator:
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; the document itself is the resource
    # that `#/components/schemas/...` points into.
    registry = Registry().with_resource(
        "urn:peachdw:openapi",
        Resource.from_contents(openapi, default_specification=DRAFT202012),
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:peachdw:openapi#/components/schemas/{name}"}, registry=registry
    )


@pytest.mark.parametrize(
    ("path", "status", "schema"),
    [
        pytest.param(
            "/admin/campaigns?page=2&per_page=100", 200, "CampaignPage", id="campaigns"
        ),
        pytest.param(
            metrics_path(NOW_HOUR - 12, NOW_HOUR + 1),
            200,
            "MetricsResponse",
            id="metrics",
        ),
        pytest.param(
            "/admin/reports?start_date=2025-07-28&end_date=2025-08-02",
            200,
            "ReportsResponse",
            id="reports",
        ),
        pytest.param(metrics_path(0, 500), 400, "Error", id="bad-window"),
    ],
)
def test_sandbox_answers_match_the_openapi_document(
    server: SandboxServer, openapi: dict, path: str, status: int, schema: str
):
    got_status, body = fetch_json(server, path)

    assert got_status == status
    validator(openapi, schema).validate(body)
    if status == 200:
        assert body["data"]


def test_a_401_matches_the_openapi_document(server: SandboxServer, openapi: dict):
    status, body = fetch_json(server, "/admin/metrics", token="nope")

    assert status == 401
    validator(openapi, "Error").validate(body)


def test_the_openapi_document_covers_the_contract(openapi: dict):
    schemas = openapi["components"]["schemas"]
    metrics = openapi["paths"]["/admin/metrics"]["get"]

    assert openapi["openapi"].startswith("3.1")
    assert set(BUILTIN_METRICS) <= set(schemas["MetricRow"]["required"])
    assert set(BUILTIN_METRICS) <= set(schemas["MetricRow"]["properties"])
    assert set(REPORT_METRICS) <= set(schemas["ReportRow"]["required"])
    assert metrics["x-max-window-hours"] == 168 and "168" in metrics["description"]
    assert openapi["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path in ("/admin/campaigns", "/admin/metrics", "/admin/reports"):
        assert {"200", "400", "401", "429"} <= set(
            openapi["paths"][path]["get"]["responses"]
        )
    assert {
        "Campaign",
        "CampaignPage",
        "MetricRow",
        "MetricsResponse",
        "ReportRow",
    } <= set(schemas)
    assert {"ReportsResponse", "Error"} <= set(schemas)


# --- faults over HTTP -----------------------------------------------------------------


def faulty(dataset: Dataset, kind: str, **options) -> SandboxServer:
    return SandboxServer(
        dataset, TOKEN, faults=FaultPlan({kind: 1.0}, seed=1), **options
    )


def test_429_sends_retry_after_in_seconds_then_as_a_date(dataset: Dataset):
    with faulty(dataset, "429", retry_after=3) as running:
        first_status, first_headers, first_body = fetch(running, "/admin/campaigns")
        second_status, second_headers, _ = fetch(running, "/admin/campaigns")

    when = email.utils.parsedate_to_datetime(second_headers["Retry-After"])
    assert (first_status, second_status) == (429, 429)
    assert first_headers["Retry-After"] == "3"
    assert json.loads(first_body)["error"]
    assert 2 <= (when - datetime.now(UTC)).total_seconds() <= 4.5
    assert running.faults_injected == Counter({"429": 2})


def test_500_faults_cycle_through_the_5xx_statuses(dataset: Dataset):
    with faulty(dataset, "500") as running:
        statuses = [fetch(running, "/admin/campaigns")[0] for _ in range(5)]

    assert statuses == [500, 502, 503, 504, 500]
    assert running.faults_injected["500"] == 5


def test_malformed_bodies_are_broken_in_three_ways(dataset: Dataset):
    with faulty(dataset, "malformed") as running:
        status, _, not_json = fetch(running, metrics_path(NOW_HOUR - 3, NOW_HOUR))
        with pytest.raises(http.client.IncompleteRead):
            fetch(running, metrics_path(NOW_HOUR - 3, NOW_HOUR))
        _, no_data = fetch_json(running, "/admin/campaigns?per_page=3")

    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(not_json)
    assert "data" not in no_data and len(no_data["results"]) == 3
    assert running.faults_injected["malformed"] == 3


def test_duplicate_rows_come_before_their_final_value(dataset: Dataset):
    with faulty(dataset, "duplicate") as running:
        _, body = fetch_json(running, metrics_path(NOW_HOUR - 24, NOW_HOUR))
        _, campaigns = fetch_json(running, "/admin/campaigns?per_page=2")

    rows = body["data"]
    expected = dataset.metrics(NOW_HOUR - 24, NOW_HOUR)
    keys = Counter((row["campaign_id"], row["unix_hour"]) for row in rows)
    repeated = [key for key, count in keys.items() if count > 1]
    assert 1 <= len(repeated) <= 3
    assert len(rows) == len(expected) + len(repeated)
    assert by_key(rows) == by_key(expected)
    for key in repeated:
        copies = [row for row in rows if (row["campaign_id"], row["unix_hour"]) == key]
        assert copies[0] != copies[1] and copies[1] == by_key(expected)[key]
    # Not a metrics answer: the draw is spent and nothing is injected.
    assert len(campaigns["data"]) == 2
    assert running.faults_injected == Counter({"duplicate": 1})


def test_bad_values_are_text_negative_fractional_or_too_big(
    dataset: Dataset, openapi: dict
):
    found = []
    with faulty(dataset, "badvalue") as running:
        for _ in range(4):
            _, body = fetch_json(running, metrics_path(NOW_HOUR - 6, NOW_HOUR))
            bad = [
                row[name]
                for row in body["data"]
                for name in BUILTIN_METRICS
                if type(row[name]) is not int or not 0 <= row[name] <= MAX_COUNT
            ]
            assert bad
            found.append(bad[0])
            with pytest.raises(jsonschema.ValidationError):
                validator(openapi, "MetricsResponse").validate(body)

    assert found[0] == "abc"
    assert isinstance(found[1], int) and found[1] < 0
    assert isinstance(found[2], float) and found[2] % 1 == 0.5
    assert isinstance(found[3], int) and found[3] > MAX_COUNT
    assert running.faults_injected["badvalue"] == 4


def test_timeout_answers_after_the_delay(dataset: Dataset):
    with faulty(dataset, "timeout", timeout_delay=0.5) as running:
        started = time.perf_counter()
        status, body = fetch_json(running, "/admin/campaigns?per_page=2")
        elapsed = time.perf_counter() - started
        with pytest.raises(TimeoutError):
            fetch(running, "/admin/campaigns?per_page=2", timeout=0.2)

    assert status == 200 and len(body["data"]) == 2
    assert elapsed >= 0.5


def test_trickle_sends_headers_then_drips_and_stop_is_prompt(dataset: Dataset):
    running = faulty(dataset, "trickle", trickle_interval=0.2).start()
    url = urlsplit(running.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        started = time.perf_counter()
        connection.request(
            "GET", "/admin/campaigns", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        response = connection.getresponse()
        headers_after = time.perf_counter() - started
        first_bytes = response.read(3)
        bytes_after = time.perf_counter() - started

        stopping = time.perf_counter()
        running.stop()
        stop_took = time.perf_counter() - stopping
    finally:
        connection.close()
        running.stop()

    assert response.status == 200
    assert int(response.headers["Content-Length"]) > 10_000
    assert headers_after < 0.5
    assert first_bytes == b'{"d'
    assert bytes_after >= 0.55
    assert stop_took < 1.0
    assert running.faults_injected == Counter({"trickle": 1})
