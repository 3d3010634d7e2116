-- The targeting tier is made of parts (audience, geo, device), each set by its own rules
-- and joined into the tier ("Retargeting · US · Mobile"): see TIER_PARTS in rules.py.

ALTER TABLE hierarchy_rules ADD COLUMN targeting_audience TEXT;
ALTER TABLE hierarchy_rules ADD COLUMN targeting_geo TEXT;
ALTER TABLE hierarchy_rules ADD COLUMN targeting_device TEXT;
