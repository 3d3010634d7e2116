"""The campaign hierarchy: tiers, pattern rules, and how a name resolves to a mapping.

Resolution, per tier: among the active rules that match and set that tier, the one with the
highest priority wins; ties go to the lower rule id, so the result never depends on order of
loading. A tier no rule sets gets the fallback value. The mapping's confidence is the mean,
over the five tiers, of the confidence of the rule that set each tier, a fallback tier
counting 0 (docs/hierarchy.md).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

import ahocorasick
import regex
import yaml

from peachdw.db import utc_now
from peachdw.errors import PeachDWError
from peachdw.literals import required_literals

log = logging.getLogger(__name__)

#: The tiers, top to bottom. Adding one is a migration plus this line.
TIERS: tuple[str, ...] = ("network", "domain", "placement", "targeting", "special")
#: Tiers made of parts. Each part is resolved on its own, and the tier is its parts joined
#: in this order ("Retargeting · US · Mobile"), unless a rule for the whole tier has a
#: higher priority than every part's rule.
TIER_PARTS: dict[str, tuple[str, ...]] = {"targeting": ("audience", "geo", "device")}
PART_SEPARATOR = " · "
#: What a rule can set: every tier, and every part (`targeting.geo`).
SLOTS: tuple[str, ...] = (
    *TIERS,
    *(f"{tier}.{part}" for tier, parts in TIER_PARTS.items() for part in parts),
)


def slot_column(slot: str) -> str:
    """The `hierarchy_rules` column of a slot: `targeting.geo` is `targeting_geo`."""
    return slot.replace(".", "_")


FALLBACK = "Unknown"
MATCH_TYPES = ("exact", "prefix", "contains", "glob", "regex", "campaign_id")
MATCH_FIELDS = ("name", "slug", "path", "tracking_url", "serving_url")

#: Longest a regex rule may search one campaign field. Python's `re` can take minutes on a
#: pattern that backtracks catastrophically (`^([a-z0-9]+_?)+$` against a long name ending
#: in `!`); the `regex` engine stops at this limit and the rule counts as not matching.
MATCH_TIMEOUT_SECONDS = 0.05

_GROUP_REFERENCE = re.compile(r"^\{(\w+)(\|lower)?\}$")


class RuleError(PeachDWError):
    """A hierarchy rule is malformed or its pattern does not compile."""

    exit_code = 2

    def __init__(self, message: str, *, rule: str | None = None):
        self.rule = rule
        super().__init__(message)


@dataclass(frozen=True)
class Rule:
    pattern: str
    match_type: str
    tiers: Mapping[str, str]
    match_field: str = "name"
    priority: int = 100
    confidence: float = 1.0
    is_active: bool = True
    note: str | None = None
    rule_key: str | None = None
    id: int | None = None

    @property
    def label(self) -> str:
        if self.id is not None:
            return f"rule {self.id}"
        return f"rule {self.rule_key}" if self.rule_key else "the new rule"

    def matcher(self) -> Callable[[str, str], dict[str, str] | None]:
        """A function from the field's text (as is, and casefolded) to the named groups,
        or None for no match."""
        kind, pattern = self.match_type, self.pattern
        if kind not in MATCH_TYPES:
            raise RuleError(
                f"{self.label}: unknown match type {kind!r}", rule=self.label
            )
        if kind == "regex":
            try:
                compiled = regex.compile(pattern)
            except (regex.error, TypeError) as exc:
                raise RuleError(
                    f"{self.label}: pattern {pattern!r} does not compile: {exc}",
                    rule=self.label,
                ) from None

            def search(text: str, folded: str) -> dict[str, str] | None:
                try:
                    found = compiled.search(text, timeout=MATCH_TIMEOUT_SECONDS)
                except TimeoutError:
                    raise PatternTimeout(self, text) from None
                return _groups(found)

            return search

        needle = pattern.casefold()
        glob = re.compile(fnmatch.translate(needle), re.DOTALL)
        tests: dict[str, Callable[[str], bool]] = {
            "exact": lambda folded: folded == needle,
            "prefix": lambda folded: folded.startswith(needle),
            "contains": lambda folded: needle in folded,
            "glob": lambda folded: glob.match(folded) is not None,
            "campaign_id": lambda folded: folded == pattern.strip(),
        }
        test = tests[kind]
        return lambda text, folded: {} if test(folded) else None

    def literals(self) -> frozenset[str] | None:
        """Casefolded strings one of which the field must contain to match, if known."""
        if self.match_type == "regex":
            return required_literals(self.pattern)
        if self.match_type == "campaign_id":
            return frozenset({self.pattern.strip()}) if self.pattern.strip() else None
        if self.match_type in ("exact", "prefix", "contains") and self.pattern:
            return frozenset({self.pattern.casefold()})
        if self.match_type == "glob":
            # The longest run of plain characters between wildcards must appear as is.
            parts = re.split(r"[*?]|\[[^\]]*\]", self.pattern.casefold())
            longest = max(parts, key=len, default="")
            return frozenset({longest}) if longest else None
        return None


class PatternTimeout(Exception):
    """A regex rule ran past MATCH_TIMEOUT_SECONDS on one campaign's field."""

    def __init__(self, rule: Rule, text: str):
        self.rule = rule
        self.text = text
        super().__init__(f"{rule.label} took too long on {text!r}")


def _groups(match: regex.Match[str] | None) -> dict[str, str] | None:
    if match is None:
        return None
    return {name: value for name, value in match.groupdict().items() if value}


@dataclass(frozen=True)
class CampaignMapping:
    tiers: dict[str, str]
    rule_ids: dict[str, int | None]
    confidence: float
    rule_keys: dict[str, str | None] = field(default_factory=dict)
    #: For a tier made of parts: each part found, with its value and the rule behind it.
    parts: dict[str, tuple[str, Rule]] = field(default_factory=dict)


class RuleSet:
    """Compiled active rules, ready to map campaigns."""

    def __init__(self, rules: Iterable[Rule], *, strict: bool = True):
        """Compile the active rules. A rule that does not compile raises `RuleError`;
        with `strict=False` (rules already stored, during a sync) it is left out with a
        warning naming it, so one bad rule cannot stop every sync."""
        active = [rule for rule in rules if rule.is_active]
        if not strict:
            active = [rule for rule in active if _compiles(rule)]
        # A manual override by campaign id wins over every pattern, whatever its priority.
        active.sort(
            key=lambda rule: (
                rule.match_type != "campaign_id",
                -rule.priority,
                rule.id or 0,
                rule.rule_key or "",
            )
        )
        self.rules = active
        self._compiled = [
            (
                rule,
                rule.matcher(),
                "id" if rule.match_type == "campaign_id" else rule.match_field,
                [(tier, value) for tier, value in rule.tiers.items() if value],
            )
            for rule in active
        ]
        self._fields = sorted({field_name for _, _, field_name, _ in self._compiled})
        # Which rules can match a text at all: those whose words occur in it (found in
        # one pass by an Aho-Corasick automaton per field), and those without words.
        self._always: list[int] = []
        self._by_word: dict[str, dict[str, list[int]]] = {}
        for index, rule in enumerate(active):
            words = rule.literals()
            if words is None:
                self._always.append(index)
                continue
            field_name = self._compiled[index][2]
            for word in words:
                self._by_word.setdefault(field_name, {}).setdefault(word, []).append(
                    index
                )
        self._automata = {}
        for field_name, words in self._by_word.items():
            automaton = ahocorasick.Automaton()
            for word in words:
                automaton.add_word(word, word)
            automaton.make_automaton()
            self._automata[field_name] = automaton
        #: (rule, text) for every search that ran out of time.
        self.timeouts: list[tuple[Rule, str]] = []

    def map(self, campaign: Mapping[str, Any]) -> CampaignMapping:
        tiers: dict[str, str] = {}
        winners: dict[str, Rule] = {}
        texts: dict[str, tuple[str, str]] = {}
        for index in self._candidates(campaign, texts):
            rule, match, field_name, settings = self._compiled[index]
            open_tiers = [(t, v) for t, v in settings if t not in winners]
            if not open_tiers:
                continue
            text, folded = texts[field_name]
            try:
                groups = match(text, folded)
            except PatternTimeout:
                # The campaign falls back for this rule's tiers; others map as usual.
                log.warning(
                    "%s gave up after %.2f s on %r; fix the pattern "
                    "(peachdw hierarchy rules list)",
                    rule.label,
                    MATCH_TIMEOUT_SECONDS,
                    text,
                )
                self.timeouts.append((rule, text))
                continue
            if groups is None:
                continue
            for tier, value in open_tiers:
                filled = _fill(value, groups)
                if filled:
                    tiers[tier] = filled
                    winners[tier] = rule
            if len(winners) == len(SLOTS):
                break

        return _compose(tiers, winners)

    def _candidates(
        self, campaign: Mapping[str, Any], texts: dict[str, tuple[str, str]]
    ) -> list[int]:
        """Indexes of the rules that might match, in resolution order; fills `texts`
        with each field's text as is and casefolded."""
        for field_name in self._fields:
            raw = str(campaign.get(field_name) or "")
            texts[field_name] = (raw, raw.casefold())

        candidates = set(self._always)
        for field_name, automaton in self._automata.items():
            index = self._by_word[field_name]
            for _, word in automaton.iter(texts[field_name][1]):
                candidates.update(index[word])
        return sorted(candidates)


def _compiles(rule: Rule) -> bool:
    try:
        rule.matcher()
    except RuleError as exc:
        log.warning("%s is skipped: %s", rule.label, exc)
        return False
    return True


def _compose(values: dict[str, str], winners: dict[str, Rule]) -> CampaignMapping:
    """Turn the winning value of every slot into the five tiers and the confidence."""
    tiers: dict[str, str] = {}
    rules_behind: dict[str, Rule | None] = {}
    confidences: dict[str, float] = {}
    used_parts: dict[str, tuple[str, Rule]] = {}
    for tier in TIERS:
        whole = winners.get(tier)
        parts = [p for p in TIER_PARTS.get(tier, ()) if f"{tier}.{p}" in winners]
        best_part = max(
            (winners[f"{tier}.{p}"] for p in parts),
            key=lambda rule: rule.priority,
            default=None,
        )
        if best_part is not None and (
            whole is None or best_part.priority > whole.priority
        ):
            tiers[tier] = PART_SEPARATOR.join(values[f"{tier}.{p}"] for p in parts)
            for p in parts:
                used_parts[f"{tier}.{p}"] = (
                    values[f"{tier}.{p}"],
                    winners[f"{tier}.{p}"],
                )
            rules_behind[tier] = winners[f"{tier}.{parts[0]}"]
            confidences[tier] = sum(
                winners[f"{tier}.{p}"].confidence for p in parts
            ) / len(parts)
        elif whole is not None:
            tiers[tier] = values[tier]
            rules_behind[tier] = whole
            confidences[tier] = whole.confidence
        else:
            tiers[tier] = FALLBACK
            rules_behind[tier] = None
            confidences[tier] = 0.0

    return CampaignMapping(
        tiers=tiers,
        rule_ids={t: r.id if r else None for t, r in rules_behind.items()},
        confidence=round(sum(confidences.values()) / len(TIERS), 4),
        rule_keys={t: r.rule_key if r else None for t, r in rules_behind.items()},
        parts=used_parts,
    )


def _fill(value: str, groups: dict[str, str]) -> str | None:
    reference = _GROUP_REFERENCE.match(value)
    if reference is None:
        return value
    filled = groups.get(reference[1])
    if filled and reference[2]:
        filled = filled.lower()
    return filled


# -- rules in the database ---------------------------------------------------------------


def default_rules() -> list[Rule]:
    """The rules shipped with the package (`default_rules.yaml`)."""
    text = resources.files("peachdw").joinpath("default_rules.yaml").read_text("utf-8")
    return [_rule_from_yaml(entry) for entry in yaml.safe_load(text)["rules"]]


def _rule_from_yaml(entry: dict[str, Any]) -> Rule:
    tiers = entry.get("set") or {}
    unknown = set(tiers) - set(SLOTS)
    if unknown:
        raise RuleError(f"rule {entry.get('key')}: unknown tiers {sorted(unknown)}")
    return Rule(
        rule_key=entry["key"],
        pattern=str(entry["pattern"]),
        match_type=entry.get("type", "regex"),
        match_field=entry.get("field", "name"),
        tiers=tiers,
        priority=int(entry.get("priority", 100)),
        confidence=float(entry.get("confidence", 1.0)),
        note=entry.get("note"),
    )


def load_default_rules(conn: sqlite3.Connection) -> tuple[int, int]:
    """Insert or refresh the shipped rules; returns (inserted, updated).

    Rules a user added (no `rule_key`) are never touched, and a default rule a user
    disabled stays disabled.
    """
    rules = default_rules()
    RuleSet(rules)  # every pattern must compile before any is stored

    stored = {
        row["rule_key"]: row
        for row in conn.execute(
            "SELECT * FROM hierarchy_rules WHERE rule_key IS NOT NULL"
        )
    }
    now = utc_now()
    inserted = updated = 0
    for rule in rules:
        values = {
            "match_field": rule.match_field,
            "match_type": rule.match_type,
            "pattern": rule.pattern,
            **{slot_column(slot): rule.tiers.get(slot) for slot in SLOTS},
            "priority": rule.priority,
            "confidence": rule.confidence,
            "note": rule.note,
        }
        previous = stored.get(rule.rule_key)
        if previous is not None and all(previous[k] == v for k, v in values.items()):
            continue
        if previous is None:
            inserted += 1
        else:
            updated += 1
        columns = ["rule_key", *values, "created_at", "updated_at"]
        conn.execute(
            f"INSERT INTO hierarchy_rules ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) "
            "ON CONFLICT (rule_key) DO UPDATE SET "
            + ", ".join(
                f"{name} = excluded.{name}" for name in [*values, "updated_at"]
            ),
            [rule.rule_key, *values.values(), now, now],
        )
    return inserted, updated


def stored_rules(conn: sqlite3.Connection) -> list[Rule]:
    return [
        Rule(
            id=row["id"],
            rule_key=row["rule_key"],
            pattern=row["pattern"],
            match_type=row["match_type"],
            match_field=row["match_field"],
            tiers={
                slot: row[slot_column(slot)] for slot in SLOTS if row[slot_column(slot)]
            },
            priority=row["priority"],
            confidence=row["confidence"],
            is_active=bool(row["is_active"]),
            note=row["note"],
        )
        for row in conn.execute("SELECT * FROM hierarchy_rules ORDER BY id")
    ]


@dataclass(frozen=True)
class MappingChange:
    """A campaign whose stored mapping differs from what the rules give now."""

    campaign_id: int
    name: str
    old: tuple[str, ...] | None
    old_confidence: float | None
    new: CampaignMapping

    @property
    def new_tiers(self) -> tuple[str, ...]:
        return tuple(self.new.tiers[tier] for tier in TIERS)


def plan_mappings(
    conn: sqlite3.Connection, campaign_ids: Iterable[int] | None = None
) -> list[MappingChange]:
    """Map the given campaigns (all when None) and return those whose mapping would
    change. Manual overrides are left out: nothing changes them."""
    ruleset = RuleSet(stored_rules(conn), strict=False)
    sql = (
        "SELECT c.id, c.name, c.slug, c.path, c.tracking_url, c.serving_url, "
        "h.campaign_id AS mapped, h.is_manual, h.mapped_name, h.mapping_confidence, "
        + ", ".join(f"h.{tier}, h.{tier}_rule_id" for tier in TIERS)
        + " FROM campaigns AS c LEFT JOIN campaign_hierarchy AS h ON h.campaign_id = c.id"
        " ORDER BY c.id"
    )
    rows = conn.execute(sql).fetchall()
    if campaign_ids is not None:
        wanted = set(campaign_ids)
        rows = [row for row in rows if row["id"] in wanted]

    changes = []
    for row in rows:
        if row["is_manual"]:
            continue
        mapping = ruleset.map(dict(row))
        old = tuple(row[tier] for tier in TIERS) if row["mapped"] else None
        unchanged = (
            old == tuple(mapping.tiers[tier] for tier in TIERS)
            and row["mapped_name"] == row["name"]
            and row["mapping_confidence"] == mapping.confidence
            and all(row[f"{t}_rule_id"] == mapping.rule_ids[t] for t in TIERS)
        )
        if not unchanged:
            changes.append(
                MappingChange(
                    row["id"], row["name"], old, row["mapping_confidence"], mapping
                )
            )
    return changes


def apply_mappings(conn: sqlite3.Connection, changes: Iterable[MappingChange]) -> None:
    """Store planned mappings, inside the caller's transaction."""
    columns = [
        "campaign_id",
        *TIERS,
        "mapping_confidence",
        *(f"{tier}_rule_id" for tier in TIERS),
        "mapped_name",
        "mapped_at",
    ]
    now = utc_now()
    conn.executemany(
        f"INSERT INTO campaign_hierarchy ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) "
        "ON CONFLICT (campaign_id) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in columns[1:]),
        [
            (
                change.campaign_id,
                *change.new_tiers,
                change.new.confidence,
                *(change.new.rule_ids[tier] for tier in TIERS),
                change.name,
                now,
            )
            for change in changes
        ],
    )


def map_campaigns(
    conn: sqlite3.Connection, campaign_ids: Iterable[int] | None = None
) -> int:
    """Map the given campaigns (all when None) and store the result; returns how many
    mappings changed. Manual overrides are left as they are.
    """
    changes = plan_mappings(conn, campaign_ids)
    apply_mappings(conn, changes)
    log.info("Mapped campaigns: %d mappings changed", len(changes))
    return len(changes)


# -- managing rules ----------------------------------------------------------------------


def add_rule(conn: sqlite3.Connection, rule: Rule) -> int:
    """Store a user's rule after checking it; returns its id."""
    _check(rule)
    now = utc_now()
    columns = ["rule_key", *_RULE_COLUMNS, "created_at", "updated_at"]
    cursor = conn.execute(
        f"INSERT INTO hierarchy_rules ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})",
        (rule.rule_key, *_rule_values(rule), now, now),
    )
    return int(cursor.lastrowid)


#: The columns of `hierarchy_rules` that a rule's content fills, in `_rule_values` order.
_RULE_COLUMNS = (
    "match_field",
    "match_type",
    "pattern",
    *(slot_column(slot) for slot in SLOTS),
    "priority",
    "confidence",
    "is_active",
    "note",
)


def _rule_values(rule: Rule) -> tuple[Any, ...]:
    return (
        rule.match_field,
        rule.match_type,
        rule.pattern,
        *(rule.tiers.get(slot) for slot in SLOTS),
        rule.priority,
        rule.confidence,
        int(rule.is_active),
        rule.note,
    )


def _check(rule: Rule) -> None:
    label = rule.label
    if not rule.tiers:
        raise RuleError(
            f"{label} sets no tier; give at least one, such as network=ExoClick"
        )
    unknown = sorted(set(rule.tiers) - set(SLOTS))
    if unknown:
        raise RuleError(
            f"{label}: unknown tier {unknown[0]!r}; use one of {', '.join(SLOTS)}"
        )
    if rule.match_field not in MATCH_FIELDS:
        raise RuleError(
            f"{label}: unknown field {rule.match_field!r}; use one of {', '.join(MATCH_FIELDS)}"
        )
    if not rule.pattern.strip():
        raise RuleError(
            f"{label}: the pattern is empty, which would match every campaign"
        )
    if rule.match_type == "campaign_id" and not rule.pattern.strip().isdigit():
        raise RuleError(
            f"{label}: a campaign_id rule's pattern is a campaign id, not {rule.pattern!r}"
        )
    _check_templates(rule, label)
    if not 0 <= rule.confidence <= 1:
        raise RuleError(
            f"{label}: confidence must be between 0 and 1, not {rule.confidence}"
        )
    rule.matcher()  # refuses a pattern that does not compile, naming the rule


def _check_templates(rule: Rule, label: str) -> None:
    """A `{group}` value must name a group of the rule's regex; `|lower` is the only
    filter."""
    groups: set[str] = set()
    if rule.match_type == "regex":
        try:
            groups = set(regex.compile(rule.pattern).groupindex)
        except (regex.error, TypeError):
            return  # the compile check reports it
    for slot, value in rule.tiers.items():
        if "{" not in value and "}" not in value:
            continue
        reference = _GROUP_REFERENCE.match(value)
        if reference is None:
            raise RuleError(
                f"{label}: {slot}={value!r} is not a template; write {{group}} or "
                "{group|lower} for a named group of a regex rule"
            )
        if reference[1] not in groups:
            raise RuleError(
                f"{label}: {slot}={value!r} names no group of the pattern; a regex rule "
                "needs (?P<" + reference[1] + ">...)"
            )


def set_active(conn: sqlite3.Connection, rule_id: int, active: bool) -> None:
    require_rule(conn, rule_id)
    conn.execute(
        "UPDATE hierarchy_rules SET is_active = ?, updated_at = ? WHERE id = ?",
        (int(active), utc_now(), rule_id),
    )


def remove_rule(conn: sqlite3.Connection, rule_id: int) -> None:
    """Delete a rule; mappings it set keep their values until the next remap."""
    require_rule(conn, rule_id)
    conn.execute("DELETE FROM hierarchy_rules WHERE id = ?", (rule_id,))


def require_rule(conn: sqlite3.Connection, rule_id: int) -> None:
    """Raise `RuleError` when there is no rule with this id."""
    if not conn.execute(
        "SELECT 1 FROM hierarchy_rules WHERE id = ?", (rule_id,)
    ).fetchone():
        raise RuleError(
            f"There is no rule {rule_id}; `peachdw hierarchy rules list` shows the ids.",
            rule=str(rule_id),
        )


def export_rules(conn: sqlite3.Connection) -> str:
    """Every stored rule as YAML in the format `import_rules` and the defaults use."""
    entries = []
    for rule in stored_rules(conn):
        entry: dict[str, Any] = {"id": rule.id}
        if rule.rule_key:
            entry["key"] = rule.rule_key
        entry.update(type=rule.match_type, pattern=rule.pattern)
        if rule.match_field != "name":
            entry["field"] = rule.match_field
        entry.update(
            set=dict(rule.tiers),
            priority=rule.priority,
            confidence=rule.confidence,
            active=rule.is_active,
        )
        if rule.note:
            entry["note"] = rule.note
        entries.append(entry)
    return yaml.safe_dump({"rules": entries}, sort_keys=False, allow_unicode=True)


_ENTRY_KEYS = {
    "id",
    "key",
    "type",
    "pattern",
    "field",
    "set",
    "priority",
    "confidence",
    "active",
    "note",
}


def _rule_from_entry(entry: Any, where: str) -> Rule:
    """One rule of an imported file, with every field checked."""
    if not isinstance(entry, dict) or "pattern" not in entry:
        raise RuleError(
            f"{where}: a rule is a mapping with at least 'pattern' and 'set'"
        )
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise RuleError(
            f"{where}: unknown key {unknown[0]!r}; a rule has {', '.join(sorted(_ENTRY_KEYS))}"
        )
    numbers = {"id": int, "priority": int, "confidence": float}
    for name, kind in numbers.items():
        if name in entry and entry[name] is not None:
            try:
                kind(entry[name])
            except (TypeError, ValueError):
                raise RuleError(
                    f"{where}: {name} must be a number, not {entry[name]!r}"
                ) from None
    sets = entry.get("set") or {}
    if not isinstance(sets, dict):
        raise RuleError(
            f"{where}: 'set' must map tiers to values, such as network: ExoClick"
        )
    rule = Rule(
        id=int(entry["id"]) if entry.get("id") is not None else None,
        rule_key=None,
        pattern=str(entry["pattern"]),
        match_type=str(entry.get("type", "regex")),
        match_field=str(entry.get("field", "name")),
        tiers={str(k): str(v) for k, v in sets.items()},
        priority=int(entry.get("priority", 100)),
        confidence=float(entry.get("confidence", 1.0)),
        is_active=bool(entry.get("active", True)),
        note=entry.get("note"),
    )
    try:
        _check(rule)
    except RuleError as exc:
        raise RuleError(f"{where}: {exc}") from None
    return rule


def import_rules(
    conn: sqlite3.Connection, text: str, source: str, *, dry_run: bool = False
) -> tuple[int, int, int]:
    """Apply a YAML rules file (the export format); returns (added, updated, unchanged).

    A rule with the `id` of a rule you added updates that rule, so export, edit, import
    changes rules in place. A shipped rule (one with a key) cannot be edited this way:
    disable it and add your own. A rule without an id that is identical to a stored one
    (same field, match, pattern and tiers) is not added twice. Every rule is checked before
    any is stored.
    """
    try:
        document = yaml.safe_load(text)
        entries = document["rules"]
        if not isinstance(entries, list):
            raise TypeError
    except (yaml.YAMLError, KeyError, TypeError):
        raise RuleError(
            f"{source} is not a rules file: it needs a top-level 'rules:' list, as "
            "`peachdw hierarchy rules export` writes."
        ) from None

    stored = {rule.id: rule for rule in stored_rules(conn)}
    incoming = [
        _rule_from_entry(entry, f"{source}, rule {number}")
        for number, entry in enumerate(entries, start=1)
    ]

    def identity(rule: Rule) -> tuple:
        return (
            rule.match_field,
            rule.match_type,
            rule.pattern,
            tuple(rule.tiers.get(slot) for slot in SLOTS),
        )

    def content(rule: Rule) -> tuple:
        return (
            *identity(rule),
            rule.priority,
            rule.confidence,
            rule.is_active,
            rule.note,
        )

    present = {identity(rule) for rule in stored.values()}
    added = updated = unchanged = 0
    for number, rule in enumerate(incoming, start=1):
        current = stored.get(rule.id) if rule.id is not None else None
        if current is not None:
            if content(current) == content(rule):
                unchanged += 1
                continue
            if current.rule_key:
                raise RuleError(
                    f"{source}, rule {number}: rule {rule.id} is shipped with peachdw "
                    f"({current.rule_key}); disable it and add your own rule instead."
                )
            updated += 1
            if not dry_run:
                _update_rule(conn, rule)
            continue
        if identity(rule) in present:
            unchanged += 1
            continue
        added += 1
        present.add(identity(rule))
        if not dry_run:
            add_rule(conn, replace(rule, id=None))
    return added, updated, unchanged


def _update_rule(conn: sqlite3.Connection, rule: Rule) -> None:
    assignments = ", ".join(f"{name} = ?" for name in (*_RULE_COLUMNS, "updated_at"))
    conn.execute(
        f"UPDATE hierarchy_rules SET {assignments} WHERE id = ?",
        (*_rule_values(rule), utc_now(), rule.id),
    )
