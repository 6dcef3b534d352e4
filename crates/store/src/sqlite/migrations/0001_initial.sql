-- Keys ending in `_key` hold the lower-cased form used for case-insensitive lookups; they
-- are computed in Rust (full Unicode lower-casing) so every backend folds the same way.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    realm       TEXT NOT NULL,
    realm_key   TEXT NOT NULL UNIQUE,
    parent_id   TEXT,
    created_ms  INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL
);
CREATE INDEX accounts_parent ON accounts (parent_id);

CREATE TABLE devices (
    id                 TEXT PRIMARY KEY NOT NULL,
    account_id         TEXT NOT NULL,
    name               TEXT NOT NULL,
    enabled            INTEGER NOT NULL,
    device_type        TEXT NOT NULL,
    owner_id           TEXT,
    sip_method         TEXT NOT NULL,
    sip_username       TEXT,
    sip_username_key   TEXT,
    sip_password       TEXT,
    sip_ip             TEXT,
    sip_expire_seconds INTEGER,
    document           TEXT NOT NULL,
    created_ms         INTEGER NOT NULL,
    modified_ms        INTEGER NOT NULL
);
CREATE INDEX devices_account ON devices (account_id, id);
CREATE INDEX devices_username ON devices (account_id, sip_username_key);
-- Digest credentials are unique per account (= per realm); IP devices may share a username.
CREATE UNIQUE INDEX devices_username_unique ON devices (account_id, sip_username_key)
    WHERE sip_method = 'password' AND sip_username_key IS NOT NULL;
CREATE INDEX devices_ip ON devices (sip_ip) WHERE sip_ip IS NOT NULL;
CREATE INDEX devices_owner ON devices (owner_id) WHERE owner_id IS NOT NULL;
CREATE INDEX devices_modified ON devices (modified_ms);

CREATE TABLE bindings (
    device_id        TEXT NOT NULL CHECK (device_id <> ''),
    key              TEXT NOT NULL CHECK (key <> ''),
    account_id       TEXT NOT NULL,
    aor              TEXT NOT NULL,
    contact          TEXT NOT NULL,
    contact_params   TEXT NOT NULL,
    instance         TEXT,
    reg_id           INTEGER,
    q_milli          INTEGER,
    expires_at_ms    INTEGER NOT NULL,
    registered_at_ms INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    call_id          TEXT NOT NULL,
    cseq             INTEGER NOT NULL,
    user_agent       TEXT,
    transport        TEXT NOT NULL,
    received         TEXT NOT NULL,
    local            TEXT NOT NULL,
    connection_id    INTEGER,
    path             TEXT NOT NULL,
    PRIMARY KEY (device_id, key)
) WITHOUT ROWID;
CREATE INDEX bindings_expires ON bindings (expires_at_ms);
CREATE INDEX bindings_account ON bindings (account_id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    device_id   TEXT,
    binding_key TEXT,
    contact     TEXT,
    address     TEXT,
    transport   TEXT,
    user_agent  TEXT,
    reason      TEXT
);
CREATE INDEX events_account ON events (account_id, id);
CREATE INDEX events_device ON events (device_id, id) WHERE device_id IS NOT NULL;

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);
CREATE INDEX api_keys_account ON api_keys (account_id);
