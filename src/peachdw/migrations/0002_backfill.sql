-- Historical backfills and restatements.
--
-- A sync may be narrowed to one campaign; its windows record that scope, so a resumed
-- backfill only skips windows done for the same campaigns. Restated rows (stored hours
-- whose values the API changed) are counted, with the oldest such hour, so an analyst can
-- see how far back the API still changes numbers.

ALTER TABLE sync_history ADD COLUMN campaign_id INTEGER;
ALTER TABLE sync_history ADD COLUMN records_restated INTEGER NOT NULL DEFAULT 0
    CHECK (records_restated >= 0);
ALTER TABLE sync_history ADD COLUMN restated_oldest_hour INTEGER;

ALTER TABLE sync_windows ADD COLUMN campaign_id INTEGER;

CREATE INDEX sync_windows_span ON sync_windows (status, start_hour, end_hour);
