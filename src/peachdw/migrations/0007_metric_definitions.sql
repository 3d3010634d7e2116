-- Metrics added to a warehouse (metrics.add), after the 14 built-in ones that metrics.py
-- declares. Each is also a column of hourly_data and daily_totals, added in the same
-- transaction as its row here; metrics.of() reads this table, so every layer stores, sums
-- and exports the metric from then on.
CREATE TABLE metric_definitions (
    name TEXT PRIMARY KEY,
    -- Its place after the built-ins: 1, 2, 3 ... in the order they were added, which is
    -- also the order of the columns.
    position INTEGER NOT NULL UNIQUE CHECK (position >= 1),
    added_at TEXT NOT NULL,
    -- When the API was first seen sending the field (schema_drift), if it was before.
    first_seen_at TEXT
);

-- A field the API sent that has since become a metric: kept for its history, no longer
-- shown as drift.
ALTER TABLE schema_drift ADD COLUMN adopted_at TEXT;

-- Ratios are derived from stored counts, never stored: the three rates the exports show,
-- per campaign and day of the daily rollup (in the zone rollup_state names). NULL where
-- the denominator is 0. For a longer period divide its sums; an average of daily rates
-- weighs a quiet day like a busy one.
CREATE VIEW campaign_day_rates AS
SELECT
    campaign_id,
    day,
    CASE WHEN sessions > 0 THEN CAST(registrations AS REAL) / sessions END
        AS registrations_per_session,
    CASE WHEN registrations > 0 THEN CAST(converted_users AS REAL) / registrations END
        AS converted_per_registration,
    CASE WHEN total_user_chats > 0 THEN CAST(messages AS REAL) / total_user_chats END
        AS messages_per_user_chat
FROM daily_totals;
