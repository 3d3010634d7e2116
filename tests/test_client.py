from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from peachdw.client import PeachClient, parse_retry_after, window_bounds
from peachdw.errors import (
    AuthError,
    ListingChangedError,
    PayloadError,
    RequestRejectedError,
    RetryWaitTooLongError,
    TransientApiError,
)

TOKEN = "tok-5ecret-value"


class Script:
    """A mock transport that answers from a list of responses, recording requests."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return answer(request) if callable(answer) else answer


def make_client(script, **kwargs):
    sleeps: list[float] = []
    client = PeachClient(
        "http://api.test",
        TOKEN,
        token_source="environment variable PEACHAI_API_TOKEN",
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
        **kwargs,
    )
    return client, sleeps


def metrics_body(rows=()):
    return httpx.Response(
        200, json={"start_hour": 0, "end_hour": 1, "data": list(rows)}
    )


def test_bearer_token_is_sent():
    script = Script(metrics_body())
    client, _ = make_client(script)
    client.fetch_metrics(10, 20)
    request = script.requests[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.url.params["start_hour"] == "10"
    assert request.url.params["end_hour"] == "20"


def test_server_error_is_retried_then_succeeds():
    script = Script(
        httpx.Response(503), metrics_body([{"campaign_id": 1, "unix_hour": 10}])
    )
    client, sleeps = make_client(script)
    window = client.fetch_metrics(10, 11)
    assert len(window.rows) == 1
    assert client.stats.calls == 2
    assert client.stats.retries == 1
    assert len(sleeps) == 1 and sleeps[0] > 0


def test_server_error_gives_up_after_three_attempts():
    script = Script(httpx.Response(500))
    client, sleeps = make_client(script)
    with pytest.raises(TransientApiError, match="after 3 attempts"):
        client.fetch_metrics(10, 11)
    assert client.stats.calls == 3
    assert len(sleeps) == 2
    assert sleeps[1] > sleeps[0] * 1.2 or sleeps[1] >= 1.0  # backoff grows


def test_retry_after_seconds_is_waited():
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}), metrics_body())
    client, sleeps = make_client(script)
    client.fetch_metrics(10, 11)
    assert sleeps == [1.0]
    assert client.stats.wait_seconds == 1.0


def test_retry_after_http_date_is_waited():
    when = datetime.now(UTC) + timedelta(seconds=5)
    header = format_datetime(when, usegmt=True)
    script = Script(
        httpx.Response(429, headers={"Retry-After": header}), metrics_body()
    )
    client, sleeps = make_client(script)
    client.fetch_metrics(10, 11)
    assert 3.0 <= sleeps[0] <= 5.0


def test_rate_limits_do_not_use_up_the_error_attempts():
    limited = httpx.Response(429, headers={"Retry-After": "0"})
    script = Script(
        limited, httpx.Response(500), limited, httpx.Response(502), metrics_body()
    )
    client, _ = make_client(script)
    client.fetch_metrics(10, 11)
    assert client.stats.calls == 5


def test_too_long_retry_after_stops_at_once():
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}))
    client, sleeps = make_client(script, max_retry_wait=60)
    with pytest.raises(RetryWaitTooLongError, match="asked to wait 3600 seconds"):
        client.fetch_metrics(10, 11)
    assert client.stats.calls == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_is_not_retried_and_not_shown(status):
    script = Script(httpx.Response(status, json={"error": "bad token"}))
    client, _ = make_client(script)
    with pytest.raises(AuthError) as caught:
        client.fetch_campaigns()
    message = str(caught.value)
    assert client.stats.calls == 1
    assert "PEACHAI_API_TOKEN" in message
    assert TOKEN not in message


def test_bad_request_names_the_window_and_is_not_retried():
    script = Script(httpx.Response(400, json={"error": "window larger than 168 hours"}))
    client, _ = make_client(script)
    with pytest.raises(RequestRejectedError) as caught:
        client.fetch_metrics(100, 268)
    assert "1970-01-05 04:00 UTC to 1970-01-12 03:00 UTC" in str(caught.value)
    assert "larger than 168" in str(caught.value)
    assert client.stats.calls == 1


def test_invalid_json_is_retried_as_a_failed_call():
    script = Script(httpx.Response(200, content=b'{"data": [{"campa'), metrics_body())
    client, _ = make_client(script)
    client.fetch_metrics(10, 11)
    assert client.stats.calls == 2


def test_page_missing_data_fails_after_retries():
    script = Script(httpx.Response(200, json={"pagination": {}}))
    client, _ = make_client(script)
    with pytest.raises(PayloadError, match="no 'data' list"):
        client.fetch_campaigns()
    assert client.stats.calls == 3


def test_connection_refused_names_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = PeachClient(f"http://127.0.0.1:{port}", TOKEN, sleep=lambda s: None)
    with pytest.raises(TransientApiError) as caught:
        client.fetch_campaigns()
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "after 3 attempts" in str(caught.value)


def campaign(cid):
    return {"id": cid, "name": f"C{cid}", "is_serving": True}


def page(items, number, total, total_pages, per_page=2):
    return httpx.Response(
        200,
        json={
            "data": items,
            "pagination": {
                "page": number,
                "per_page": per_page,
                "total": total,
                "total_pages": total_pages,
            },
        },
    )


def test_pages_are_followed_to_the_last():
    script = Script(
        page([campaign(1), campaign(2)], 1, 5, 3),
        page([campaign(3), campaign(4)], 2, 5, 3),
        page([campaign(5)], 3, 5, 3),
    )
    client, _ = make_client(script, per_page=2)
    listing = client.fetch_campaigns()
    assert [c.id for c in listing.campaigns] == [1, 2, 3, 4, 5]
    assert [r.url.params["page"] for r in script.requests] == ["1", "2", "3"]


def test_changing_total_restarts_the_listing_once():
    script = Script(
        page([campaign(1), campaign(2)], 1, 4, 2),
        page([campaign(3)], 2, 3, 2),
        page([campaign(1), campaign(2)], 1, 3, 2),
        page([campaign(3)], 2, 3, 2),
    )
    client, _ = make_client(script, per_page=2)
    listing = client.fetch_campaigns()
    assert [c.id for c in listing.campaigns] == [1, 2, 3]
    assert client.stats.calls == 4


def test_id_seen_twice_fails_clearly_after_one_restart():
    script = Script(
        page([campaign(1), campaign(2)], 1, 4, 2),
        page([campaign(2), campaign(3)], 2, 4, 2),
    )
    client, _ = make_client(script, per_page=2)
    with pytest.raises(ListingChangedError, match="campaign 2 appeared twice"):
        client.fetch_campaigns()
    assert client.stats.calls == 4


def test_bad_campaign_is_rejected_and_drift_is_counted():
    bad = {"id": "x", "name": "Broken"}
    extra = {**campaign(2), "budget": 10}
    script = Script(page([campaign(1), bad, extra], 1, 3, 1))
    client, _ = make_client(script)
    listing = client.fetch_campaigns()
    assert [c.id for c in listing.campaigns] == [1, 2]
    assert listing.rejected[0].field == "id"
    assert listing.unknown_fields == {"budget": 1}


def test_windows_share_edges_and_cover_the_range():
    windows = list(window_bounds(100, 500, 168))
    assert windows == [(100, 268), (268, 436), (436, 500)]
    hours = [h for start, end in windows for h in range(start, end)]
    assert hours == list(range(100, 500))


def test_window_over_168_hours_is_refused_before_any_call():
    script = Script(metrics_body())
    client, _ = make_client(script)
    with pytest.raises(ValueError, match="1 to 168 hours"):
        client.fetch_metrics(0, 169)
    assert script.requests == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("7", 7.0, id="seconds"),
        pytest.param("-5", 0.0, id="negative-is-zero"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param(None, None, id="missing"),
    ],
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header) == expected


def test_a_trickling_server_is_cut_off_at_the_deadline():
    """A body sent one byte at a time must not keep the client past its limit."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle():
        conn, _ = listener.accept()
        conn.recv(65536)
        body = json.dumps({"data": []}).encode() * 50
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for byte in body:
            if stop.wait(0.2):
                break
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
        conn.close()

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    client = PeachClient(
        f"http://127.0.0.1:{port}",
        TOKEN,
        timeout=1.0,
        max_attempts=1,
        sleep=lambda s: 0,
    )
    started = time.monotonic()
    with pytest.raises(TransientApiError, match="within 1 s"):
        client.fetch_metrics(0, 1)
    elapsed = time.monotonic() - started
    stop.set()
    listener.close()
    # The body would take 110 s to arrive; the client gives up at its 1 s deadline.
    assert 0.9 <= elapsed < 2.0
