"""The sandbox server: the admin API contract over real HTTP, on loopback.

It answers the three endpoints of the contract from a `Dataset`, checks the bearer
token, and, when given a `FaultPlan`, breaks responses in the ways real APIs do. Each
request gets one draw from the plan, after the token check; variants of a kind take
turns by the fault's ordinal (the n-th fault of that kind, counted from 0):

- ``429``: even ordinals send ``Retry-After`` in seconds, odd ones as an HTTP date
  (RFC 9110, section 10.2.3), taken from the wall clock and rounded up to the second;
- ``500``: the status cycles through 500, 502, 503 and 504;
- ``malformed``: a 200 whose body cycles through not-JSON, a body cut in half under
  the full ``Content-Length``, and an object with ``results`` instead of ``data``;
- ``badvalue``: 1 to 3 rows get a bad count in a random metric, cycling through
  ``"abc"``, a negative, ``x.5`` and 2**63 + n;
- ``duplicate``: a stale copy of 1 to 3 rows goes right before the row itself.

``duplicate`` and ``badvalue`` change only metrics answers with rows, and ``malformed``
only 200s; elsewhere the draw is spent and nothing is injected. ``faults_injected``
counts what was actually injected.

`Quirks` (quirks.py) change what the answers say rather than how they arrive: they apply
before any fault, and `SandboxServer.quirks` can be replaced while the server runs.
"""

from __future__ import annotations

import email.utils
import hmac
import json
import logging
import math
import random
import re
import socketserver
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from peachdw.metrics import BUILTIN_METRICS, MAX_COUNT
from peachdw.sandbox.data import Dataset
from peachdw.sandbox.faults import Fault, FaultPlan
from peachdw.sandbox.quirks import Quirks

logger = logging.getLogger(__name__)

# Contract, "GET /admin/metrics" and "GET /admin/campaigns".
MAX_WINDOW_HOURS = 168
MAX_PER_PAGE = 100

SERVER_ERRORS = (500, 502, 503, 504)

# Large enough for any unix hour or campaign id, small enough to refuse absurd input.
_INTEGER = re.compile(r"-?\d{1,15}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class _BadRequest(Exception):
    """A query the contract answers with 400."""


@dataclass
class _Reply:
    status: int
    payload: dict
    headers: dict[str, str] = field(default_factory=dict)
    # A body that is not the JSON of `payload`, for the malformed fault.
    body: bytes | None = None
    # Send only this many bytes while Content-Length announces the whole body.
    cut_at: int | None = None

    def encode(self) -> bytes:
        if self.body is not None:
            return self.body
        return json.dumps(
            self.payload, ensure_ascii=False, separators=(",", ":")
        ).encode()


def _error(status: int, message: str, **headers: str) -> _Reply:
    return _Reply(status, {"error": message}, headers)


# --- the endpoints --------------------------------------------------------------------


def _integer(query: dict[str, list[str]], name: str, default: int | None = None) -> int:
    text = query.get(name, [""])[0].strip()
    if not text:
        if default is None:
            raise _BadRequest(f"the query parameter {name} is required")
        return default
    if not _INTEGER.fullmatch(text):
        raise _BadRequest(
            f"the query parameter {name} must be an integer, not {text!r}"
        )
    return int(text)


def _optional_integer(query: dict[str, list[str]], name: str) -> int | None:
    if not query.get(name, [""])[0].strip():
        return None
    return _integer(query, name)


def _date(query: dict[str, list[str]], name: str) -> date:
    text = query.get(name, [""])[0].strip()
    if not text:
        raise _BadRequest(f"the query parameter {name} is required (YYYY-MM-DD)")
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise _BadRequest(
            f"{name} must be a date as YYYY-MM-DD, not {text!r}"
        ) from None


def list_campaigns(
    dataset: Dataset, query: dict[str, list[str]], quirks: Quirks
) -> dict:
    """GET /admin/campaigns: one page of campaigns, by id; no quirk applies."""
    page = _integer(query, "page", default=1)
    per_page = _integer(query, "per_page", default=MAX_PER_PAGE)
    if page < 1:
        raise _BadRequest(f"page starts at 1, not {page}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise _BadRequest(f"per_page must be from 1 to {MAX_PER_PAGE}, not {per_page}")

    campaigns = sorted(list(dataset.campaigns), key=lambda campaign: campaign["id"])
    total = len(campaigns)
    offset = (page - 1) * per_page

    return {
        "data": campaigns[offset : offset + per_page],
        "pagination": {
            "page": page,
            "per_page": per_page,
            "total": total,
            "total_pages": math.ceil(total / per_page),
        },
    }


def list_metrics(dataset: Dataset, query: dict[str, list[str]], quirks: Quirks) -> dict:
    """GET /admin/metrics: hourly rows of [start_hour, end_hour), at most 168 hours."""
    start_hour = _integer(query, "start_hour")
    end_hour = _integer(query, "end_hour")
    campaign_id = _optional_integer(query, "campaign_id")
    if end_hour <= start_hour:
        raise _BadRequest(
            f"end_hour ({end_hour}) must be greater than start_hour ({start_hour})"
        )
    if end_hour - start_hour > MAX_WINDOW_HOURS:
        raise _BadRequest(
            f"the window {start_hour}..{end_hour} spans {end_hour - start_hour} hours; "
            f"at most {MAX_WINDOW_HOURS} are allowed per call"
        )

    return {
        "start_hour": start_hour,
        "end_hour": end_hour,
        "data": quirks.metrics(dataset, start_hour, end_hour, campaign_id),
    }


def list_reports(dataset: Dataset, query: dict[str, list[str]], quirks: Quirks) -> dict:
    """GET /admin/reports: daily totals for the UTC days start_date..end_date."""
    start_date = _date(query, "start_date")
    end_date = _date(query, "end_date")
    campaign_id = _optional_integer(query, "campaign_id")
    if end_date < start_date:
        raise _BadRequest(f"end_date ({end_date}) is before start_date ({start_date})")

    return {"data": quirks.reports(dataset, start_date, end_date, campaign_id)}


_ENDPOINTS = {
    "/admin/campaigns": list_campaigns,
    "/admin/metrics": list_metrics,
    "/admin/reports": list_reports,
}


# --- the faults -----------------------------------------------------------------------


def _shape_fault(reply: _Reply, fault: Fault, path: str, retry_after: int) -> bool:
    """Break `reply` in place as `fault` says; False when the fault does not apply."""
    rng = random.Random(fault.seed)
    rows = reply.payload.get("data") if reply.status == 200 else None

    if fault.kind == "429":
        reply.status, reply.payload = 429, {"error": "rate limit exceeded"}
        reply.headers["Retry-After"] = str(retry_after)
        if fault.ordinal % 2:
            when = math.ceil(time.time()) + retry_after
            reply.headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
        return True

    if fault.kind == "500":
        status = SERVER_ERRORS[fault.ordinal % len(SERVER_ERRORS)]
        reply.status, reply.payload = status, {"error": HTTPStatus(status).phrase}
        return True

    if fault.kind == "malformed":
        if reply.status != 200:
            return False
        variant = fault.ordinal % 3
        if variant == 0:
            # What a proxy in front of the API sends when the upstream falls over.
            reply.body = b"<html><body><h1>Upstream hiccup</h1></body></html>"
        elif variant == 1:
            reply.cut_at = len(reply.encode()) // 2
        else:
            payload = dict(reply.payload)
            payload["results"] = payload.pop("data")
            reply.payload = payload
        return True

    if fault.kind in ("duplicate", "badvalue"):
        if path != "/admin/metrics" or not rows:
            return False
        chosen = sorted(rng.sample(range(len(rows)), min(len(rows), rng.randint(1, 3))))
        if fault.kind == "duplicate":
            reply.payload["data"] = _with_stale_copies(rows, chosen, rng)
        else:
            for index in chosen:
                _spoil_count(rows[index], fault.ordinal % 4, rng)
        return True

    # timeout and trickle change when the answer arrives, not what it says.
    return True


def _with_stale_copies(rows: list[dict], chosen: list[int], rng: random.Random) -> list:
    # The stale copy comes first, so "last one wins" (contract) keeps the true values.
    # It stays funnel-consistent: more sessions and chats, the same registrations.
    result: list[dict] = []
    for index, row in enumerate(rows):
        if index in chosen:
            stale = dict(row)
            extra = rng.randint(1, 9)
            for name in ("sessions", "messages", "companion_chats", "total_user_chats"):
                stale[name] += extra
            result.append(stale)
        result.append(row)
    return result


def _spoil_count(row: dict, variant: int, rng: random.Random) -> None:
    name = rng.choice(BUILTIN_METRICS)
    if variant == 0:
        row[name] = "abc"
    elif variant == 1:
        row[name] = -rng.randint(1, 50)
    elif variant == 2:
        row[name] = row[name] + 0.5
    else:
        row[name] = MAX_COUNT + rng.randint(1, 1000)


# --- HTTP -----------------------------------------------------------------------------


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server for 127.0.0.1 that starts and stops at once."""

    daemon_threads = True
    allow_reuse_address = True
    # stop() must not wait for a trickling response to finish.
    block_on_close = False

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up with getfqdn, which can stall for
        # seconds on a machine without DNS; loopback needs no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _HTTPServer(LoopbackHTTPServer):
    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    # A client that connects and then says nothing must not hold a thread forever.
    timeout = 30

    def do_GET(self) -> None:
        sandbox = self.server.sandbox
        url = urlsplit(self.path)
        sandbox._count(sandbox.requests, url.path)

        if not sandbox._authorized(self.headers.get("Authorization")):
            # RFC 6750, section 3: a 401 names the scheme it wants.
            reply = _error(401, "missing or invalid bearer token", **_BEARER_CHALLENGE)
            self._send(reply)
            return

        fault = sandbox.faults.pick() if sandbox.faults else None
        reply = self._answer(url.path, url.query)
        if fault and _shape_fault(reply, fault, url.path, sandbox.retry_after):
            logger.debug(
                "injecting fault %s #%d on %s", fault.kind, fault.ordinal, url.path
            )
            sandbox._count(sandbox.faults_injected, fault.kind)
        else:
            fault = None

        if fault and fault.kind == "timeout" and sandbox._pause(sandbox.timeout_delay):
            return
        self._send(reply, trickle=bool(fault and fault.kind == "trickle"))

    def version_string(self) -> str:
        return "peachdw-sandbox"

    def _answer(self, path: str, query: str) -> _Reply:
        endpoint = _ENDPOINTS.get(path)
        if endpoint is None:
            return _error(404, f"no endpoint at {path}")
        sandbox = self.server.sandbox
        try:
            # One read of `quirks`, so a switch mid-request cannot mix two sets.
            payload = endpoint(sandbox.dataset, parse_qs(query), sandbox.quirks)
        except _BadRequest as error:
            return _error(400, str(error))
        return _Reply(200, payload)

    def _refuse_method(self) -> None:
        self._send(_error(405, f"{self.command} is not allowed; the API is read-only"))

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse_method

    def _send(self, reply: _Reply, *, trickle: bool = False) -> None:
        sandbox = self.server.sandbox
        body = reply.encode()
        if sandbox._pause(sandbox.latency):
            return

        self.close_connection = True
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            if trickle:
                self._trickle(body)
            else:
                self.wfile.write(body[: reply.cut_at])
        except OSError:
            # The client gave up; a real server would not make a fuss either.
            logger.debug("client %s went away mid-response", self.address_string())

    def _trickle(self, body: bytes) -> None:
        sandbox = self.server.sandbox
        for index in range(len(body)):
            if sandbox._pause(sandbox.trickle_interval):
                return
            self.wfile.write(body[index : index + 1])

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ):
        # http.server would answer a request it cannot parse with HTML; keep to JSON.
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send(_error(code, message or phrase))

    def log_message(self, format: str, *args: object) -> None:
        # The request line holds path and query only; the token travels in a header.
        logger.debug("%s " + format, self.address_string(), *args)


_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="peachdw-sandbox"'}


class SandboxServer:
    """The admin API on `host:port` (port 0: any free port), one thread per request.

    `latency` delays every response, `timeout_delay` is how long the timeout fault
    stalls, `retry_after` is the 429 wait in seconds, and `trickle_interval` the pause
    between the bytes of a trickled body. `quirks` (all off by default) may be replaced
    while serving: ``server.quirks = Quirks()`` switches them off from the next request.
    """

    def __init__(
        self,
        dataset: Dataset,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
        quirks: Quirks | None = None,
        latency: float = 0.0,
        timeout_delay: float = 5.0,
        retry_after: int = 1,
        trickle_interval: float = 1.0,
    ) -> None:
        if not token:
            raise ValueError("the sandbox needs a non-empty bearer token")

        self.dataset = dataset
        self._token = token.encode()
        self.host, self.port = host, port
        self.faults = faults
        self.quirks = quirks
        self.latency = latency
        self.timeout_delay = timeout_delay
        self.retry_after = retry_after
        self.trickle_interval = trickle_interval

        self.requests: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self._counter_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serving = False

    def __repr__(self) -> str:
        where = self.url if self._httpd else "not started"
        return f"<SandboxServer {where}>"

    @property
    def quirks(self) -> Quirks:
        """The data-quality quirks of the answers; None assigns all off."""
        return self._quirks

    @quirks.setter
    def quirks(self, quirks: Quirks | None) -> None:
        if quirks is not None and not isinstance(quirks, Quirks):
            raise TypeError(f"quirks must be a Quirks or None, not {quirks!r}")
        # Quirks are immutable, so swapping the reference is the whole, atomic change.
        self._quirks = Quirks() if quirks is None else quirks

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:54321``; known once started."""
        if self._httpd is None:
            raise RuntimeError("the sandbox server is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SandboxServer:
        """Serve in a daemon thread and return at once."""
        httpd = self._bind()
        # Set before the thread runs, so a stop() right away still shuts the loop down.
        self._serving = True
        self._thread = threading.Thread(
            target=self._serve, args=(httpd,), name="peachdw-sandbox", daemon=True
        )
        self._thread.start()
        logger.info("sandbox serving at %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until stop() is called from another, or an interrupt."""
        httpd = self._bind()
        self._serving = True
        logger.info("sandbox serving at %s", self.url)
        try:
            self._serve(httpd)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and close the socket; requests in flight are abandoned."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return

        self._stopping.set()
        if self._serving:
            httpd.shutdown()
        httpd.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> _HTTPServer:
        if self._httpd is not None:
            raise RuntimeError(f"the sandbox server is already running at {self.url}")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        return self._httpd

    def _serve(self, httpd: _HTTPServer) -> None:
        try:
            # A short poll lets stop() return promptly.
            httpd.serve_forever(poll_interval=0.05)
        finally:
            self._serving = False

    def _authorized(self, header: str | None) -> bool:
        scheme, _, credentials = (header or "").partition(" ")
        # The scheme is case-insensitive (RFC 9110, section 11.1); the token is not.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self._token
        )

    def _pause(self, seconds: float) -> bool:
        """Sleep, but wake when the server stops; True means stop."""
        if seconds <= 0:
            return self._stopping.is_set()
        return self._stopping.wait(seconds)

    def _count(self, counter: Counter[str], key: str) -> None:
        with self._counter_lock:
            counter[key] += 1
