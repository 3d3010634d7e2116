"""Data-quality quirks: answers that are valid under the contract but wrong in content.

Faults (faults.py) break the transport; quirks break the data, so the warehouse's checks
(reconciliation against /admin/reports, complete hours, schema drift, plausibility) have
something to find. All are off by default:

- ``drop_hours``: /admin/metrics leaves out this share of the (campaign, hour) rows with
  activity; /admin/reports still counts them.
- ``skew_report``: for this share of the (campaign, UTC day) pairs with activity,
  /admin/metrics adds a positive amount to one of REPORT_METRICS in one hour of the
  day, so the hourly sums exceed /admin/reports, which keeps the truth. Switched off,
  the same hours come back true, as when the API corrects its hourly data.
- ``extra_field``: every /admin/metrics row carries one more integer field, as when the
  API starts sending a new metric.
- ``implausible``: this share of the hourly rows breaks one rule of PLAUSIBILITY_RULES.
  The API's own data is wrong here, so /admin/reports adds up the same broken rows and
  only the plausibility check notices.

Every choice is a pure function of ``(seed, campaign id, unix hour)`` or ``(seed,
campaign id, UTC day)`` and the dataset, so a window of any shape sees the same hours
dropped, skewed and broken, and the same values. A skewed hour is drawn from the hours
of its day that have activity once final and are neither dropped nor implausible; when
that hour is outside the window or has no row yet at the clock, nothing is skewed.

A test learns exactly what changed with `Quirks.changes`, which runs the very code the
server runs (`Quirks.serve`) for the same window and clock::

    changes = quirks.changes(dataset, start_hour, end_hour)
    changes.dropped      # {(campaign_id, unix_hour), ...}
    changes.skewed       # {(campaign_id, "YYYY-MM-DD", metric): delta, ...}
    changes.implausible  # {(campaign_id, unix_hour, rule), ...}
    changes.extra        # {(campaign_id, unix_hour): value of extra_field, ...}
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from peachdw.metrics import BUILTIN_METRICS, REPORT_METRICS
from peachdw.sandbox.data import Dataset

#: The rules every hourly row should honour; the implausible quirk breaks one per row.
PLAUSIBILITY_RULES: tuple[str, ...] = (
    "total_accounts = email_accounts + google_accounts",
    "total_user_chats = companion_chats + chat_room_user_chats",
    "registrations <= sessions",
)

QUIRK_RATES: tuple[str, ...] = ("drop_hours", "skew_report", "implausible")

# A lowercase identifier, as the contract's own metric names are.
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_KEY_FIELDS = ("campaign_id", "unix_hour")
_EPOCH_DAY = date(1970, 1, 1)

# Most an implausible row is off by, and the range of a skew's share of the value.
_MAX_BREAK = 5
_SKEW_SHARE = (0.05, 0.3)


def check_rate(name: str, rate: float) -> float:
    """`rate` as a float if it is from 0 to 1; else ValueError naming `name`."""
    # The comparison is false for NaN, so NaN is refused too.
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not 0 <= rate <= 1
    ):
        raise ValueError(
            f"{name} must be a number from 0 to 1, such as 0.1, not {rate!r}"
        )
    return float(rate)


def check_field_name(name: str) -> str:
    """`name` if it can name a new metric field; else ValueError saying why."""
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise ValueError(
            f"the extra field {name!r} is not a lowercase identifier "
            "(a-z, then a-z, 0-9 or _, at most 63 characters), such as video_views"
        )
    if name in BUILTIN_METRICS or name in _KEY_FIELDS:
        raise ValueError(
            f"the extra field {name!r} is already a field of every metrics row; "
            "choose a new name, such as video_views"
        )
    return name


def broken_rules(row: Mapping[str, int]) -> list[str]:
    """The PLAUSIBILITY_RULES that one hourly row breaks, in that order."""
    broken = []
    if row["total_accounts"] != row["email_accounts"] + row["google_accounts"]:
        broken.append(PLAUSIBILITY_RULES[0])
    if row["total_user_chats"] != row["companion_chats"] + row["chat_room_user_chats"]:
        broken.append(PLAUSIBILITY_RULES[1])
    if row["registrations"] > row["sessions"]:
        broken.append(PLAUSIBILITY_RULES[2])
    return broken


@dataclass(frozen=True, order=True)
class Skew:
    """One hour whose served value of `metric` is `delta` more than the truth."""

    campaign_id: int
    unix_hour: int
    metric: str
    delta: int

    @property
    def date(self) -> str:
        """The hour's UTC day as /admin/reports writes it (YYYY-MM-DD)."""
        return (_EPOCH_DAY + timedelta(days=self.unix_hour // 24)).isoformat()


@dataclass(frozen=True)
class QuirkChanges:
    """What the quirks changed in one /admin/metrics answer, compared with the dataset.

    `dropped` holds the (campaign id, unix hour) of rows left out; `implausible` the
    served rows that break a rule, with the rule (a dropped row is not listed there);
    `extra` the value of the extra field on each served row. Combine the changes of
    several windows with ``|``.
    """

    dropped: frozenset[tuple[int, int]] = frozenset()
    skews: tuple[Skew, ...] = ()
    implausible: frozenset[tuple[int, int, str]] = frozenset()
    extra: Mapping[tuple[int, int], int] = field(default_factory=dict)

    @property
    def skewed(self) -> dict[tuple[int, str, str], int]:
        """{(campaign id, UTC date, metric): how much the hours exceed the report}."""
        return {(s.campaign_id, s.date, s.metric): s.delta for s in self.skews}

    def __bool__(self) -> bool:
        return bool(self.dropped or self.skews or self.implausible or self.extra)

    def __or__(self, other: QuirkChanges) -> QuirkChanges:
        return QuirkChanges(
            dropped=self.dropped | other.dropped,
            skews=tuple(sorted({*self.skews, *other.skews})),
            implausible=self.implausible | other.implausible,
            extra={**self.extra, **other.extra},
        )


NO_CHANGES = QuirkChanges()


@functools.lru_cache(maxsize=8192)
def _draws(seed: int, kind: str, campaign_id: int, day: int) -> tuple[float, ...]:
    """One uniform number per hour of a (campaign, UTC day) for one kind of choice."""
    rng = random.Random(f"{seed}:quirk:{kind}:{campaign_id}:{day}")
    return tuple(rng.random() for _ in range(24))


@functools.lru_cache(maxsize=8192)
def _campaign_draw(seed: int, kind: str, campaign_id: int) -> float:
    return random.Random(f"{seed}:quirk:{kind}:{campaign_id}").random()


@dataclass(frozen=True)
class Quirks:
    """Which data-quality quirks the sandbox applies; see the module for each one.

    Immutable: a running server switches quirks when a new instance is assigned
    (``server.quirks = Quirks()`` turns them all off), and each request sees one set.
    """

    drop_hours: float = 0.0
    skew_report: float = 0.0
    extra_field: str | None = None
    implausible: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in QUIRK_RATES:
            object.__setattr__(self, name, check_rate(name, getattr(self, name)))
        if self.extra_field is not None:
            check_field_name(self.extra_field)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"the quirk seed must be an integer, not {self.seed!r}")

    @property
    def active(self) -> bool:
        """Whether any quirk is on; with none, answers are the dataset's, untouched."""
        return bool(
            self.drop_hours
            or self.skew_report
            or self.implausible
            or self.extra_field is not None
        )

    def describe(self) -> str:
        """A short account for humans, such as ``drop-hours 0.1, extra-field x``."""
        parts = [
            f"{name.replace('_', '-')} {getattr(self, name):g}"
            for name in QUIRK_RATES
            if getattr(self, name)
        ]
        if self.extra_field is not None:
            parts.append(f"extra-field {self.extra_field}")
        if not parts:
            return "none"
        return ", ".join([*parts, f"quirk seed {self.seed}"])

    # --- what the endpoints serve -----------------------------------------------------

    def metrics(
        self,
        dataset: Dataset,
        start_hour: int,
        end_hour: int,
        campaign_id: int | None = None,
    ) -> list[dict]:
        """The rows /admin/metrics serves for the window, quirks applied."""
        return self.serve(dataset, start_hour, end_hour, campaign_id)[0]

    def changes(
        self,
        dataset: Dataset,
        start_hour: int,
        end_hour: int,
        campaign_id: int | None = None,
    ) -> QuirkChanges:
        """Exactly what the quirks change in /admin/metrics for the window, now."""
        return self.serve(dataset, start_hour, end_hour, campaign_id)[1]

    def serve(
        self,
        dataset: Dataset,
        start_hour: int,
        end_hour: int,
        campaign_id: int | None = None,
    ) -> tuple[list[dict], QuirkChanges]:
        """The served rows of the window and what the quirks changed in them."""
        rows = dataset.metrics(start_hour, end_hour, campaign_id)
        if not self.active:
            return rows, NO_CHANGES

        # The API's own data: implausible rows are wrong at the source.
        served: list[dict] = []
        dropped: set[tuple[int, int]] = set()
        implausible: set[tuple[int, int, str]] = set()
        for row in rows:
            key = (row["campaign_id"], row["unix_hour"])
            if self._is_dropped(*key):
                dropped.add(key)
                continue
            rule = self._break(row)
            if rule is not None:
                implausible.add((*key, rule))
            served.append(row)

        # What only the metrics feed gets wrong.
        skews = self._skew(dataset, served, campaign_id) if self.skew_report else ()
        extra: dict[tuple[int, int], int] = {}
        if self.extra_field is not None:
            for row in served:
                value = self._extra_value(row)
                row[self.extra_field] = value
                extra[row["campaign_id"], row["unix_hour"]] = value

        return served, QuirkChanges(
            frozenset(dropped), skews, frozenset(implausible), extra
        )

    def reports(
        self,
        dataset: Dataset,
        start_date: date,
        end_date: date,
        campaign_id: int | None = None,
    ) -> list[dict]:
        """What /admin/reports serves: the truth, implausible rows as served."""
        if not self.implausible:
            return dataset.reports(start_date, end_date, campaign_id)
        return dataset.reports(
            start_date, end_date, campaign_id, amend=self._amend_values
        )

    # --- the choices ------------------------------------------------------------------

    def _is_dropped(self, campaign_id: int, unix_hour: int) -> bool:
        if not self.drop_hours:
            return False
        draw = _draws(self.seed, "drop", campaign_id, unix_hour // 24)[unix_hour % 24]
        return draw < self.drop_hours

    def _broken_rule(self, campaign_id: int, unix_hour: int) -> tuple[str, int] | None:
        """The rule an hour breaks and by how much (1 to _MAX_BREAK), or None."""
        if not self.implausible:
            return None
        draws = _draws(self.seed, "implausible", campaign_id, unix_hour // 24)
        draw = draws[unix_hour % 24]
        if draw >= self.implausible:
            return None
        # The rules take turns along a campaign's hours.
        rule = PLAUSIBILITY_RULES[(campaign_id + unix_hour) % len(PLAUSIBILITY_RULES)]
        return rule, 1 + int(_MAX_BREAK * draw / self.implausible)

    def _break(self, row: dict) -> str | None:
        """Break the row's chosen rule in place and return it; None leaves it true.

        Each rule is broken through a field no other rule reads, so the row breaks that
        one rule only, and every count stays a non-negative integer (contract).
        """
        chosen = self._broken_rule(row["campaign_id"], row["unix_hour"])
        if chosen is None:
            return None

        rule, amount = chosen
        if rule == PLAUSIBILITY_RULES[0]:
            row["total_accounts"] += amount
        elif rule == PLAUSIBILITY_RULES[1]:
            row["total_user_chats"] += amount
        else:
            row["registrations"] = row["sessions"] + amount
        return rule

    def _amend_values(
        self, campaign_id: int, unix_hour: int, values: tuple[int, ...]
    ) -> tuple[int, ...]:
        if self._broken_rule(campaign_id, unix_hour) is None:
            return values
        row = {
            "campaign_id": campaign_id,
            "unix_hour": unix_hour,
            **dict(zip(BUILTIN_METRICS, values, strict=True)),
        }
        self._break(row)
        return tuple(row[name] for name in BUILTIN_METRICS)

    def _skew(
        self, dataset: Dataset, served: list[dict], campaign_id: int | None
    ) -> tuple[Skew, ...]:
        """Add each chosen (campaign, day)'s amount to its hour, if served, in place."""
        by_key = {(row["campaign_id"], row["unix_hour"]): row for row in served}
        days = sorted({(cid, hour // 24) for cid, hour in by_key})
        active: dict[int, dict[int, tuple[int, ...]]] = {}

        skews = []
        for cid, day in days:
            rng = random.Random(f"{self.seed}:quirk:skew:{cid}:{day}")
            if rng.random() >= self.skew_report:
                continue
            if day not in active:
                active[day] = dataset.active_hours(day, campaign_id)
            hours = [
                hour
                for hour in active[day].get(cid, ())
                if not self._is_dropped(cid, hour)
                and self._broken_rule(cid, hour) is None
            ]
            if not hours:
                continue
            row = by_key.get((cid, hours[int(rng.random() * len(hours))]))
            if row is None:
                continue
            metric, delta = _skew_amount(row, rng)
            row[metric] += delta
            skews.append(Skew(cid, row["unix_hour"], metric, delta))
        return tuple(sorted(skews))

    def _extra_value(self, row: dict) -> int:
        # A plausible new metric, such as video views: a campaign-specific share of the
        # hour's sessions.
        share = 0.2 + 1.3 * _campaign_draw(self.seed, "extra", row["campaign_id"])
        return int(row["sessions"] * share)


def _skew_amount(row: dict, rng: random.Random) -> tuple[str, int]:
    """The report metric to raise in a plausible row and by how much (at least 1).

    Registrations stay at most sessions (a plausibility rule) and converted users at
    most registrations (the funnel); with no room left, sessions take the amount.
    """
    metric = rng.choice(REPORT_METRICS)
    share = rng.uniform(*_SKEW_SHARE)
    room = {
        "registrations": row["sessions"] - row["registrations"],
        "converted_users": row["registrations"] - row["converted_users"],
    }.get(metric)
    if room is not None and room < 1:
        metric, room = "sessions", None

    delta = 1 + int(row[metric] * share)
    return metric, delta if room is None else min(delta, room)
