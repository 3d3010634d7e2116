from __future__ import annotations

from collections import Counter

from peachdw import loader
from peachdw.db import transaction
from peachdw.metrics import BUILTIN_METRICS
from peachdw.records import Campaign, HourlyRow, MetricsWindow, Rejection


def hour(cid, unix_hour, sessions, **others):
    values = {name: 0 for name in BUILTIN_METRICS}
    values.update(sessions=sessions, **others)
    return HourlyRow(cid, unix_hour, *values.values())


def add_campaigns(conn, *ids):
    with transaction(conn):
        loader.upsert_campaigns(
            conn, [Campaign(id=i, name=f"C{i}", is_serving=True) for i in ids], None
        )


def load(conn, rows, start=100, end=110, rejected=(), sync_id=None):
    window = MetricsWindow(start, end, None, rows=list(rows), rejected=list(rejected))
    with transaction(conn):
        plan = loader.plan_hourly(conn, window, loader.known_campaign_ids(conn))
        loader.apply_hourly(conn, plan, sync_id)
    return plan


def stored(conn):
    return {
        (r[0], r[1]): r[2]
        for r in conn.execute(
            "SELECT campaign_id, unix_hour, sessions FROM hourly_data"
        )
    }


def test_insert_then_reload_is_unchanged_and_writes_nothing(warehouse):
    add_campaigns(warehouse, 1, 2)
    rows = [hour(1, 100, 5), hour(1, 101, 6), hour(2, 100, 7)]
    first = load(warehouse, rows)
    assert (first.inserted, first.updated, first.unchanged) == (3, 0, 0)

    changes_before = warehouse.total_changes
    second = load(warehouse, rows)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 3)
    assert warehouse.total_changes == changes_before
    assert stored(warehouse) == {(1, 100): 5, (1, 101): 6, (2, 100): 7}


def test_changed_value_is_updated_with_new_lineage(warehouse):
    add_campaigns(warehouse, 1)
    load(warehouse, [hour(1, 100, 5)])
    with transaction(warehouse):
        sync_id = warehouse.execute(
            "INSERT INTO sync_history (sync_type, status, started_at) "
            "VALUES ('incremental', 'running', 'now')"
        ).lastrowid
    plan = load(warehouse, [hour(1, 100, 8)], sync_id=sync_id)
    assert (plan.inserted, plan.updated) == (0, 1)
    row = warehouse.execute("SELECT sessions, sync_id FROM hourly_data").fetchone()
    assert tuple(row) == (8, sync_id)


def test_zero_hours_are_not_stored_and_missing_hours_become_zero(warehouse):
    add_campaigns(warehouse, 1)
    load(warehouse, [hour(1, 100, 5), hour(1, 101, 6), hour(1, 102, 0)])
    assert stored(warehouse) == {(1, 100): 5, (1, 101): 6}

    # The API no longer sends hour 101: the contract reads that as zeros.
    plan = load(warehouse, [hour(1, 100, 5)])
    assert plan.zeroed == 1
    assert stored(warehouse) == {(1, 100): 5}


def test_rejected_hour_keeps_its_stored_value(warehouse):
    add_campaigns(warehouse, 1)
    load(warehouse, [hour(1, 100, 5), hour(1, 101, 6)])
    rejection = Rejection("sessions: non-numeric count 'abc'", 1, 101, "sessions")
    plan = load(warehouse, [hour(1, 100, 5)], rejected=[rejection])
    assert plan.zeroed == 0
    assert stored(warehouse) == {(1, 100): 5, (1, 101): 6}


def test_unplaceable_rejection_zeroes_nothing(warehouse):
    add_campaigns(warehouse, 1)
    load(warehouse, [hour(1, 100, 5), hour(1, 101, 6)])
    plan = load(warehouse, [], rejected=[Rejection("row is list, not an object")])
    assert plan.zeroed == 0
    assert len(stored(warehouse)) == 2


def test_hours_outside_the_window_are_left_alone(warehouse):
    add_campaigns(warehouse, 1)
    load(warehouse, [hour(1, 100, 5), hour(1, 150, 9)], start=100, end=200)
    load(warehouse, [hour(1, 100, 5)], start=100, end=110)
    assert stored(warehouse) == {(1, 100): 5, (1, 150): 9}


def test_unknown_campaign_is_rejected_not_stored(warehouse):
    add_campaigns(warehouse, 1)
    plan = load(warehouse, [hour(1, 100, 5), hour(77, 100, 3)])
    assert plan.inserted == 1
    assert [r.campaign_id for r in plan.unknown_campaign] == [77]
    assert "not in the campaign listing" in plan.unknown_campaign[0].reason


def campaign(**fields):
    return Campaign.model_validate(fields)


def test_field_not_sent_keeps_its_stored_value(warehouse):
    with transaction(warehouse):
        loader.upsert_campaigns(
            warehouse,
            [campaign(id=1, name="A", description="kept", traffic_weight=40)],
            None,
        )
    with transaction(warehouse):
        counts = loader.upsert_campaigns(
            warehouse, [campaign(id=1, name="A renamed")], None
        )
    row = warehouse.execute(
        "SELECT name, description, traffic_weight FROM campaigns"
    ).fetchone()
    assert tuple(row) == ("A renamed", "kept", 40)
    assert (counts.updated, counts.changed_ids) == (1, [1])


def test_unchanged_campaign_is_not_rewritten(warehouse):
    listing = [campaign(id=1, name="A", is_serving=True)]
    with transaction(warehouse):
        loader.upsert_campaigns(warehouse, listing, None)
    before = warehouse.total_changes
    with transaction(warehouse):
        counts = loader.upsert_campaigns(warehouse, listing, None)
    assert (counts.unchanged, counts.updated, counts.inserted) == (1, 0, 0)
    assert warehouse.total_changes == before


def test_vanished_or_deleted_campaign_is_soft_deleted_with_its_hours(warehouse):
    add_campaigns(warehouse, 1, 2, 3)
    load(warehouse, [hour(1, 100, 5), hour(2, 100, 6)])
    listing = [
        campaign(id=1, name="C1", deleted_at="2025-08-01T00:00:00Z"),
        campaign(id=3, name="C3"),
    ]
    with transaction(warehouse):
        counts = loader.upsert_campaigns(warehouse, listing, None)
    assert counts.deleted == 2
    flags = dict(warehouse.execute("SELECT id, is_deleted FROM campaigns").fetchall())
    assert flags == {1: 1, 2: 1, 3: 0}
    assert warehouse.execute(
        "SELECT deleted_at FROM campaigns WHERE id = 2"
    ).fetchone()[0]
    assert stored(warehouse) == {(1, 100): 5, (2, 100): 6}


def test_incomplete_listing_deletes_nothing(warehouse):
    add_campaigns(warehouse, 1, 2)
    with transaction(warehouse):
        counts = loader.upsert_campaigns(
            warehouse,
            [campaign(id=1, name="C1", is_serving=True)],
            None,
            listing_complete=False,
        )
    assert counts.deleted == 0


def test_drift_accumulates_per_field(warehouse):
    with transaction(warehouse):
        loader.record_drift(warehouse, "/admin/metrics", Counter(video_views=3), None)
        loader.record_drift(warehouse, "/admin/metrics", Counter(video_views=2), None)
    row = warehouse.execute("SELECT field, occurrences FROM schema_drift").fetchone()
    assert tuple(row) == ("video_views", 5)


def test_campaign_absent_from_the_whole_window_keeps_its_hours(warehouse):
    add_campaigns(warehouse, 1, 2)
    load(warehouse, [hour(1, 100, 5), hour(2, 100, 6)])
    plan = load(warehouse, [hour(1, 100, 5)])
    assert plan.zeroed == 0
    assert stored(warehouse) == {(1, 100): 5, (2, 100): 6}


def test_listing_missing_most_campaigns_deletes_none(warehouse):
    add_campaigns(warehouse, *range(1, 21))
    with transaction(warehouse):
        counts = loader.upsert_campaigns(
            warehouse, [campaign(id=i, name=f"C{i}") for i in range(1, 8)], None
        )
    assert (counts.deleted, counts.vanished_kept) == (0, 13)
    deleted = warehouse.execute("SELECT count(*) FROM campaigns WHERE is_deleted = 1")
    assert deleted.fetchone()[0] == 0


def test_plan_keeps_the_stored_values_of_the_hours_it_changes_or_zeroes(warehouse):
    add_campaigns(warehouse, 1)
    load(
        warehouse, [hour(1, 100, 5), hour(1, 101, 6), hour(1, 102, 7), hour(1, 103, 8)]
    )

    # 101 changes, 102 comes back as zeros and 103 is left out: both are deleted.
    plan = load(warehouse, [hour(1, 100, 5), hour(1, 101, 9), hour(1, 102, 0)])
    assert [row[:3] for row in plan.updates] == [(1, 101, 9)]
    assert sorted(plan.deletes) == [(1, 102), (1, 103)]
    assert {key: values[0] for key, values in plan.previous.items()} == {
        (1, 101): 6,
        (1, 102): 7,
        (1, 103): 8,
    }
    assert all(len(values) == len(BUILTIN_METRICS) for values in plan.previous.values())
