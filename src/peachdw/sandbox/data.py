"""The sandbox's deterministic dataset: campaigns with messy names, hourly metrics.

Everything follows from the seed. A campaign is drawn from `(seed, id)` alone and an
hour of metrics from `(seed, campaign id, unix hour)` alone, so two datasets with the
same seed agree on every value and a smaller dataset is a prefix of a larger one. What
tests change on the fly (rename, delete or remove a campaign in `Dataset.campaigns`) is
read back on every call: `created_at`, `deleted_at` and `is_serving` decide which hours
carry traffic.

Hours are simulated one (campaign, UTC day) at a time and kept in a bounded LRU cache,
so a week of all campaigns is quick to serve and a year pulled window by window never
sits in memory.
"""

from __future__ import annotations

import functools
import math
import operator
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from peachdw.metrics import BUILTIN_METRICS, REPORT_METRICS

FIRST_CAMPAIGN_ID = 1001

# The name that a spreadsheet would run as a formula; exports must neutralise it.
FORMULA_NAME = '=HYPERLINK("x")_test'

# Hours whose end lies less than this before the clock still receive late events
# (contract: "Values for the last few hours can still change on later calls").
MATURITY_SECONDS = 3 * 3600
MATURITY_STEP_SECONDS = 15 * 60

# (campaign, day) simulations kept; 2048 covers every campaign over a 168-hour window
# twice over and stays around 15 MB.
DAY_CACHE_SIZE = 2048

_EPOCH_DAY = date(1970, 1, 1)
_REPORT_INDEX = tuple(BUILTIN_METRICS.index(name) for name in REPORT_METRICS)


#: Rewrites one hour's values, in BUILTIN_METRICS order, before `Dataset.reports` adds them up:
#: `amend(campaign_id, unix_hour, values) -> values`.
Amend = Callable[[int, int, tuple[int, ...]], tuple[int, ...]]


@dataclass(frozen=True)
class _Network:
    slug: str
    spellings: tuple[str, ...]
    placements: tuple[str, ...]
    weight: int


# Media buyers write each network several ways; the first spelling is the usual one.
_NETWORKS = (
    _Network(
        "exo",
        ("EXO", "EXO", "exoclick", "Exo-Click", "ExoClick", "exo"),
        ("native", "banner", "popunder", "pre-roll", "interstitial"),
        18,
    ),
    _Network(
        "tj",
        ("TJ", "TJ", "TrafficJunky", "trafficjunky", "Traffic Junky"),
        ("native", "banner", "pre-roll", "popunder"),
        14,
    ),
    _Network(
        "ts",
        ("TS", "TrafficStars", "TStars", "trafficstars"),
        ("native", "popunder", "in-page push", "banner"),
        10,
    ),
    _Network(
        "ja",
        ("JA", "JuicyAds", "Juicy", "juicyads"),
        ("banner", "native", "popunder"),
        7,
    ),
    _Network(
        "prop",
        ("PROP", "PropellerAds", "Propeller", "propeller"),
        ("popunder", "in-page push", "interstitial", "native"),
        9,
    ),
    _Network(
        "adst",
        ("ADST", "Adsterra", "adsterra", "AdSterra"),
        ("popunder", "in-page push", "banner", "native"),
        8,
    ),
    _Network(
        "gads",
        ("GAds", "GAds", "Google", "GoogleAds", "ggl", "GADS"),
        ("search", "banner", "pre-roll"),
        12,
    ),
    _Network(
        "meta",
        ("FB", "Meta", "Facebook", "fb", "META"),
        ("feed", "stories"),
        11,
    ),
    _Network(
        "tt",
        ("TT", "TikTok", "Tiktok", "tiktok"),
        ("feed", "pre-roll"),
        6,
    ),
    _Network(
        "rdt",
        ("RDT", "Reddit", "reddit", "RD"),
        ("feed", "banner"),
        5,
    ),
)

_PLACEMENTS = {
    "native": ("Native", "Native", "native", "NATIVE"),
    "banner": ("Banner", "banner", "BNR", "Display"),
    "popunder": ("Popunder", "Pop", "pop-under", "POPUNDER"),
    "interstitial": ("Interstitial", "Inter", "interstitial"),
    "in-page push": ("InPagePush", "In-Page Push", "IPP", "inpage"),
    "pre-roll": ("PreRoll", "Pre-roll", "preroll", "VAST"),
    "feed": ("Feed", "feed", "NewsFeed", "FEED"),
    "stories": ("Stories", "Story", "stories", "Reels"),
    "search": ("Search", "search", "SRCH", "SEM"),
}

# (slug, spellings, UTC offset in hours for the daily cycle, weight)
_GEOS = (
    ("us", ("US", "US", "us", "USA"), -5, 30),
    ("uk", ("UK", "GB", "uk", "UK"), 0, 10),
    ("de", ("DE", "DE", "Germany", "München"), 1, 10),
    ("fr", ("FR", "fr", "France"), 1, 7),
    ("jp", ("JP", "JP", "日本", "jp"), 9, 7),
    ("br", ("BR", "Brasil", "br"), -3, 6),
    ("t1", ("Tier1", "T1", "tier-1", "TIER1"), -2, 15),
    ("latam", ("LATAM", "Latam", "LatAm"), -4, 8),
)

_DEVICES = (
    ("mobile", ("Mobile", "Mobile", "mobile", "MOB", "mob")),
    ("desktop", ("Desktop", "desktop", "DT", "Desk")),
    ("ios", ("iOS", "iOS", "ios", "iPhone")),
    ("android", ("Android", "android", "AND")),
    ("all", ("All", "all", "ALL", "AllDevices")),
)

_TARGETING = (
    ("rt", ("Retarget", "RT", "RT", "retargeting", "ReTargeting")),
    ("lal", ("Lookalike", "LAL", "lal", "LAL-1%")),
    ("broad", ("Broad", "broad", "BROAD")),
    ("int", ("Interest", "INT", "interests", "Int-Anime")),
    ("kw", ("Keyword", "KW", "kw", "Keywords")),
)

_DOMAINS = (
    "peach.ai",
    "peach.ai",
    "peach.ai",
    "Peach.ai",
    "peachai.com",
    "chat.peach.ai",
)
_SPECIALS = ("Test", "Promo", "BlackFriday", "BF", "v2", "V2", "🍑", "Café", "Promo🔥")
_SEPARATORS = ("_",) * 14 + ("-", "-", " ", " ", "|", " | ")
_LANDINGS = ("companion", "companion", "chat", "roleplay", "anime", "premium", "signup")
_DESCRIPTIONS = (
    "Relaunch after creative refresh",
    "Owner: Dana",
    "Q3 push — do not pause without asking",
    "Copy of the winning set",
    "Landing-page A/B test",
)

# Share of a campaign's peak hourly traffic by local hour of day: nights are quiet.
_DAILY = (
    0.30, 0.20, 0.13, 0.09, 0.07, 0.07, 0.10, 0.16, 0.24, 0.32, 0.40, 0.46,
    0.52, 0.55, 0.57, 0.60, 0.64, 0.70, 0.78, 0.88, 0.97, 1.00, 0.86, 0.55,
)  # fmt: skip

# By local weekday, Monday first: the product is busier at the weekend.
_WEEKLY = (0.94, 0.92, 0.93, 0.97, 1.04, 1.16, 1.12)


@dataclass(frozen=True)
class _Profile:
    """How one campaign behaves: its size and its funnel rates."""

    peak: float
    utc_offset: int
    trend_period: float
    trend_phase: float
    registration_rate: float
    google_share: float
    terms_rate: float
    conversion_rate: float
    payment_rate: float
    card_share: float
    messages_per_session: float
    room_share: float
    media_rate: float


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=4096)
def _timestamp(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 string; naive strings are read as UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


_NETWORK_WEIGHTS = tuple(network.weight for network in _NETWORKS)
_GEO_WEIGHTS = tuple(geo[3] for geo in _GEOS)


class Dataset:
    """Campaigns and hourly metrics for the sandbox, all drawn from one seed.

    `now=None` follows the wall clock; a datetime freezes the sandbox clock there (move
    it with `set_now`). Campaign timestamps are laid out over the year before the day
    the dataset was built, so they do not drift while a live sandbox runs.
    `min_sessions` raises every active campaign-hour to at least that many sessions: 1
    gives a dense year, with a row for every hour of every serving campaign; the
    default, 0, leaves small campaigns' quiet hours out, as the API does.
    """

    def __init__(
        self,
        seed: int = 42,
        campaigns: int = 230,
        now: datetime | None = None,
        min_sessions: int = 0,
    ) -> None:
        if campaigns < 0:
            raise ValueError(f"campaigns must be 0 or more, not {campaigns}")
        if min_sessions < 0:
            raise ValueError(f"min_sessions must be 0 or more, not {min_sessions}")

        self.seed = seed
        self.min_sessions = min_sessions
        self._frozen: datetime | None = None
        self.set_now(now)
        today = self.now().replace(hour=0, minute=0, second=0, microsecond=0)

        self._profiles: dict[int, _Profile] = {}
        self.campaigns: list[dict] = []
        slugs: set[str] = set()
        for index in range(campaigns):
            campaign, profile = self._make_campaign(FIRST_CAMPAIGN_ID + index, today)
            campaign["slug"] = self._unique_slug(campaign["slug"], slugs)
            self._profiles[campaign["id"]] = profile
            self.campaigns.append(campaign)
        self._add_oddities()

        # Bound to the instance so each dataset has its own cache and seed.
        self._day = functools.lru_cache(maxsize=DAY_CACHE_SIZE)(self._simulate_day)

    # --- the clock --------------------------------------------------------------------

    def now(self) -> datetime:
        """The sandbox clock, timezone-aware UTC."""
        if self._frozen is not None:
            return self._frozen
        return datetime.now(UTC)

    def set_now(self, now: datetime | None) -> None:
        """Freeze the clock at `now`, or follow the wall clock again with None."""
        if now is not None and now.tzinfo is None:
            raise ValueError("the sandbox clock needs a timezone-aware datetime")
        self._frozen = None if now is None else now.astimezone(UTC)

    # --- campaigns --------------------------------------------------------------------

    def _make_campaign(
        self, campaign_id: int, today: datetime
    ) -> tuple[dict, _Profile]:
        rng = random.Random(f"{self.seed}:campaign:{campaign_id}")

        network = rng.choices(_NETWORKS, weights=_NETWORK_WEIGHTS)[0]
        placement = rng.choice(network.placements)
        geo_slug, geo_spellings, utc_offset, _ = rng.choices(
            _GEOS, weights=_GEO_WEIGHTS
        )[0]
        device_slug, device_spellings = rng.choice(_DEVICES)
        targeting_slug, targeting_spellings = rng.choice(_TARGETING)
        name = self._messy_name(
            rng,
            network=rng.choice(network.spellings),
            domain=rng.choice(_DOMAINS),
            placement=rng.choice(_PLACEMENTS[placement]),
            geo=rng.choice(geo_spellings),
            device=rng.choice(device_spellings),
            targeting=rng.choice(targeting_spellings),
        )

        # created_at spreads over the past year; a deleted campaign dies some time after
        # it was born, and updated_at never precedes created_at.
        created = today - timedelta(seconds=rng.uniform(3600, 365 * 86400))
        created = created.replace(microsecond=0)
        lifetime = today - created
        deleted = paused = False
        roll = rng.random()
        if roll < 0.08:
            deleted = True
        elif roll < 0.19:
            paused = True
        updated = created + lifetime * rng.uniform(0.05, 1.0)
        deleted_at = None
        if deleted:
            deleted_at = created + lifetime * rng.uniform(0.2, 0.95)
            updated = deleted_at

        landing = rng.choice(_LANDINGS)
        path = f"/lp/{landing}"
        campaign = {
            "id": campaign_id,
            "name": name,
            "description": rng.choice(_DESCRIPTIONS) if rng.random() < 0.12 else None,
            "tracking_url": f"https://t.example/c/{campaign_id}?src={network.slug}",
            "is_serving": not (deleted or paused),
            "serving_url": f"https://peach.ai{path}",
            "traffic_weight": rng.randint(1, 100),
            "deleted_at": _iso(deleted_at) if deleted_at else None,
            "created_at": _iso(created),
            "updated_at": _iso(updated.replace(microsecond=0)),
            "slug": _slugify(
                f"{network.slug} {placement} {geo_slug} {device_slug} {targeting_slug}"
            ),
            "path": path,
        }
        return campaign, self._make_profile(campaign_id, utc_offset)

    @staticmethod
    def _messy_name(rng: random.Random, **part: str) -> str:
        """Join NETWORK_domain_Placement_GEO-Device_Targeting[_Special] and mess it up.

        Buyers change separators, drop a part, shout or whisper, and now and then leave
        a trailing space or a doubled separator behind.
        """
        geo_device = part["geo"] + rng.choice("--_ ") + part["device"]
        if rng.random() < 0.06:
            geo_device = part["geo"]
        parts = [
            part["network"],
            part["domain"],
            part["placement"],
            geo_device,
            part["targeting"],
        ]
        if rng.random() < 0.1:
            del parts[rng.choice((1, 2, 4))]
        if rng.random() < 0.1:
            parts.append(rng.choice(_SPECIALS))

        separator = rng.choice(_SEPARATORS)
        if rng.random() < 0.02:
            separator *= 2
        name = separator.join(parts)

        roll = rng.random()
        if roll < 0.06:
            name = name.lower()
        elif roll < 0.1:
            name = name.upper()
        if rng.random() < 0.02:
            name += " "
        return name

    def _make_profile(self, campaign_id: int, utc_offset: int = 0) -> _Profile:
        rng = random.Random(f"{self.seed}:profile:{campaign_id}")

        # A log-normal peak of sessions per hour: most campaigns are small, few big.
        return _Profile(
            peak=min(2500.0, max(0.3, math.exp(rng.gauss(2.4, 1.4)))),
            utc_offset=utc_offset,
            trend_period=rng.uniform(40, 200),
            trend_phase=rng.uniform(0, 2 * math.pi),
            registration_rate=rng.uniform(0.03, 0.14),
            google_share=rng.uniform(0.35, 0.7),
            terms_rate=rng.uniform(0.9, 1.0),
            conversion_rate=rng.uniform(0.02, 0.12),
            payment_rate=rng.uniform(0.05, 0.2),
            card_share=rng.uniform(0.6, 0.95),
            messages_per_session=rng.uniform(0.8, 5.0),
            room_share=rng.uniform(0.15, 0.45),
            media_rate=rng.uniform(0.02, 0.12),
        )

    @staticmethod
    def _unique_slug(slug: str, taken: set[str]) -> str:
        candidate, number = slug, 2
        while candidate in taken:
            candidate, number = f"{slug}-{number}", number + 1
        taken.add(candidate)
        return candidate

    def _add_oddities(self) -> None:
        """Plant the names that break naive exports: a formula and a duplicated name."""
        if len(self.campaigns) > 17:
            self.campaigns[17]["name"] = FORMULA_NAME
        if len(self.campaigns) > 41:
            self.campaigns[41]["name"] = self.campaigns[40]["name"]

    def _profile(self, campaign_id: int) -> _Profile:
        # Campaigns that tests append get a profile from the seed and their id alone.
        profile = self._profiles.get(campaign_id)
        if profile is None:
            profile = self._profiles[campaign_id] = self._make_profile(campaign_id)
        return profile

    def _active_spans(self, campaign_id: int | None) -> list[tuple[int, int, int]]:
        """(id, first hour, stop hour) of every campaign that has traffic, by id.

        Traffic starts with the first whole hour after created_at and ends with the last
        hour that ended before deleted_at; a paused campaign has none.
        """
        spans: dict[int, tuple[int, int, int]] = {}
        for campaign in list(self.campaigns):
            cid = campaign["id"]
            if cid in spans or (campaign_id is not None and cid != campaign_id):
                continue
            first = math.ceil(_timestamp(campaign["created_at"]) / 3600)
            if campaign.get("deleted_at"):
                stop = math.floor(_timestamp(campaign["deleted_at"]) / 3600)
            elif campaign.get("is_serving"):
                stop = math.inf
            else:
                continue
            if first < stop:
                spans[cid] = (cid, first, stop)
        return [spans[cid] for cid in sorted(spans)]

    # --- hourly metrics ---------------------------------------------------------------

    def _simulate_day(
        self, campaign_id: int, day: int
    ) -> tuple[tuple[int, ...] | None, ...]:
        """Final metrics, in BUILTIN_METRICS order, of the 24 hours of one UTC day.

        An hour without activity is None. This is the sandbox's hot loop, so the profile
        is read into locals once.
        """
        p = self._profile(campaign_id)
        uniform = random.Random(f"{self.seed}:hours:{campaign_id}:{day}").random
        trend = 1.0 + 0.25 * math.sin(
            2 * math.pi * day / p.trend_period + p.trend_phase
        )
        registration_rate, google_share = p.registration_rate, p.google_share
        terms_loss, conversion_rate = 1 - p.terms_rate, p.conversion_rate
        payment_rate, card_share = p.payment_rate, p.card_share
        chat_rate, room_share, media_rate = (
            p.messages_per_session,
            p.room_share,
            p.media_rate,
        )

        min_sessions = self.min_sessions
        hours: list[tuple[int, ...] | None] = []
        for hour in range(day * 24, day * 24 + 24):
            local_hour = hour + p.utc_offset
            # 1970-01-01 was a Thursday, so Monday-first weekdays are (days + 3) % 7.
            weekday = (local_hour // 24 + 3) % 7
            expected = p.peak * _DAILY[local_hour % 24] * _WEEKLY[weekday] * trend
            sessions = int(expected * (0.75 + 0.5 * uniform()) + uniform())
            if sessions < min_sessions:
                sessions = min_sessions
            if not sessions:
                hours.append(None)
                continue

            # Adding a uniform draw before truncating rounds at random, which keeps
            # small campaigns' funnels lumpy, as real ones are.
            registrations = int(
                sessions * registration_rate * (0.6 + 0.8 * uniform()) + uniform()
            )
            if registrations > sessions:
                registrations = sessions
            google = int(registrations * google_share + uniform())
            terms = registrations - int(registrations * terms_loss + uniform())
            converted = int(registrations * conversion_rate + uniform())
            payment = max(converted, int(registrations * payment_rate + uniform()))
            chats = int(sessions * chat_rate * (0.7 + 0.6 * uniform()) + uniform())
            room = int(chats * room_share + uniform())
            hours.append(
                _funnel(
                    sessions,
                    registrations - google,
                    google,
                    terms,
                    converted,
                    payment,
                    int(payment * card_share + uniform()),
                    chats - room,
                    room,
                    int(chats * media_rate + uniform()),
                )
            )
        return tuple(hours)

    def _hours(
        self, start_hour: int, end_hour: int, campaign_id: int | None
    ) -> Iterator[tuple[int, int, tuple[int, ...]]]:
        """(unix hour, campaign id, values) with activity, sorted, as of the clock."""
        now = self.now().timestamp()
        end_hour = min(end_hour, math.ceil(now / 3600))
        if end_hour <= start_hour:
            return
        spans = self._active_spans(campaign_id)

        for day in range(start_hour // 24, (end_hour - 1) // 24 + 1):
            low, high = max(start_hour, day * 24), min(end_hour, day * 24 + 24)
            live = [
                (cid, self._day(cid, day), first, stop)
                for cid, first, stop in spans
                if first < high and stop > low
            ]
            for hour in range(low, high):
                maturity = _maturity(hour, now)
                for cid, day_hours, first, stop in live:
                    values = day_hours[hour - day * 24]
                    if values is None or not first <= hour < stop:
                        continue
                    if maturity < 1.0:
                        values = _mature(values, maturity)
                        if values is None:
                            continue
                    yield hour, cid, values

    def active_hours(
        self, day: int, campaign_id: int | None = None
    ) -> dict[int, tuple[int, ...]]:
        """The unix hours with activity of one UTC day (days since 1970-01-01).

        By campaign id. An hour counts when its final values carry traffic, whatever the
        clock says, so an hour of today still to come counts too; campaigns without any
        such hour are left out.
        """
        low, high = day * 24, day * 24 + 24
        active: dict[int, tuple[int, ...]] = {}
        for cid, first, stop in self._active_spans(campaign_id):
            if first >= high or stop <= low:
                continue
            day_hours = self._day(cid, day)
            hours = tuple(
                hour
                for hour in range(max(low, first), min(high, stop))
                if day_hours[hour - low] is not None
            )
            if hours:
                active[cid] = hours
        return active

    def metrics(
        self, start_hour: int, end_hour: int, campaign_id: int | None = None
    ) -> list[dict]:
        """Contract-shaped rows of [start_hour, end_hour), by (unix_hour, campaign_id).

        Hours that start at or after the clock have no data; the current hour comes with
        what it has so far. Hours without activity are left out, as the API does.
        """
        return [
            {
                "campaign_id": cid,
                "unix_hour": hour,
                **dict(zip(BUILTIN_METRICS, values, strict=True)),
            }
            for hour, cid, values in self._hours(start_hour, end_hour, campaign_id)
        ]

    def reports(
        self,
        start_date: date,
        end_date: date,
        campaign_id: int | None = None,
        *,
        amend: Amend | None = None,
    ) -> list[dict]:
        """Daily REPORT_METRICS totals per campaign of the UTC days start..end.

        Both days count. The totals are the sums of what `metrics` returns at the same
        clock, sorted by (date, campaign_id); days without activity are left out.
        `amend` rewrites each hour before it is added, for data the API itself holds
        otherwise (the implausible quirk).
        """
        start_hour = (start_date - _EPOCH_DAY).days * 24
        end_hour = ((end_date - _EPOCH_DAY).days + 1) * 24

        # Nothing happened before the oldest campaign, so skip to it instead of
        # simulating empty centuries.
        spans = self._active_spans(campaign_id)
        if not spans:
            return []
        start_hour = max(start_hour, min(first for _, first, _ in spans) // 24 * 24)

        totals: dict[tuple[int, int], list[int]] = {}
        for hour, cid, values in self._hours(start_hour, end_hour, campaign_id):
            if amend is not None:
                values = amend(cid, hour, values)
            sums = totals.setdefault((hour // 24, cid), [0] * len(_REPORT_INDEX))
            for position, index in enumerate(_REPORT_INDEX):
                sums[position] += values[index]

        return [
            {
                "campaign_id": cid,
                "date": (_EPOCH_DAY + timedelta(days=day)).isoformat(),
                **dict(zip(REPORT_METRICS, sums, strict=True)),
            }
            for (day, cid), sums in sorted(totals.items())
        ]


# The order in which the simulation produces an hour's counts, and how to turn that into
# BUILTIN_METRICS order; a metric missing here fails loudly at import.
_FUNNEL_ORDER = (
    "sessions",
    "email_accounts",
    "google_accounts",
    "terms_acceptances",
    "converted_users",
    "payment_methods",
    "credit_cards",
    "companion_chats",
    "chat_room_user_chats",
    "media",
    "registrations",
    "total_accounts",
    "messages",
    "total_user_chats",
)
_TO_METRICS = operator.itemgetter(
    *(_FUNNEL_ORDER.index(name) for name in BUILTIN_METRICS)
)
_INDEPENDENT = operator.itemgetter(
    *(BUILTIN_METRICS.index(name) for name in _FUNNEL_ORDER[:10])
)


def _funnel(
    sessions: int,
    email: int,
    google: int,
    terms: int,
    converted: int,
    payment: int,
    cards: int,
    companion: int,
    room: int,
    media: int,
) -> tuple[int, ...]:
    """Derive the totals from the independent counts and return them in BUILTIN_METRICS order.

    The counts must already be consistent: registrations (email + google) <= sessions,
    terms and conversions <= registrations, cards <= payment methods, media <= messages.
    """
    accounts = email + google
    chats = companion + room
    return _TO_METRICS(
        (
            sessions,
            email,
            google,
            terms,
            converted,
            payment,
            cards,
            companion,
            room,
            media,
            accounts,
            accounts,
            chats,
            chats,
        )
    )


def _maturity(hour: int, now: float) -> float:
    """Share of an hour's final events that have arrived by `now`, in 15-minute steps.

    Most events land within the hour; late ones trickle in over the next three hours,
    after which the hour is final. Steps keep two calls seconds apart in agreement.
    """
    elapsed = now - hour * 3600
    if elapsed >= 3600 + MATURITY_SECONDS:
        return 1.0
    step = int(elapsed // MATURITY_STEP_SECONDS)
    if step < 4:
        return 0.2 * (step + 1)
    return 0.8 + 0.2 * (step - 3) / 13


def _mature(values: tuple[int, ...], maturity: float) -> tuple[int, ...] | None:
    """An hour's values with `maturity` of its events; None if nothing has arrived.

    Each independent count is scaled on its own, so the clamps restore the funnel.
    """
    (
        sessions,
        email,
        google,
        terms,
        converted,
        payment,
        cards,
        companion,
        room,
        media,
    ) = (int(count * maturity) for count in _INDEPENDENT(values))
    accounts, chats = email + google, companion + room
    if not (sessions or accounts or chats or payment):
        return None
    return _funnel(
        sessions,
        email,
        google,
        min(terms, accounts),
        min(converted, accounts),
        payment,
        min(cards, payment),
        companion,
        room,
        min(media, chats),
    )
