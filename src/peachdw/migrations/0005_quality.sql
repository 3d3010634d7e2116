-- Data quality: the API's own daily reports, kept to reconcile the hourly data against,
-- and syncs of type 'heal' that re-read only the hours that need it.

-- GET /admin/reports rows, one per campaign and UTC day (the API cuts its reports in UTC).
-- No foreign key to campaigns: rows for campaigns not (yet) listed are skipped on load.
CREATE TABLE api_reports (
    campaign_id INTEGER NOT NULL,
    day TEXT NOT NULL,
    sessions INTEGER NOT NULL CHECK (sessions >= 0),
    registrations INTEGER NOT NULL CHECK (registrations >= 0),
    converted_users INTEGER NOT NULL CHECK (converted_users >= 0),
    messages INTEGER NOT NULL CHECK (messages >= 0),
    fetched_at TEXT NOT NULL,
    sync_id INTEGER REFERENCES sync_history (id),
    PRIMARY KEY (campaign_id, day)
) WITHOUT ROWID;

-- The days whose reports were read: a campaign missing from a read day had no activity.
CREATE TABLE api_report_days (
    day TEXT PRIMARY KEY,
    fetched_at TEXT NOT NULL,
    sync_id INTEGER REFERENCES sync_history (id)
);

-- sync_type gains 'heal'. SQLite cannot change a CHECK constraint in place, so the table
-- is copied into a new one with the wider check and renamed. Rows of other tables refer
-- to it by id; the migration checks their foreign keys once the copy is in place.

CREATE TABLE sync_history_new (
    id INTEGER PRIMARY KEY,
    sync_type TEXT NOT NULL
        CHECK (sync_type IN ('incremental', 'full', 'historical', 'heal')),
    status TEXT NOT NULL
        CHECK (status IN ('running', 'success', 'partial', 'failed', 'interrupted')),
    started_at TEXT NOT NULL,
    finished_at TEXT,
    -- The metrics window the sync covered, in unix hours, end exclusive.
    window_start_hour INTEGER,
    window_end_hour INTEGER,
    campaigns_seen INTEGER NOT NULL DEFAULT 0 CHECK (campaigns_seen >= 0),
    campaigns_inserted INTEGER NOT NULL DEFAULT 0 CHECK (campaigns_inserted >= 0),
    campaigns_updated INTEGER NOT NULL DEFAULT 0 CHECK (campaigns_updated >= 0),
    campaigns_deleted INTEGER NOT NULL DEFAULT 0 CHECK (campaigns_deleted >= 0),
    records_processed INTEGER NOT NULL DEFAULT 0 CHECK (records_processed >= 0),
    records_inserted INTEGER NOT NULL DEFAULT 0 CHECK (records_inserted >= 0),
    records_updated INTEGER NOT NULL DEFAULT 0 CHECK (records_updated >= 0),
    records_unchanged INTEGER NOT NULL DEFAULT 0 CHECK (records_unchanged >= 0),
    records_rejected INTEGER NOT NULL DEFAULT 0 CHECK (records_rejected >= 0),
    records_duplicate INTEGER NOT NULL DEFAULT 0 CHECK (records_duplicate >= 0),
    records_out_of_window INTEGER NOT NULL DEFAULT 0 CHECK (records_out_of_window >= 0),
    records_zeroed INTEGER NOT NULL DEFAULT 0 CHECK (records_zeroed >= 0),
    api_calls INTEGER NOT NULL DEFAULT 0 CHECK (api_calls >= 0),
    api_retries INTEGER NOT NULL DEFAULT 0 CHECK (api_retries >= 0),
    api_wait_seconds REAL NOT NULL DEFAULT 0 CHECK (api_wait_seconds >= 0),
    -- The API the sync read from (never with credentials), and the process that ran it.
    api_base_url TEXT,
    pid INTEGER,
    error_message TEXT,
    campaign_id INTEGER,
    records_restated INTEGER NOT NULL DEFAULT 0 CHECK (records_restated >= 0),
    restated_oldest_hour INTEGER
);

INSERT INTO sync_history_new (
    id, sync_type, status, started_at, finished_at, window_start_hour, window_end_hour,
    campaigns_seen, campaigns_inserted, campaigns_updated, campaigns_deleted,
    records_processed, records_inserted, records_updated, records_unchanged,
    records_rejected, records_duplicate, records_out_of_window, records_zeroed,
    api_calls, api_retries, api_wait_seconds, api_base_url, pid, error_message,
    campaign_id, records_restated, restated_oldest_hour
)
SELECT
    id, sync_type, status, started_at, finished_at, window_start_hour, window_end_hour,
    campaigns_seen, campaigns_inserted, campaigns_updated, campaigns_deleted,
    records_processed, records_inserted, records_updated, records_unchanged,
    records_rejected, records_duplicate, records_out_of_window, records_zeroed,
    api_calls, api_retries, api_wait_seconds, api_base_url, pid, error_message,
    campaign_id, records_restated, restated_oldest_hour
FROM sync_history;

DROP TABLE sync_history;
ALTER TABLE sync_history_new RENAME TO sync_history;
CREATE INDEX sync_history_started ON sync_history (started_at);
