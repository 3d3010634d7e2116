"""The sandbox's data-quality quirks, over real HTTP: each one does what it records."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sandbox_helpers import FROZEN, FROZEN_HOUR, TOKEN

from peachdw.cli import cli
from peachdw.metrics import BUILTIN_METRICS, REPORT_METRICS
from peachdw.records import parse_metrics
from peachdw.sandbox import (
    PLAUSIBILITY_RULES,
    Dataset,
    QuirkChanges,
    Quirks,
    SandboxServer,
    broken_rules,
)

# Two whole UTC days before the frozen clock; its last hours are still maturing.
START, END = FROZEN_HOUR - 48, FROZEN_HOUR
FIRST_DAY, LAST_DAY = date(2025, 8, 6), date(2025, 8, 7)
# The field each rule is broken through.
RULE_FIELD = {
    PLAUSIBILITY_RULES[0]: "total_accounts",
    PLAUSIBILITY_RULES[1]: "total_user_chats",
    PLAUSIBILITY_RULES[2]: "registrations",
}
EVERY_QUIRK = Quirks(
    drop_hours=0.1,
    skew_report=0.3,
    extra_field="video_views",
    implausible=0.05,
    seed=11,
)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset(seed=42, now=FROZEN)


@pytest.fixture(scope="module")
def truth(dataset: Dataset) -> dict[tuple[int, int], dict]:
    return by_key(dataset.metrics(START, END))


@pytest.fixture(scope="module")
def true_reports(dataset: Dataset) -> list[dict]:
    return dataset.reports(FIRST_DAY, LAST_DAY)


def get(server: SandboxServer, path: str) -> list[dict]:
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())["data"]
    finally:
        connection.close()


def metrics(
    server: SandboxServer, start: int, end: int, campaign_id: int | None = None
) -> list[dict]:
    path = f"/admin/metrics?start_hour={start}&end_hour={end}"
    return get(
        server, path if campaign_id is None else f"{path}&campaign_id={campaign_id}"
    )


def reports(server: SandboxServer) -> list[dict]:
    return get(server, f"/admin/reports?start_date={FIRST_DAY}&end_date={LAST_DAY}")


def by_key(rows: list[dict]) -> dict[tuple[int, int], dict]:
    return {(row["campaign_id"], row["unix_hour"]): row for row in rows}


def day_of(unix_hour: int) -> str:
    return datetime.fromtimestamp(unix_hour * 3600, UTC).date().isoformat()


def daily_sums(rows) -> dict[tuple[int, str, str], int]:
    """{(campaign id, date, metric): sum} of hourly rows, as /admin/reports adds up."""
    sums: dict[tuple[int, str, str], int] = defaultdict(int)
    for row in rows:
        for name in REPORT_METRICS:
            sums[row["campaign_id"], day_of(row["unix_hour"]), name] += row[name]
    return dict(sums)


def report_sums(rows: list[dict]) -> dict[tuple[int, str, str], int]:
    return {
        (row["campaign_id"], row["date"], name): row[name]
        for row in rows
        for name in REPORT_METRICS
    }


def changed_fields(served: dict, true: dict) -> dict[str, int]:
    return {
        name: served[name] - true[name]
        for name in BUILTIN_METRICS
        if served[name] != true[name]
    }


def assert_stored_whole(rows: list[dict], extra: str | None = None) -> None:
    """The warehouse's contract rules accept every row; a new field is only drift."""
    window = parse_metrics({"data": rows}, START, END)

    assert window.rejected == []
    assert len(window.rows) == len(rows)
    assert window.unknown_fields == (
        Counter({extra: len(rows)}) if extra else Counter()
    )


# --- each quirk -----------------------------------------------------------------------


def test_without_quirks_the_answers_are_the_datasets(
    dataset: Dataset, truth: dict, true_reports: list[dict]
):
    off = Quirks()

    with SandboxServer(dataset, TOKEN) as server:
        served, served_reports = metrics(server, START, END), reports(server)

    assert not off.active and server.quirks == off
    assert served == list(truth.values())
    assert served_reports == true_reports
    assert off.changes(dataset, START, END) == QuirkChanges()
    assert not off.changes(dataset, START, END)


def test_dropped_hours_are_missing_from_metrics_but_counted_in_reports(
    dataset: Dataset, truth: dict, true_reports: list[dict]
):
    quirks = Quirks(drop_hours=0.1, seed=3)
    changes = quirks.changes(dataset, START, END)

    with SandboxServer(dataset, TOKEN, quirks=quirks) as server:
        served, served_reports = by_key(metrics(server, START, END)), reports(server)

    assert changes.dropped == truth.keys() - served.keys()
    assert served.keys() <= truth.keys()
    assert 0.07 < len(changes.dropped) / len(truth) < 0.13
    assert all(served[key] == truth[key] for key in served)
    assert served_reports == true_reports
    # What reconciliation finds missing is exactly the dropped rows.
    shortfall = Counter(report_sums(served_reports))
    shortfall.subtract(daily_sums(served.values()))
    missing = Counter(daily_sums(truth[key] for key in changes.dropped))
    assert +shortfall == +missing and -shortfall == Counter()
    assert not changes.skews and not changes.implausible and not changes.extra
    assert_stored_whole(list(served.values()))


def test_skewed_hours_exceed_the_report_by_the_recorded_amounts(
    dataset: Dataset, truth: dict, true_reports: list[dict]
):
    quirks = Quirks(skew_report=0.3, seed=3)
    changes = quirks.changes(dataset, START, END)

    with SandboxServer(dataset, TOKEN, quirks=quirks) as server:
        served, served_reports = by_key(metrics(server, START, END)), reports(server)

    # One metric of one hour per skewed (campaign, day), raised by the recorded amount.
    raised = {
        key: changed_fields(row, truth[key])
        for key, row in served.items()
        if row != truth[key]
    }
    assert served.keys() == truth.keys()
    assert raised == {
        (skew.campaign_id, skew.unix_hour): {skew.metric: skew.delta}
        for skew in changes.skews
    }
    assert all(skew.delta > 0 for skew in changes.skews)
    assert len({(s.campaign_id, s.date) for s in changes.skews}) == len(changes.skews)
    assert {skew.metric for skew in changes.skews} == set(REPORT_METRICS)
    assert 0.2 < len(changes.skews) / len(true_reports) < 0.4
    # The report keeps the truth; the hourly sums are off by exactly the record.
    assert served_reports == true_reports
    excess = Counter(daily_sums(served.values()))
    excess.subtract(report_sums(served_reports))
    assert +excess == Counter(changes.skewed) and -excess == Counter()
    assert all(broken_rules(row) == [] for row in served.values())
    assert_stored_whole(list(served.values()))


def test_the_extra_field_rides_on_every_row_as_schema_drift(
    dataset: Dataset, truth: dict, true_reports: list[dict]
):
    quirks = Quirks(extra_field="video_views", seed=3)
    changes = quirks.changes(dataset, START, END)

    with SandboxServer(dataset, TOKEN, quirks=quirks) as server:
        rows, served_reports = metrics(server, START, END), reports(server)

    assert len(rows) == len(truth)
    for row in rows:
        key = (row["campaign_id"], row["unix_hour"])
        assert list(row) == [
            "campaign_id",
            "unix_hour",
            *BUILTIN_METRICS,
            "video_views",
        ]
        assert type(row["video_views"]) is int and row["video_views"] >= 0
        assert row["video_views"] == changes.extra[key]
        assert {**row, "video_views": None} == {**truth[key], "video_views": None}
    assert len(changes.extra) == len(rows)
    assert len({row["video_views"] for row in rows}) > 100
    assert served_reports == true_reports
    assert_stored_whole(rows, extra="video_views")


def test_implausible_rows_break_exactly_the_recorded_rule(
    dataset: Dataset, truth: dict
):
    quirks = Quirks(implausible=0.05, seed=3)
    changes = quirks.changes(dataset, START, END)

    with SandboxServer(dataset, TOKEN, quirks=quirks) as server:
        served, served_reports = by_key(metrics(server, START, END)), reports(server)

    broken = {(*key, rule) for key, row in served.items() for rule in broken_rules(row)}
    assert served.keys() == truth.keys()
    assert broken == changes.implausible
    assert len({(cid, hour) for cid, hour, _ in broken}) == len(broken)
    assert Counter(rule for *_, rule in broken).keys() == set(PLAUSIBILITY_RULES)
    assert 0.03 < len(broken) / len(truth) < 0.07
    for cid, hour, rule in broken:
        changed = changed_fields(served[cid, hour], truth[cid, hour])
        assert list(changed) == [RULE_FIELD[rule]] and changed[RULE_FIELD[rule]] > 0
    unbroken = served.keys() - {(cid, hour) for cid, hour, _ in broken}
    assert all(served[key] == truth[key] for key in unbroken)
    # The API's own data is wrong, so its report adds up the same rows.
    assert report_sums(served_reports) == daily_sums(served.values())
    assert_stored_whole(list(served.values()))


def test_every_quirk_at_once_keeps_each_record_exact(dataset: Dataset, truth: dict):
    changes = EVERY_QUIRK.changes(dataset, START, END)

    with SandboxServer(dataset, TOKEN, quirks=EVERY_QUIRK) as server:
        served = by_key(metrics(server, START, END))

    skewed = {(s.campaign_id, s.unix_hour): s for s in changes.skews}
    broken = {(cid, hour): rule for cid, hour, rule in changes.implausible}
    assert changes.dropped == truth.keys() - served.keys()
    assert not skewed.keys() & broken.keys()
    for key, row in served.items():
        expected = dict(truth[key])
        if key in skewed:
            expected[skewed[key].metric] += skewed[key].delta
        if key in broken:
            rule = broken[key]
            expected[RULE_FIELD[rule]] = row[RULE_FIELD[rule]]
        assert broken_rules(row) == ([broken[key]] if key in broken else [])
        assert row == {**expected, "video_views": changes.extra[key]}
    assert_stored_whole(list(served.values()), extra="video_views")


# --- the same choices whatever the window ---------------------------------------------


@pytest.mark.parametrize(
    "quirks",
    [
        pytest.param(Quirks(drop_hours=0.2, seed=5), id="drop-hours"),
        pytest.param(Quirks(skew_report=0.5, seed=5), id="skew-report"),
        pytest.param(Quirks(extra_field="video_views", seed=5), id="extra-field"),
        pytest.param(Quirks(implausible=0.1, seed=5), id="implausible"),
        pytest.param(EVERY_QUIRK, id="all"),
    ],
)
def test_choices_do_not_depend_on_the_window_shape(dataset: Dataset, quirks: Quirks):
    whole = quirks.changes(dataset, START, END)
    halves = [(START, START + 24), (START + 24, END)]
    uneven = [(START, START + 7), (START + 7, START + 31), (START + 31, END)]

    with SandboxServer(dataset, TOKEN, quirks=quirks) as server:
        one_call = by_key(metrics(server, START, END))
        by_halves = by_key([r for span in halves for r in metrics(server, *span)])
        by_uneven = by_key([r for span in uneven for r in metrics(server, *span)])
        campaign = next(iter(one_call))[0]
        one_campaign = by_key(metrics(server, START, END, campaign))

    assert whole
    assert by_halves == by_uneven == one_call
    assert one_campaign == {k: v for k, v in one_call.items() if k[0] == campaign}
    for spans in (halves, uneven):
        merged = QuirkChanges()
        for span in spans:
            merged |= quirks.changes(dataset, *span)
        assert merged == whole


def test_different_seeds_choose_differently(dataset: Dataset):
    one = Quirks(drop_hours=0.1, skew_report=0.3, implausible=0.05, seed=1)
    same = Quirks(drop_hours=0.1, skew_report=0.3, implausible=0.05, seed=1)
    other = Quirks(drop_hours=0.1, skew_report=0.3, implausible=0.05, seed=2)

    first = one.changes(dataset, START, END)

    assert first == same.changes(dataset, START, END)
    different = other.changes(dataset, START, END)
    assert first.dropped != different.dropped
    assert first.skews != different.skews
    assert first.implausible != different.implausible


# --- switching while serving ----------------------------------------------------------


def test_switching_off_gives_the_truth_and_on_again_the_same_quirks(
    dataset: Dataset, truth: dict, true_reports: list[dict]
):
    with SandboxServer(dataset, TOKEN, quirks=EVERY_QUIRK) as server:
        quirky = metrics(server, START, END)
        quirky_reports = reports(server)
        server.quirks = Quirks()
        healed, healed_reports = metrics(server, START, END), reports(server)
        server.quirks = EVERY_QUIRK
        again = metrics(server, START, END)
        server.quirks = None
        off_again = metrics(server, START, END)

    assert by_key(quirky) != truth
    assert healed == off_again == list(truth.values())
    assert healed_reports == true_reports != quirky_reports
    assert again == quirky


def test_a_switch_mid_traffic_gives_each_request_one_whole_set(dataset: Dataset):
    span = (END - 6, END)
    quirks = Quirks(drop_hours=0.3, extra_field="video_views", implausible=0.2, seed=4)
    answers = {
        "on": quirks.metrics(dataset, *span),
        "off": dataset.metrics(*span),
    }
    seen: list[str] = []

    with SandboxServer(dataset, TOKEN, quirks=quirks) as server:

        def call() -> None:
            for _ in range(10):
                rows = metrics(server, *span)
                seen.extend(name for name, answer in answers.items() if rows == answer)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for number in range(200):
            server.quirks = Quirks() if number % 2 else quirks
        for thread in threads:
            thread.join()

    assert len(seen) == 40


# --- refusing bad switches ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        pytest.param({"drop_hours": 1.5}, "drop_hours", id="rate-above-one"),
        pytest.param({"skew_report": -0.1}, "skew_report", id="negative-rate"),
        pytest.param({"implausible": float("nan")}, "implausible", id="nan-rate"),
        pytest.param({"drop_hours": "0.1"}, "drop_hours", id="rate-as-text"),
        pytest.param({"extra_field": "VideoViews"}, "lowercase", id="capitals"),
        pytest.param({"extra_field": "video views"}, "lowercase", id="space"),
        pytest.param({"extra_field": "2nd_views"}, "lowercase", id="digit-first"),
        pytest.param({"extra_field": ""}, "lowercase", id="empty"),
        pytest.param({"extra_field": "sessions"}, "already", id="a-metric"),
        pytest.param({"extra_field": "unix_hour"}, "already", id="a-key"),
        pytest.param({"seed": 1.5}, "seed", id="fractional-seed"),
    ],
)
def test_bad_quirks_are_refused(options: dict, needle: str):
    with pytest.raises(ValueError, match=needle):
        Quirks(**options)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        pytest.param(["--drop-hours", "1.5"], "--drop-hours", id="rate-above-one"),
        pytest.param(["--skew-report", "lots"], "--skew-report", id="not-a-number"),
        pytest.param(["--implausible", "nan"], "--implausible", id="nan"),
        pytest.param(["--extra-field", "Video-Views"], "--extra-field", id="not-lower"),
        pytest.param(["--extra-field", "messages"], "--extra-field", id="a-metric"),
        pytest.param(["--quirk-seed", "x"], "--quirk-seed", id="seed"),
    ],
)
def test_the_sandbox_command_refuses_bad_quirks_in_one_line(
    tmp_path, monkeypatch: pytest.MonkeyPatch, args: list[str], option: str
):
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(cli, ["sandbox", "--dry-run", *args])

    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 2
    assert len(errors) == 1 and option in errors[0]
    assert "--help" in result.output


def test_the_sandbox_command_takes_every_quirk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "sandbox",
        "--dry-run",
        "--drop-hours",
        "0.1",
        "--skew-report",
        "0.25",
        "--extra-field",
        "video_views",
        "--implausible",
        "0.05",
        "--quirk-seed",
        "9",
    ]

    result = CliRunner().invoke(cli, args)
    plain = CliRunner().invoke(cli, ["sandbox", "--dry-run", "--seed", "7"])

    assert result.exit_code == 0, result.output
    assert (
        "quirks: drop-hours 0.1, skew-report 0.25, implausible 0.05, "
        "extra-field video_views, quirk seed 9"
    ) in " ".join(result.output.split())
    assert "quirks: none" in plain.output
