from __future__ import annotations

import pytest

from peachdw.errors import PayloadError
from peachdw.metrics import BUILTIN_METRICS
from peachdw.records import HourlyRow, _BadValue, parse_count, parse_metrics


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, 0, id="null-is-zero"),
        pytest.param(12, 12, id="int"),
        pytest.param("12", 12, id="numeric-string"),
        pytest.param(" 7 ", 7, id="padded-string"),
        pytest.param(3.0, 3, id="whole-float"),
        pytest.param("4.0", 4, id="whole-float-string"),
        pytest.param(2**63 - 1, 2**63 - 1, id="largest"),
    ],
)
def test_parse_count_accepts(value, expected):
    assert parse_count(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(-1, "negative", id="negative"),
        pytest.param("-3", "negative", id="negative-string"),
        pytest.param(1.5, "fractional", id="fractional"),
        pytest.param("2.5", "fractional", id="fractional-string"),
        pytest.param("abc", "non-numeric", id="letters"),
        pytest.param("", "non-numeric", id="empty-string"),
        pytest.param(True, "boolean", id="boolean"),
        pytest.param([1], "non-numeric", id="list"),
        pytest.param(2**63, r"larger than 2\^63-1", id="too-large"),
        pytest.param(float("nan"), "non-numeric", id="nan"),
    ],
)
def test_parse_count_rejects_with_reason(value, reason):
    with pytest.raises(_BadValue, match=reason):
        parse_count(value)


def row(campaign_id=1, unix_hour=100, **metrics):
    return {"campaign_id": campaign_id, "unix_hour": unix_hour, **metrics}


def test_missing_metric_is_zero_and_string_is_converted():
    window = parse_metrics({"data": [row(sessions="12")]}, 100, 101)
    assert len(window.rows) == 1
    stored = HourlyRow(*window.rows[0])
    assert stored.sessions == 12
    assert stored.messages == 0
    assert len(stored) == 2 + len(BUILTIN_METRICS)


def test_bad_value_rejects_only_that_row():
    payload = {"data": [row(1, 100, sessions="abc"), row(2, 100, sessions=5)]}
    window = parse_metrics(payload, 100, 101)
    assert [r[0] for r in window.rows] == [2]
    assert len(window.rejected) == 1
    rejection = window.rejected[0]
    assert (rejection.campaign_id, rejection.unix_hour, rejection.field) == (
        1,
        100,
        "sessions",
    )
    assert "non-numeric count 'abc'" in rejection.reason
    assert window.rejected_keys == {(1, 100)}
    assert not window.has_unkeyed_rejections


def test_row_without_hour_is_an_unkeyed_rejection():
    window = parse_metrics({"data": [{"campaign_id": 1, "sessions": 3}]}, 100, 101)
    assert window.rows == []
    assert window.has_unkeyed_rejections
    assert "unix_hour is missing" in window.rejected[0].reason


def test_duplicate_hour_keeps_the_last_and_is_counted():
    payload = {"data": [row(1, 100, sessions=1), row(1, 100, sessions=9)]}
    window = parse_metrics(payload, 100, 101)
    assert window.duplicates == 1
    assert [HourlyRow(*r).sessions for r in window.rows] == [9]


def test_rows_outside_the_window_are_dropped_and_counted():
    payload = {"data": [row(1, 99), row(1, 100), row(1, 101), row(2, 100)]}
    window = parse_metrics(payload, 100, 101, campaign_id=1)
    assert [r[:2] for r in window.rows] == [(1, 100)]
    assert window.out_of_window == 3
    assert window.received == 4


def test_unknown_field_is_recorded_as_drift():
    payload = {"data": [row(1, 100, video_views=3), row(2, 100, video_views=4)]}
    window = parse_metrics(payload, 100, 101)
    assert window.unknown_fields == {"video_views": 2}
    assert len(window.rows) == 2


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([], id="list"),
        pytest.param({"rows": []}, id="missing-data"),
        pytest.param({"data": None}, id="null-data"),
    ],
)
def test_body_without_data_list_is_a_payload_error(payload):
    with pytest.raises(PayloadError, match="no 'data' list"):
        parse_metrics(payload, 100, 101)
