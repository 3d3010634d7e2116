-- status gains 'unresolved': a heal that read every hour it planned, yet left campaign-days
-- that differ from the API's reports or hours never read. It is not 'success' (the heal
-- did not settle what it was for) and not 'failed' or 'partial' (every window it planned
-- was read, and its reports too); its error_message says which case it is and what to do.
--
-- SQLite cannot change a CHECK constraint in place, so the table is copied into a new one
-- with the wider check and renamed, as migration 5 did. Rows of other tables refer to it
-- by id; the migration checks their foreign keys once the copy is in place.

CREATE TABLE sync_history_new (
    id INTEGER PRIMARY KEY,
    sync_type TEXT NOT NULL
        CHECK (sync_type IN ('incremental', 'full', 'historical', 'heal')),
    status TEXT NOT NULL
        CHECK (status IN (
            'running', 'success', 'partial', 'failed', 'interrupted', 'unresolved'
        )),
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
