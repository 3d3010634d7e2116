-- Since when the API's report has said what it says now. Every sync reads the reports of
-- the reconciled days again; a read that finds the same figures leaves these columns, so
-- that a heal which re-read a day after (or with) the figures held now still counts as
-- having compared them, however many syncs have read the same report since.

-- The sync that first read this campaign-day's figures as held now.
ALTER TABLE api_reports ADD COLUMN figures_sync_id INTEGER REFERENCES sync_history (id);

-- The sync that first read the day's report as held now: the same campaigns, with the
-- same figures. A campaign the report leaves out (no activity) has no row of its own.
ALTER TABLE api_report_days ADD COLUMN figures_sync_id INTEGER
    REFERENCES sync_history (id);

-- Rows read before this version keep the sync that last read them: a later heal is
-- needed before a difference counts as the API's own.
UPDATE api_reports SET figures_sync_id = sync_id;
UPDATE api_report_days SET figures_sync_id = sync_id;
