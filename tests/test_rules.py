from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peachdw import rules
from peachdw.db import transaction
from peachdw.rules import FALLBACK, Rule, RuleError, RuleSet


@pytest.fixture(scope="module")
def defaults() -> RuleSet:
    return RuleSet(rules.default_rules())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "EXO_peach.ai_Native_US-Mobile_Retarget",
            ("ExoClick", "peach.ai", "Native", "Retargeting · US · Mobile", "Standard"),
            id="contract-example",
        ),
        pytest.param(
            "Exo-Click_Peach.AI_pop-under_DE_mob_LAL_Promo",
            ("ExoClick", "peach.ai", "Popunder", "Lookalike · DE · Mobile", "Promo"),
            id="spelling-and-case",
        ),
        pytest.param(
            "TJ|chat.peach.ai|In-Page Push|日本 android|KW",
            (
                "TrafficJunky",
                "chat.peach.ai",
                "In-Page Push",
                "Keyword · JP · Android",
                "Standard",
            ),
            id="pipes-and-non-ascii",
        ),
        pytest.param(
            "TJ-peach.ai-Display-日本 android-LAL-1%",
            (
                "TrafficJunky",
                "peach.ai",
                "Banner",
                "Lookalike · JP · Android",
                "Standard",
            ),
            id="hyphens-around-the-domain",
        ),
        pytest.param(
            "meta peachai.com stories BR broad v2",
            ("Meta", "peachai.com", "Stories", "Broad · BR", "Variant"),
            id="spaces",
        ),
    ],
)
def test_default_rules_map_messy_names(defaults, name, expected):
    mapping = defaults.map({"name": name})
    assert tuple(mapping.tiers[tier] for tier in rules.TIERS) == expected
    assert mapping.confidence >= 0.8


def test_targeting_joins_its_parts_and_a_whole_tier_rule_above_them_wins():
    audience = Rule(
        id=1,
        pattern="rt",
        match_type="contains",
        tiers={"targeting.audience": "Retargeting"},
        confidence=0.9,
    )
    geo = Rule(
        id=2,
        pattern="us",
        match_type="contains",
        tiers={"targeting.geo": "US"},
        confidence=0.7,
    )
    low_whole = Rule(
        id=3,
        pattern="x",
        match_type="contains",
        tiers={"targeting": "Whole"},
        priority=50,
    )
    mapping = RuleSet([audience, geo, low_whole]).map({"name": "x_us_rt"})
    assert mapping.tiers["targeting"] == "Retargeting · US"
    assert mapping.rule_ids["targeting"] == 1
    assert mapping.confidence == pytest.approx((0.9 + 0.7) / 2 / 5)

    high_whole = Rule(
        id=4,
        pattern="x",
        match_type="contains",
        tiers={"targeting": "Whole"},
        priority=500,
    )
    mapping = RuleSet([audience, geo, high_whole]).map({"name": "x_us_rt"})
    assert (mapping.tiers["targeting"], mapping.rule_ids["targeting"]) == ("Whole", 4)


@pytest.mark.parametrize("seed", [42, 1, 7])
def test_sandbox_names_map_at_95_percent_with_confidence(defaults, seed):
    from peachdw.sandbox import Dataset

    campaigns = Dataset(seed=seed).campaigns
    mapped = [defaults.map(c) for c in campaigns]
    share = sum(m.confidence >= 0.8 for m in mapped) / len(campaigns)
    assert share >= 0.95
    # The rest are not guessed: each has a tier left Unknown.
    assert all(FALLBACK in m.tiers.values() for m in mapped if m.confidence < 0.8)


def test_missing_parts_fall_back_and_lower_confidence(defaults):
    mapping = defaults.map({"name": "ExoClick_peach.ai_Campaign7"})
    assert mapping.tiers["placement"] == FALLBACK
    assert mapping.tiers["targeting"] == FALLBACK
    assert mapping.rule_keys["placement"] == "fallback.placement"
    # network 0.95 + domain 0.95 + special 1.0, two fallback tiers count 0, over five tiers.
    assert mapping.confidence == pytest.approx((0.95 + 0.95 + 1.0) / 5)


def test_unknown_domain_is_kept_but_flagged_by_low_confidence(defaults):
    mapping = defaults.map({"name": "EXO_Companion.App_Native_US_broad"})
    assert mapping.tiers["domain"] == "companion.app"
    assert mapping.confidence < 0.95


def test_token_boundaries_do_not_match_inside_words(defaults):
    mapping = defaults.map({"name": "Exotic_peach.ai_Native_US_broad"})
    assert mapping.tiers["network"] == FALLBACK


def test_higher_priority_wins_and_ties_go_to_the_lower_id():
    low = Rule(
        id=1,
        pattern="exo",
        match_type="contains",
        tiers={"network": "Low"},
        priority=10,
    )
    high = Rule(
        id=2,
        pattern="exo",
        match_type="contains",
        tiers={"network": "High"},
        priority=20,
    )
    tie = Rule(
        id=3,
        pattern="exo",
        match_type="contains",
        tiers={"network": "Tie"},
        priority=20,
    )
    for order in ([low, high, tie], [tie, high, low]):
        mapping = RuleSet(order).map({"name": "EXO_x"})
        assert mapping.tiers["network"] == "High"
        assert mapping.rule_ids["network"] == 2


def test_inactive_rules_are_ignored():
    rule = Rule(
        id=1,
        pattern="exo",
        match_type="contains",
        tiers={"network": "X"},
        is_active=False,
    )
    assert RuleSet([rule]).map({"name": "exo"}).tiers["network"] == FALLBACK


@pytest.mark.parametrize(
    ("match_type", "pattern", "name", "matches"),
    [
        ("exact", "exo_native", "EXO_Native", True),
        ("exact", "exo", "EXO_Native", False),
        ("prefix", "exo_", "EXO_Native", True),
        ("contains", "native", "EXO_Native_US", True),
        ("glob", "exo_*_us", "EXO_Native_US", True),
        ("glob", "exo_*_de", "EXO_Native_US", False),
        ("regex", r"^EXO_(?P<p>\w+)$", "EXO_Native", True),
    ],
)
def test_match_types(match_type, pattern, name, matches):
    rule = Rule(id=1, pattern=pattern, match_type=match_type, tiers={"special": "Hit"})
    assert (RuleSet([rule]).map({"name": name}).tiers["special"] == "Hit") is matches


def test_regex_group_fills_a_tier():
    rule = Rule(
        id=1,
        pattern=r"^(?P<net>[A-Za-z]+)_",
        match_type="regex",
        tiers={"network": "{net|lower}", "special": "{net}"},
    )
    mapping = RuleSet([rule]).map({"name": "ACME_x"})
    assert mapping.tiers["network"] == "acme"
    assert mapping.tiers["special"] == "ACME"


def test_campaign_id_override_and_other_fields():
    override = Rule(
        id=1,
        pattern="42",
        match_type="campaign_id",
        tiers={"network": "Manual"},
        priority=1000,
    )
    by_url = Rule(
        id=2,
        pattern="lp/companion",
        match_type="contains",
        match_field="serving_url",
        tiers={"placement": "Landing"},
    )
    ruleset = RuleSet([override, by_url])
    mapping = ruleset.map(
        {"id": 42, "name": "x", "serving_url": "https://p/lp/companion"}
    )
    assert mapping.tiers["network"] == "Manual"
    assert mapping.tiers["placement"] == "Landing"
    assert ruleset.map({"id": 43, "name": "x"}).tiers["network"] == FALLBACK


def test_pattern_that_does_not_compile_names_the_rule():
    rule = Rule(id=7, pattern="(unclosed", match_type="regex", tiers={"network": "X"})
    with pytest.raises(
        RuleError, match="rule 7: pattern '\\(unclosed' does not compile"
    ):
        RuleSet([rule])


def test_loading_defaults_is_idempotent_and_keeps_user_rules(warehouse):
    count = warehouse.execute("SELECT count(*) FROM hierarchy_rules").fetchone()[0]
    assert count == len(rules.default_rules())
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO hierarchy_rules (match_type, pattern, network, created_at, "
            "updated_at) VALUES ('contains', 'acme', 'Acme', 'now', 'now')"
        )
        warehouse.execute(
            "UPDATE hierarchy_rules SET is_active = 0 WHERE rule_key = 'network.exoclick'"
        )
    with transaction(warehouse):
        assert rules.load_default_rules(warehouse) == (0, 0)
    assert (
        warehouse.execute("SELECT count(*) FROM hierarchy_rules").fetchone()[0]
        == count + 1
    )
    active = warehouse.execute(
        "SELECT is_active FROM hierarchy_rules WHERE rule_key = 'network.exoclick'"
    ).fetchone()[0]
    assert active == 0


def test_map_campaigns_stores_rules_and_skips_manual(warehouse):
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO campaigns (id, name) VALUES (1, 'EXO_peach.ai_Native_US_RT'), "
            "(2, 'TJ_peach.ai_Banner_DE_broad')"
        )
        assert rules.map_campaigns(warehouse) == 2
        warehouse.execute(
            "UPDATE campaign_hierarchy SET network = 'Hand-set', is_manual = 1 "
            "WHERE campaign_id = 2"
        )
        warehouse.execute("UPDATE campaigns SET name = 'TS_peach.ai_Banner_DE_broad'")
        assert rules.map_campaigns(warehouse) == 1
    rows = {
        row["campaign_id"]: row
        for row in warehouse.execute(
            "SELECT h.*, r.rule_key FROM campaign_hierarchy AS h "
            "LEFT JOIN hierarchy_rules AS r ON r.id = h.network_rule_id"
        )
    }
    assert rows[1]["network"] == "TrafficStars"
    assert rows[1]["rule_key"] == "network.trafficstars"
    assert rows[1]["mapped_name"] == "TS_peach.ai_Banner_DE_broad"
    assert rows[2]["network"] == "Hand-set"


def test_catastrophic_pattern_gives_up_and_the_rest_still_maps(defaults):
    import time

    evil = Rule(
        id=99,
        pattern=r"^(a|aa)+$",
        match_type="regex",
        tiers={"special": "Evil"},
        priority=500,
    )
    ruleset = RuleSet([evil, *rules.default_rules()])
    name = "a" * 45 + "!"
    started = time.monotonic()
    mapping = ruleset.map({"name": name})
    assert time.monotonic() - started < 1.0
    assert mapping.tiers["special"] == "Standard"  # the next rule that sets the tier
    assert [rule.id for rule, _ in ruleset.timeouts] == [99]

    normal = ruleset.map({"name": "EXO_peach.ai_Native_US_RT"})
    assert normal.tiers["network"] == "ExoClick"
    assert normal.tiers["placement"] == "Native"


def test_issue_pattern_finishes_in_under_a_second():
    import time

    rule = Rule(
        id=1, pattern=r"^([a-z0-9]+_?)+$", match_type="regex", tiers={"network": "X"}
    )
    started = time.monotonic()
    mapping = RuleSet([rule]).map({"name": "a" * 31 + "!"})
    assert time.monotonic() - started < 1.0
    assert mapping.tiers["network"] == FALLBACK


def test_campaign_id_override_wins_whatever_the_priorities():
    pattern = Rule(
        id=1,
        pattern="exo",
        match_type="contains",
        tiers={"network": "Pattern"},
        priority=10_000,
    )
    override = Rule(
        id=2,
        pattern="42",
        match_type="campaign_id",
        tiers={"network": "Override"},
        priority=0,
    )
    mapping = RuleSet([pattern, override]).map({"id": 42, "name": "EXO_x"})
    assert mapping.tiers["network"] == "Override"
    assert mapping.rule_ids["network"] == 2


def insert_campaigns(conn, names):
    with transaction(conn):
        conn.executemany(
            "INSERT INTO campaigns (id, name) VALUES (?, ?)", list(enumerate(names, 1))
        )
        rules.map_campaigns(conn)


NAMES = [
    "EXO_peach.ai_Native_LatAm-Mobile_RT",
    "TJ_peach.ai_Banner_US-Desktop_broad",
    "TS|peach.ai|Native|latam|LAL",
    "Meta_peach.ai_Feed_DE_broad",
]


def test_a_new_rule_moves_exactly_the_campaigns_it_matches(warehouse):
    insert_campaigns(warehouse, NAMES)
    assert rules.plan_mappings(warehouse) == []

    with transaction(warehouse):
        rule_id = rules.add_rule(
            warehouse,
            Rule(
                pattern="latam",
                match_type="contains",
                tiers={"special": "LatAm"},
                priority=200,
            ),
        )
        changes = rules.plan_mappings(warehouse)
    assert [c.campaign_id for c in changes] == [1, 3]
    assert all(c.new.tiers["special"] == "LatAm" for c in changes)
    assert all(c.old[4] == "Standard" for c in changes)
    assert all(c.new.rule_ids["special"] == rule_id for c in changes)

    with transaction(warehouse):
        rules.apply_mappings(warehouse, changes)
        assert rules.plan_mappings(warehouse) == []
        rules.set_active(warehouse, rule_id, False)
        assert [c.campaign_id for c in rules.plan_mappings(warehouse)] == [1, 3]


def test_bad_rules_are_refused_with_their_reason(warehouse):
    cases = [
        (
            Rule(pattern="(x", match_type="regex", tiers={"network": "X"}),
            "does not compile",
        ),
        (
            Rule(pattern="x", match_type="contains", tiers={"netwrk": "X"}),
            "unknown tier",
        ),
        (Rule(pattern="x", match_type="contains", tiers={}), "sets no tier"),
        (
            Rule(
                pattern="x",
                match_type="contains",
                tiers={"network": "X"},
                match_field="title",
            ),
            "unknown field",
        ),
    ]
    for rule, reason in cases:
        with pytest.raises(RuleError, match=reason):
            rules.add_rule(warehouse, rule)
    with pytest.raises(RuleError, match="There is no rule 999"):
        rules.remove_rule(warehouse, 999)


def test_export_then_import_round_trips_and_is_idempotent(warehouse, tmp_path):
    with transaction(warehouse):
        rules.add_rule(
            warehouse,
            Rule(
                pattern="latam",
                match_type="contains",
                tiers={"special": "LatAm"},
                note="regional push",
            ),
        )
    text = rules.export_rules(warehouse)
    count = warehouse.execute("SELECT count(*) FROM hierarchy_rules").fetchone()[0]

    with transaction(warehouse):
        assert rules.import_rules(warehouse, text, "rules.yaml") == (0, 0, count)

    fresh = tmp_path / "other.db"
    from peachdw import db

    other = db.connect(fresh)
    db.migrate(other)
    with transaction(other):
        assert rules.import_rules(other, text, "rules.yaml") == (count, 0, 0)
    exported = [(r.pattern, dict(r.tiers), r.note) for r in rules.stored_rules(other)]
    original = [
        (r.pattern, dict(r.tiers), r.note) for r in rules.stored_rules(warehouse)
    ]
    assert exported == original


def test_import_checks_every_rule_before_storing_any(warehouse):
    text = (
        "rules:\n"
        "  - {type: contains, pattern: ok, set: {special: Fine}}\n"
        "  - {type: regex, pattern: '(broken', set: {special: Bad}}\n"
    )
    before = warehouse.execute("SELECT count(*) FROM hierarchy_rules").fetchone()[0]
    with (
        pytest.raises(RuleError, match=r"rules\.yaml, rule 2: .*does not compile"),
        transaction(warehouse),
    ):
        rules.import_rules(warehouse, text, "rules.yaml")
    after = warehouse.execute("SELECT count(*) FROM hierarchy_rules").fetchone()[0]
    assert after == before


WORDS = [
    "EXO",
    "exoclick",
    "Exo-Click",
    "TJ",
    "Traffic Junky",
    "TStars",
    "ggl",
    "FB",
    "Meta",
    "tiktok",
    "RDT",
    "peach.ai",
    "chat.peach.ai",
    "peachai.com",
    "Native",
    "BNR",
    "pop-under",
    "IPP",
    "In-Page Push",
    "VAST",
    "Feed",
    "Stories",
    "SRCH",
    "RT",
    "LAL",
    "Lookalike",
    "broad",
    "Interests",
    "KW",
    "Test",
    "Promo",
    "BF",
    "v2",
    "US",
    "DE",
    "日本",
    "München",
    "Mobile",
    "iOS",
    "x",
    "ab",
    "t",
    "intern",
    "retargetingx",
    "42",
]


@given(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=7),
    st.sampled_from(["_", "-", " ", "|", ""]),
    st.integers(min_value=1, max_value=99),
)
@settings(max_examples=150, deadline=None)
def test_skipping_rules_by_their_words_never_changes_a_mapping(parts, separator, cid):
    """The word index only skips rules that cannot match: same result as trying all."""
    extra = [
        Rule(
            id=900,
            pattern="42",
            match_type="campaign_id",
            tiers={"network": "Override"},
        ),
        Rule(
            id=901,
            pattern="*push*",
            match_type="glob",
            tiers={"special": "Glob"},
            priority=150,
        ),
        Rule(
            id=902,
            pattern="native",
            match_type="exact",
            tiers={"placement": "Only"},
            priority=150,
        ),
    ]
    ruleset = RuleSet([*rules.default_rules(), *extra])
    campaign = {"id": cid, "name": separator.join(parts)}
    fast = ruleset.map(campaign)

    ruleset._candidates = lambda campaign, texts: (
        texts.update(
            {
                f: (str(campaign.get(f) or ""), str(campaign.get(f) or "").casefold())
                for f in ("id", "name", "serving_url")
            }
        )
        or list(range(len(ruleset.rules)))
    )
    assert ruleset.map(campaign) == fast


def test_a_stored_rule_that_does_not_compile_is_skipped_by_the_sync(warehouse, caplog):
    insert_campaigns(warehouse, NAMES[:1])
    with transaction(warehouse):
        warehouse.execute(
            "INSERT INTO hierarchy_rules (match_type, pattern, network, priority, "
            "created_at, updated_at) VALUES ('regex', '(broken', 'X', 999, 'now', 'now')"
        )
        rule_id = warehouse.execute("SELECT max(id) FROM hierarchy_rules").fetchone()[0]
        warehouse.execute("UPDATE campaigns SET name = 'TJ_peach.ai_Banner_US_RT'")
        assert rules.map_campaigns(warehouse) == 1
    network = warehouse.execute("SELECT network FROM campaign_hierarchy").fetchone()[0]
    assert network == "TrafficJunky"
    assert f"rule {rule_id} is skipped" in caplog.text
    with pytest.raises(RuleError, match=f"rule {rule_id}: pattern"):
        RuleSet(rules.stored_rules(warehouse))


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (r"(?i)(?<![a-z0-9])native(?![a-z0-9])", {"native"}),
        (r"(traffic[-_ ]?junky|tj)", {"traffic", "tj"}),
        (r"(?i)(?<![a-z0-9])(re[-_ ]?target(?:ing)?|rt|rmkt)", {"re", "rt", "rmkt"}),
        (r"^([a-z0-9]+_?)+$", None),
        (r"x|", None),
        (r"(?i)colou?r", {"colo"}),
    ],
)
def test_required_literals(pattern, words):
    from peachdw.literals import required_literals

    found = required_literals(pattern)
    assert (set(found) if found is not None else None) == words


def test_import_updates_a_users_rule_by_id_and_refuses_to_edit_a_shipped_one(warehouse):
    with transaction(warehouse):
        rule_id = rules.add_rule(
            warehouse,
            Rule(pattern="latam", match_type="contains", tiers={"special": "LatAm"}),
        )
    edited = (
        f"rules:\n  - {{id: {rule_id}, type: contains, pattern: latam, "
        "set: {special: Latin America}, priority: 250}\n"
    )
    with transaction(warehouse):
        assert rules.import_rules(warehouse, edited, "r.yaml") == (0, 1, 0)
    [stored] = [r for r in rules.stored_rules(warehouse) if r.id == rule_id]
    assert (stored.tiers["special"], stored.priority) == ("Latin America", 250)

    shipped = warehouse.execute(
        "SELECT id FROM hierarchy_rules WHERE rule_key = 'network.exoclick'"
    ).fetchone()[0]
    text = f"rules:\n  - {{id: {shipped}, type: contains, pattern: exo, set: {{network: X}}}}\n"
    with (
        pytest.raises(RuleError, match="is shipped with peachdw"),
        transaction(warehouse),
    ):
        rules.import_rules(warehouse, text, "r.yaml")


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("{pattern: x, set: {network: X}, priorty: 5}", "unknown key 'priorty'"),
        (
            "{pattern: x, set: {network: X}, priority: high}",
            "priority must be a number",
        ),
        ("{type: contains, pattern: '', set: {network: X}}", "the pattern is empty"),
        ("{type: campaign_id, pattern: abc, set: {network: X}}", "campaign id"),
        (
            "{type: regex, pattern: '^(?P<a>x)', set: {network: '{b}'}}",
            "names no group",
        ),
        ("{type: contains, pattern: x, set: {network: '{a}'}}", "names no group"),
        (
            "{type: regex, pattern: '^(?P<a>x)', set: {network: '{a|upper}'}}",
            "is not a template",
        ),
    ],
)
def test_import_refuses_rules_that_would_misbehave(warehouse, entry, reason):
    with pytest.raises(RuleError, match=re.escape(reason)), transaction(warehouse):
        rules.import_rules(warehouse, f"rules:\n  - {entry}\n", "r.yaml")
