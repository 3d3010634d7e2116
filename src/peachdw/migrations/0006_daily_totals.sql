-- A daily rollup of hourly_data: one row per campaign and day in the reporting time zone,
-- kept in step with every write of hourly_data in the same transaction (see rollup.py and
-- docs/performance.md). Monthly totals and daily reports read its ~73,000 rows a year
-- instead of summing 1.5 million hours.
--
-- A row exists for a campaign and day that has stored hours; since an all-zero hour is
-- never stored, that is a day whose totals are not all zero.

CREATE TABLE daily_totals (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    -- The local day in the zone rollup_state names, as YYYY-MM-DD.
    day TEXT NOT NULL,
    sessions INTEGER NOT NULL DEFAULT 0 CHECK (sessions >= 0),
    registrations INTEGER NOT NULL DEFAULT 0 CHECK (registrations >= 0),
    email_accounts INTEGER NOT NULL DEFAULT 0 CHECK (email_accounts >= 0),
    google_accounts INTEGER NOT NULL DEFAULT 0 CHECK (google_accounts >= 0),
    total_accounts INTEGER NOT NULL DEFAULT 0 CHECK (total_accounts >= 0),
    credit_cards INTEGER NOT NULL DEFAULT 0 CHECK (credit_cards >= 0),
    payment_methods INTEGER NOT NULL DEFAULT 0 CHECK (payment_methods >= 0),
    converted_users INTEGER NOT NULL DEFAULT 0 CHECK (converted_users >= 0),
    terms_acceptances INTEGER NOT NULL DEFAULT 0 CHECK (terms_acceptances >= 0),
    messages INTEGER NOT NULL DEFAULT 0 CHECK (messages >= 0),
    companion_chats INTEGER NOT NULL DEFAULT 0 CHECK (companion_chats >= 0),
    chat_room_user_chats INTEGER NOT NULL DEFAULT 0 CHECK (chat_room_user_chats >= 0),
    total_user_chats INTEGER NOT NULL DEFAULT 0 CHECK (total_user_chats >= 0),
    media INTEGER NOT NULL DEFAULT 0 CHECK (media >= 0),
    PRIMARY KEY (campaign_id, day)
) WITHOUT ROWID;

-- The zone daily_totals is cut in. NULL: not built, and reports sum the hours instead. A
-- migration cannot know reporting.timezone, so it leaves the rollup unbuilt; the next sync
-- builds it under its lock, and builds it again whenever the setting changes.
CREATE TABLE rollup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    zone TEXT,
    built_at TEXT
);

INSERT INTO rollup_state (id, zone, built_at) VALUES (1, NULL, NULL);
