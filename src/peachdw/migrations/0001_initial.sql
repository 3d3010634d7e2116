-- The warehouse as first released: campaigns and their hourly metrics, the hierarchy, and
-- the history of every sync and export.

CREATE TABLE sync_history (
    id INTEGER PRIMARY KEY,
    sync_type TEXT NOT NULL CHECK (sync_type IN ('incremental', 'full', 'historical')),
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
    error_message TEXT
);

CREATE INDEX sync_history_started ON sync_history (started_at);

CREATE TABLE campaigns (
    -- Fields exactly as the API sends them (contract: GET /admin/campaigns).
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    tracking_url TEXT,
    is_serving INTEGER NOT NULL DEFAULT 0 CHECK (is_serving IN (0, 1)),
    serving_url TEXT,
    traffic_weight INTEGER CHECK (traffic_weight >= 0),
    deleted_at TEXT,
    created_at TEXT,
    updated_at TEXT,
    slug TEXT,
    path TEXT,
    -- Warehouse bookkeeping. A campaign gone from the listing, or sent with deleted_at,
    -- is soft-deleted: the row and its hourly data stay.
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    first_sync_id INTEGER REFERENCES sync_history (id),
    last_sync_id INTEGER REFERENCES sync_history (id)
);

CREATE INDEX campaigns_name ON campaigns (name);
CREATE INDEX campaigns_is_serving ON campaigns (is_serving);

-- One row per campaign and unix hour. WITHOUT ROWID keeps the primary key as the table's
-- only b-tree, and the lineage is an integer reference to the sync that last wrote the row
-- rather than a timestamp on every row. An hour with all metrics zero is not stored: the
-- contract reads a missing hour as zeros. A time range across all campaigns is served by
-- this same key, driven from `campaigns` (see docs/schema.md).
CREATE TABLE hourly_data (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    unix_hour INTEGER NOT NULL CHECK (unix_hour >= 0),
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
    sync_id INTEGER REFERENCES sync_history (id),
    PRIMARY KEY (campaign_id, unix_hour)
) WITHOUT ROWID;

-- The ledger of metrics windows: each is written in the same transaction as its rows, so
-- a window marked done is a window whose rows are all there.
CREATE TABLE sync_windows (
    sync_id INTEGER NOT NULL REFERENCES sync_history (id),
    start_hour INTEGER NOT NULL,
    end_hour INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    records_inserted INTEGER NOT NULL DEFAULT 0 CHECK (records_inserted >= 0),
    records_updated INTEGER NOT NULL DEFAULT 0 CHECK (records_updated >= 0),
    records_unchanged INTEGER NOT NULL DEFAULT 0 CHECK (records_unchanged >= 0),
    records_rejected INTEGER NOT NULL DEFAULT 0 CHECK (records_rejected >= 0),
    attempts INTEGER NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    error_message TEXT,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (sync_id, start_hour),
    CHECK (end_hour > start_hour)
);

-- Rows the API sent that could not be stored, with the reason, per sync.
CREATE TABLE rejected_rows (
    id INTEGER PRIMARY KEY,
    sync_id INTEGER NOT NULL REFERENCES sync_history (id),
    campaign_id INTEGER,
    unix_hour INTEGER,
    field TEXT,
    reason TEXT NOT NULL
);

CREATE INDEX rejected_rows_sync ON rejected_rows (sync_id);

-- Fields the API sent that the warehouse does not know yet (schema drift).
CREATE TABLE schema_drift (
    endpoint TEXT NOT NULL,
    field TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    first_sync_id INTEGER REFERENCES sync_history (id),
    last_sync_id INTEGER REFERENCES sync_history (id),
    occurrences INTEGER NOT NULL DEFAULT 0 CHECK (occurrences >= 0),
    PRIMARY KEY (endpoint, field)
);

CREATE TABLE hierarchy_rules (
    id INTEGER PRIMARY KEY,
    -- Stable name of a shipped default rule, so loading the defaults again is idempotent.
    -- NULL for rules a user added.
    rule_key TEXT UNIQUE,
    match_field TEXT NOT NULL DEFAULT 'name'
        CHECK (match_field IN ('name', 'slug', 'path', 'tracking_url', 'serving_url')),
    match_type TEXT NOT NULL
        CHECK (match_type IN ('exact', 'prefix', 'contains', 'glob', 'regex', 'campaign_id')),
    pattern TEXT NOT NULL,
    network TEXT,
    domain TEXT,
    placement TEXT,
    targeting TEXT,
    special TEXT,
    priority INTEGER NOT NULL DEFAULT 100,
    confidence REAL NOT NULL DEFAULT 1.0 CHECK (confidence BETWEEN 0 AND 1),
    is_active INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    note TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX hierarchy_rules_active ON hierarchy_rules (is_active, priority);

CREATE TABLE campaign_hierarchy (
    campaign_id INTEGER PRIMARY KEY REFERENCES campaigns (id),
    network TEXT NOT NULL,
    domain TEXT NOT NULL,
    placement TEXT NOT NULL,
    targeting TEXT NOT NULL,
    special TEXT NOT NULL,
    mapping_confidence REAL NOT NULL CHECK (mapping_confidence BETWEEN 0 AND 1),
    -- The rule behind each tier; NULL where the fallback value was used.
    network_rule_id INTEGER REFERENCES hierarchy_rules (id) ON DELETE SET NULL,
    domain_rule_id INTEGER REFERENCES hierarchy_rules (id) ON DELETE SET NULL,
    placement_rule_id INTEGER REFERENCES hierarchy_rules (id) ON DELETE SET NULL,
    targeting_rule_id INTEGER REFERENCES hierarchy_rules (id) ON DELETE SET NULL,
    special_rule_id INTEGER REFERENCES hierarchy_rules (id) ON DELETE SET NULL,
    is_manual INTEGER NOT NULL DEFAULT 0 CHECK (is_manual IN (0, 1)),
    -- The campaign name the mapping was computed from; a rename triggers a new mapping.
    mapped_name TEXT NOT NULL,
    mapped_at TEXT NOT NULL
);

CREATE INDEX campaign_hierarchy_tiers
    ON campaign_hierarchy (network, domain, placement, targeting, special);

CREATE TABLE export_history (
    id INTEGER PRIMARY KEY,
    format TEXT NOT NULL,
    report TEXT NOT NULL,
    target TEXT,
    period_start TEXT,
    period_end TEXT,
    rows_written INTEGER NOT NULL DEFAULT 0 CHECK (rows_written >= 0),
    status TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_ms INTEGER CHECK (duration_ms >= 0),
    error_message TEXT
);
