-- Reports have tabs (Summary, Daily, Hierarchy) and are cut in a time zone: each export
-- records the rows it wrote per tab, as a JSON object, and the zone its days were cut in.

ALTER TABLE export_history ADD COLUMN tab_rows TEXT;
ALTER TABLE export_history ADD COLUMN timezone TEXT;
