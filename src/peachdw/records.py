"""Typed records for what the API sends, and the payload rules that turn JSON into them.

The rules are the contract's ("GET /admin/metrics"): a missing or null metric is 0, a count
sent as a numeric string is converted, and a negative, fractional, non-numeric or too large
count rejects that row with a reason while the rest of the window still loads. A field the
warehouse does not know is kept as schema drift, never dropped without a trace.
"""

from __future__ import annotations

import functools
import operator
from collections import Counter, namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from peachdw.errors import PayloadError
from peachdw.hours import span_text
from peachdw.metrics import BUILTIN_METRICS, MAX_COUNT

Row = tuple[int, ...]

_INT_ONLY = {int}
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]


@dataclass(frozen=True)
class RowShape:
    """How the rows of one list of metrics are read, built once per list.

    A stored hour is `(campaign_id, unix_hour, *metrics)`, the column order of
    hourly_data. Rows travel as plain tuples in that order (a window of clean rows is
    never copied into another type); `row_type` is the named form, for building one by
    hand and for reading one.
    """

    metrics: tuple[str, ...]
    row_type: type[tuple]
    #: Every field a metrics row may carry; anything else is schema drift.
    known: frozenset[str]
    getter: Callable[[dict], tuple]
    #: The fast path's row: the key required, each metric defaulting to 0, nothing
    #: unknown.
    clean: type[msgspec.Struct]


@functools.lru_cache(maxsize=16)
def row_shape(metrics: tuple[str, ...]) -> RowShape:
    """The shape of rows of `metrics`; the same object for the same tuple, so a window
    costs a dictionary lookup, not a new struct type."""
    fields = ("campaign_id", "unix_hour", *metrics)
    clean = msgspec.defstruct(
        "_CleanRow",
        [
            ("campaign_id", _Count),
            ("unix_hour", _Count),
            *((m, _Count, 0) for m in metrics),
        ],
        forbid_unknown_fields=True,
    )
    return RowShape(
        metrics,
        namedtuple("HourlyRow", fields),
        frozenset(fields),
        operator.itemgetter(*fields),
        clean,
    )


#: One stored hour of a warehouse with the built-in metrics only.
HourlyRow = row_shape(BUILTIN_METRICS).row_type


@dataclass(frozen=True)
class Rejection:
    """A row the API sent that cannot be stored, and why."""

    reason: str
    campaign_id: int | None = None
    unix_hour: int | None = None
    field: str | None = None


class Campaign(BaseModel):
    """A campaign as GET /admin/campaigns describes it.

    Only `id` and `name` are required; `model_fields_set` tells which fields the API
    actually sent, so a field it left out keeps its stored value.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    id: int
    name: str
    description: str | None = None
    tracking_url: str | None = None
    is_serving: bool = False
    serving_url: str | None = None
    traffic_weight: int | None = None
    deleted_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    slug: str | None = None
    path: str | None = None

    @field_validator("id")
    @classmethod
    def _positive_id(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a positive integer")
        return value

    @field_validator("traffic_weight")
    @classmethod
    def _non_negative_weight(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError("must not be negative")
        return value


#: The contract's campaign fields, in the column order of the `campaigns` table.
CAMPAIGN_FIELDS: tuple[str, ...] = tuple(Campaign.model_fields)


@dataclass
class CampaignListing:
    """Every page of GET /admin/campaigns, validated."""

    campaigns: list[Campaign]
    rejected: list[Rejection] = field(default_factory=list)
    unknown_fields: Counter[str] = field(default_factory=Counter)


@dataclass
class MetricsWindow:
    """One validated GET /admin/metrics response for the half-open window [start, end)."""

    start_hour: int
    end_hour: int
    campaign_id: int | None
    rows: list[Row]
    received: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: int = 0
    out_of_window: int = 0
    unknown_fields: Counter[str] = field(default_factory=Counter)
    #: The metrics of each row, in order after the campaign and the hour.
    metrics: tuple[str, ...] = BUILTIN_METRICS

    @property
    def rejected_keys(self) -> set[tuple[int, int]]:
        return {
            (r.campaign_id, r.unix_hour)
            for r in self.rejected
            if r.campaign_id is not None and r.unix_hour is not None
        }

    @property
    def has_unkeyed_rejections(self) -> bool:
        """Whether a rejected row could not even be tied to a campaign and hour."""
        return any(r.campaign_id is None or r.unix_hour is None for r in self.rejected)


class _BadValue(ValueError):
    pass


def parse_count(value: Any) -> int:
    """Read one count by the contract's rules, or raise `_BadValue` with the reason."""
    if value is None:
        return 0
    if type(value) is int:
        if value < 0:
            raise _BadValue(f"negative count {value}")
        if value > MAX_COUNT:
            raise _BadValue(f"count {value} is larger than 2^63-1")
        return value
    if isinstance(value, bool):
        raise _BadValue(f"boolean {value!r} is not a count")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _BadValue(f"non-numeric count {value!r}")
        if not value.is_integer():
            raise _BadValue(f"fractional count {value!r}")
        return parse_count(int(value))
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return parse_count(int(text))
        try:
            number = float(text)
        except ValueError:
            raise _BadValue(f"non-numeric count {value!r}") from None
        return parse_count(number)
    raise _BadValue(f"non-numeric count {value!r}")


def _parse_key(value: Any, name: str) -> int:
    try:
        number = parse_count(value)
    except _BadValue as exc:
        raise _BadValue(f"{name}: {exc}") from None
    if value is None:
        raise _BadValue(f"{name} is missing")
    return number


def parse_metrics(
    payload: Any,
    start_hour: int,
    end_hour: int,
    campaign_id: int | None = None,
    metrics: tuple[str, ...] = BUILTIN_METRICS,
) -> MetricsWindow:
    """Validate one metrics response into rows of `metrics`, rejections and drift.

    Raises `PayloadError` when the body is not the documented object at all; a bad row
    only rejects that row. A field that is not one of `metrics` is drift.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise PayloadError(
            f"The metrics response for {span_text(start_hour, end_hour)} has no 'data' list.",
            path="/admin/metrics",
        )

    items = payload["data"]
    shape = row_shape(metrics)
    window = MetricsWindow(start_hour, end_hour, campaign_id, rows=[], metrics=metrics)
    window.received = len(items)
    rows = _clean_rows(items, shape)
    if rows is None:
        # Some row needs a closer look: check each one and keep the reasons.
        rows = [
            row
            for row in (_parse_metric_row(item, window, shape) for item in items)
            if row is not None
        ]

    hours = [row[1] for row in rows]
    if rows and (
        min(hours) < start_hour
        or max(hours) >= end_hour
        or (campaign_id is not None and {row[0] for row in rows} != {campaign_id})
    ):
        inside = [
            row
            for row in rows
            if start_hour <= row[1] < end_hour
            and (campaign_id is None or row[0] == campaign_id)
        ]
        window.out_of_window = len(rows) - len(inside)
        rows = inside

    # The contract: the same hour twice in one response, the last one wins.
    by_key = {(row[0], row[1]): row for row in rows}
    window.duplicates = len(rows) - len(by_key)
    window.rows = list(by_key.values()) if window.duplicates else rows
    return window


def _clean_rows(items: list[Any], shape: RowShape) -> list[Row] | None:
    """All rows at once when every one is clean, else None.

    Clean: an object with only known fields, each a plain integer from 0 to 2^63-1 (a
    missing metric is 0). msgspec checks the whole window in compiled code; a window with
    anything else (a string count, a null, a new field) goes row by row instead, where
    each rule of the contract applies and every rejection gets its reason.
    """
    try:
        checked = msgspec.convert(items, list[shape.clean], strict=True)
    except msgspec.ValidationError:
        return None
    return list(map(msgspec.structs.astuple, checked))


def _parse_metric_row(item: Any, window: MetricsWindow, shape: RowShape) -> Row | None:
    if not isinstance(item, dict):
        window.rejected.append(
            Rejection(f"row is {type(item).__name__}, not an object")
        )
        return None

    # Fast path for the common row: every field present, plain non-negative integers,
    # nothing else. A bool is an int subclass, so the type test is exact on purpose.
    try:
        values = shape.getter(item)
    except KeyError:
        pass
    else:
        if (
            {*map(type, values)} == _INT_ONLY
            and min(values) >= 0
            and max(values) <= MAX_COUNT
            and len(item) == len(shape.known)
        ):
            return shape.row_type._make(values)

    try:
        campaign_id = _parse_key(item.get("campaign_id"), "campaign_id")
        unix_hour = _parse_key(item.get("unix_hour"), "unix_hour")
    except _BadValue as exc:
        window.rejected.append(Rejection(str(exc)))
        return None

    counts = [campaign_id, unix_hour]
    for name in shape.metrics:
        try:
            counts.append(parse_count(item.get(name)))
        except _BadValue as exc:
            window.rejected.append(
                Rejection(f"{name}: {exc}", campaign_id, unix_hour, name)
            )
            return None

    for name in item.keys() - shape.known:
        window.unknown_fields[name] += 1
    return shape.row_type._make(counts)


def parse_campaign_page(payload: Any, page: int) -> tuple[list[Any], dict[str, Any]]:
    """Check one page's envelope and return its raw items and pagination block."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise PayloadError(
            f"Campaign page {page} has no 'data' list.", path="/admin/campaigns"
        )
    pagination = payload.get("pagination")
    if not isinstance(pagination, dict):
        raise PayloadError(
            f"Campaign page {page} has no 'pagination' object.", path="/admin/campaigns"
        )
    try:
        info = {
            key: int(pagination[key])
            for key in ("page", "per_page", "total", "total_pages")
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(
            f"Campaign page {page} has an incomplete 'pagination' object.",
            path="/admin/campaigns",
        ) from exc
    return payload["data"], info


def parse_campaign(item: Any, listing: CampaignListing) -> Campaign | None:
    """Validate one campaign; a bad one is rejected with its reason, not fatal."""
    try:
        campaign = Campaign.model_validate(item)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "campaign"
        campaign_id = item.get("id") if isinstance(item, dict) else None
        listing.rejected.append(
            Rejection(
                f"campaign {where}: {error['msg']}",
                campaign_id if isinstance(campaign_id, int) else None,
                field=where,
            )
        )
        return None

    for name in campaign.model_extra or {}:
        listing.unknown_fields[name] += 1
    return campaign
