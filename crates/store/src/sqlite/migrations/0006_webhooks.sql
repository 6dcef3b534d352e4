-- Webhook subscriptions and their durable outbox. The delivery worker fans history events
-- out into `webhook_deliveries` and moves `webhook_cursor` in the same transaction, so a
-- crash never loses or repeats a fan-out; deliveries survive restarts until answered.

CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY NOT NULL,
    account_id      TEXT NOT NULL,
    -- The normalised document as JSON (url, events, http_verb, retries, custom_data, ...).
    document        TEXT NOT NULL,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    secret          TEXT NOT NULL,
    -- Failed attempts in a row since the last success or re-enable.
    failure_streak  INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    modified_ms     INTEGER NOT NULL
);
CREATE INDEX webhooks_account ON webhooks (account_id, id);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    hook_id         TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    event_id        INTEGER NOT NULL,
    event_name      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    delivered_ms    INTEGER
);
-- One delivery per hook and event, whatever happens to the fan-out.
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (hook_id, event_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_account ON webhook_deliveries (account_id);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_ms)
    WHERE state <> 'pending';

CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hook_id     TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    delivery_id INTEGER NOT NULL,
    event_id    INTEGER NOT NULL,
    event_name  TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    http_status INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    result      TEXT NOT NULL CHECK (result IN ('success', 'failure'))
);
CREATE INDEX webhook_attempts_account ON webhook_attempts (account_id, id);
CREATE INDEX webhook_attempts_hook ON webhook_attempts (hook_id, id);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at_ms);

-- One row: the id of the last history event fanned out.
CREATE TABLE webhook_cursor (
    singleton     INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    last_event_id INTEGER NOT NULL
);
