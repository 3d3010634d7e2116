"""The Peach AI admin API client: fetch, retry, validate. It never writes anything.

Failures follow the contract's table ("Failures the client must survive"): 429 waits as the
server asks, 5xx and network faults back off exponentially, 401/403 and 400 stop at once,
and a body that is not the documented JSON counts as a failed call.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import tenacity

from peachdw.errors import (
    ApiError,
    AuthError,
    ListingChangedError,
    PayloadError,
    RateLimitedError,
    RequestRejectedError,
    RetryWaitTooLongError,
    TransientApiError,
)
from peachdw.hours import span_text
from peachdw.metrics import BUILTIN_METRICS
from peachdw.records import (
    Campaign,
    CampaignListing,
    MetricsWindow,
    parse_campaign,
    parse_campaign_page,
    parse_metrics,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The contract caps a metrics call at 168 hours ("GET /admin/metrics").
MAX_WINDOW_HOURS = 168


@dataclass
class ApiStats:
    """What the client did, for the sync's row in `sync_history`."""

    calls: int = 0
    retries: int = 0
    wait_seconds: float = 0.0


@dataclass
class _Reply:
    status: int
    headers: httpx.Headers
    body: bytes


class _ListingMoved(Exception):
    """The campaign listing changed while it was being paged through."""


def window_bounds(
    start_hour: int, end_hour: int, size: int
) -> Iterator[tuple[int, int]]:
    """Cut [start_hour, end_hour) into half-open windows of at most `size` hours.

    Consecutive windows share an edge, so no hour is fetched twice or skipped.
    """
    if not 1 <= size <= MAX_WINDOW_HOURS:
        raise ValueError(
            f"window size must be 1 to {MAX_WINDOW_HOURS} hours, not {size}"
        )
    for start in range(start_hour, end_hour, size):
        yield start, min(start + size, end_hour)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date.

    RFC 9110 section 10.2.3 allows both forms; a date in the past means no wait.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


class PeachClient:
    """Typed access to the three endpoints of the admin API.

    `token_source` says where the token came from (a flag, a variable, a file) so that
    errors can name it without showing the token.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        token_source: str = "the settings",
        timeout: float = 3.0,
        max_attempts: int = 3,
        max_rate_limit_retries: int = 5,
        max_retry_wait: float = 60.0,
        backoff_base: float = 0.5,
        per_page: int = 100,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.token_source = token_source
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_rate_limit_retries = max_rate_limit_retries
        self.max_retry_wait = max_retry_wait
        self.backoff_base = backoff_base
        self.per_page = per_page
        self.stats = ApiStats()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PeachClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- endpoints ---------------------------------------------------------------------

    def fetch_campaigns(self) -> CampaignListing:
        """Every campaign, following pages to the last.

        A total that changes between pages, or an id seen twice, means the listing moved
        under us: it is read again from page 1 once, then the sync fails clearly.
        """
        for attempt in (1, 2):
            try:
                return self._list_campaigns()
            except _ListingMoved as exc:
                if attempt == 2:
                    raise ListingChangedError(
                        f"The campaign listing changed while it was read, twice: {exc}. "
                        "Run the sync again later.",
                        path="/admin/campaigns",
                    ) from None
                log.warning(
                    "Campaign listing changed while paging (%s); reading it again", exc
                )
        raise AssertionError("unreachable")

    def fetch_metrics(
        self,
        start_hour: int,
        end_hour: int,
        campaign_id: int | None = None,
        metrics: tuple[str, ...] = BUILTIN_METRICS,
    ) -> MetricsWindow:
        """One half-open window [start_hour, end_hour) of hourly metrics, validated
        into rows of `metrics` (the warehouse's: `metrics.of`)."""
        if not 0 < end_hour - start_hour <= MAX_WINDOW_HOURS:
            raise ValueError(
                f"a metrics window is 1 to {MAX_WINDOW_HOURS} hours, "
                f"not {start_hour}-{end_hour}"
            )
        params: dict[str, Any] = {"start_hour": start_hour, "end_hour": end_hour}
        if campaign_id is not None:
            params["campaign_id"] = campaign_id

        what = f"metrics for {span_text(start_hour, end_hour)}"
        window = self.get_json(
            "/admin/metrics",
            params,
            what=what,
            parse=lambda body: parse_metrics(
                body, start_hour, end_hour, campaign_id, metrics
            ),
        )
        log.debug(
            "Fetched %s: %d rows, %d rejected, %d duplicates",
            what,
            len(window.rows),
            len(window.rejected),
            window.duplicates,
        )
        return window

    def fetch_reports(
        self, start_date: str, end_date: str, campaign_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The API's own daily totals for [start_date, end_date], both inclusive."""
        params: dict[str, Any] = {"start_date": start_date, "end_date": end_date}
        if campaign_id is not None:
            params["campaign_id"] = campaign_id
        what = f"reports for {start_date} to {end_date}"

        def parse(body: Any) -> list[dict[str, Any]]:
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise PayloadError(
                    f"The {what} have no 'data' list.", path="/admin/reports"
                )
            return body["data"]

        return self.get_json("/admin/reports", params, what=what, parse=parse)

    # -- paging ------------------------------------------------------------------------

    def _list_campaigns(self) -> CampaignListing:
        listing = CampaignListing(campaigns=[])
        seen: set[int] = set()
        total: int | None = None
        page = 1
        while True:
            items, info = self.get_json(
                "/admin/campaigns",
                {"page": page, "per_page": self.per_page},
                what=f"campaign page {page}",
                parse=lambda body, page=page: parse_campaign_page(body, page),
            )
            if total is None:
                total = info["total"]
            elif info["total"] != total:
                raise _ListingMoved(f"total went from {total} to {info['total']}")

            for item in items:
                campaign = parse_campaign(item, listing)
                if campaign is None:
                    continue
                if campaign.id in seen:
                    raise _ListingMoved(f"campaign {campaign.id} appeared twice")
                seen.add(campaign.id)
                listing.campaigns.append(campaign)

            if page >= info["total_pages"] or not items:
                break
            page += 1

        if len(listing.campaigns) + len(listing.rejected) < total:
            raise _ListingMoved(
                f"{total} campaigns announced, {len(listing.campaigns)} received"
            )
        log.debug("Listed %d campaigns over %d pages", len(listing.campaigns), page)
        return listing

    # -- transport ---------------------------------------------------------------------

    def get_json(
        self,
        path: str,
        params: dict[str, Any],
        *,
        what: str,
        parse: Callable[[Any], T] = lambda body: body,
    ) -> T:
        """GET `path` with the retry policy and return `parse` of the JSON body.

        `parse` runs inside each attempt, so a body that is not the documented shape
        (`PayloadError`) is retried like any other failed call, as the contract asks.
        """
        budget = {"transient": 0, "rate_limited": 0}

        def should_stop(state: tenacity.RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, RateLimitedError):
                budget["rate_limited"] += 1
                return budget["rate_limited"] > self.max_rate_limit_retries
            budget["transient"] += 1
            return budget["transient"] >= self.max_attempts

        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.backoff_base, max=30, jitter=self.backoff_base
        )

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, RateLimitedError):
                return error.retry_after
            return backoff(state)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            seconds = state.next_action.sleep if state.next_action else 0.0
            self.stats.retries += 1
            self.stats.wait_seconds += seconds
            log.warning(
                "%s failed (%s); retrying in %.1f s",
                what[0].upper() + what[1:],
                state.outcome.exception() if state.outcome else "?",
                seconds,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientApiError),
            stop=should_stop,
            wait=wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, path, params, what, parse)
        except TransientApiError as exc:
            attempts = budget["transient"] + budget["rate_limited"]
            raise type(exc)(
                f"{exc} Gave up on {what} after {attempts} attempts.",
                path=path,
                **(
                    {"retry_after": exc.retry_after}
                    if isinstance(exc, RateLimitedError)
                    else {}
                ),
            ) from exc

    def _attempt(
        self, path: str, params: dict[str, Any], what: str, parse: Callable[[Any], T]
    ) -> T:
        self.stats.calls += 1
        reply = self._request_with_deadline(path, params, what)
        return parse(self._decode(reply, path, what))

    def _request_with_deadline(
        self, path: str, params: dict[str, Any], what: str
    ) -> _Reply:
        """One whole attempt, body included, cut off at `timeout` seconds.

        httpx's timeouts apply to each socket operation, so a server that trickles one
        byte a second would never trip them; the attempt runs in a worker thread that the
        caller stops waiting for at the deadline, and that stops reading at its next chunk.
        """
        outcome: dict[str, Any] = {}
        done = threading.Event()
        cancelled = threading.Event()

        def run() -> None:
            try:
                outcome["reply"] = self._request(path, params, cancelled)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name="peachdw-request", daemon=True).start()
        if not done.wait(self.timeout):
            cancelled.set()
            raise TransientApiError(
                f"The API did not answer {what} within {self.timeout:g} s.", path=path
            )

        error = outcome.get("error")
        if isinstance(error, httpx.TimeoutException):
            raise TransientApiError(
                f"The API did not answer {what} within {self.timeout:g} s.", path=path
            ) from error
        if isinstance(error, httpx.TransportError):
            raise TransientApiError(
                f"Cannot reach the API at {self.base_url} for {what}: "
                f"{_describe(error)}. If that is not the API's address, fix "
                "api.base_url (or --api-url).",
                path=path,
            ) from error
        if error is not None:
            raise error
        return outcome["reply"]

    def _request(
        self, path: str, params: dict[str, Any], cancelled: threading.Event
    ) -> _Reply:
        log.debug("GET %s %s", path, params)
        with self._http.stream("GET", path, params=params) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                if cancelled.is_set():
                    break
                body += chunk
            return _Reply(response.status_code, response.headers, bytes(body))

    def _decode(self, reply: _Reply, path: str, what: str) -> Any:
        status = reply.status
        if status == 429:
            retry_after = parse_retry_after(reply.headers.get("Retry-After"))
            if retry_after is None:
                retry_after = self.backoff_base
            if retry_after > self.max_retry_wait:
                raise RetryWaitTooLongError(
                    f"The API asked to wait {retry_after:.0f} seconds before {what}, "
                    f"more than api.max_retry_wait ({self.max_retry_wait:g} s). "
                    "Run the sync again later, or raise api.max_retry_wait.",
                    path=path,
                    status=429,
                )
            raise RateLimitedError(
                f"The API rate-limited {what} (HTTP 429).",
                retry_after=retry_after,
                path=path,
            )
        if status in (401, 403):
            raise AuthError(
                f"The API refused the token from {self.token_source} (HTTP {status}). "
                "Check that the token is current and allowed to read the admin API.",
                path=path,
                status=status,
            )
        if status == 400:
            raise RequestRejectedError(
                f"The API refused the request for {what} (HTTP 400: "
                f"{_error_text(reply.body)}).",
                path=path,
                status=status,
            )
        if status >= 500:
            raise TransientApiError(
                f"The API failed on {what} (HTTP {status}).", path=path, status=status
            )
        if status != 200:
            raise ApiError(
                f"The API answered {what} with HTTP {status}; check api.base_url.",
                path=path,
                status=status,
            )

        try:
            return json.loads(reply.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(
                f"The API sent a body that is not valid JSON for {what} "
                f"({len(reply.body)} bytes).",
                path=path,
                status=status,
            ) from exc


def _describe(error: httpx.TransportError) -> str:
    cause = error.__cause__ or error.__context__
    text = str(error) or type(error).__name__
    if isinstance(cause, OSError) and cause.strerror:
        text = cause.strerror
    return text.rstrip(".")


def _error_text(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace") or "no details"
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])[:200]
    return "no details"


__all__ = ["ApiStats", "Campaign", "PeachClient", "parse_retry_after", "window_bounds"]
