-- Registration monitoring: each device's last outcome (so a device's state never needs a
-- history scan) and periodic per-account samples of the state counts (analytics).

CREATE TABLE device_state (
    device_id          TEXT PRIMARY KEY NOT NULL,
    account_id         TEXT NOT NULL,
    last_kind          TEXT NOT NULL,
    last_at_ms         INTEGER NOT NULL,
    last_reason        TEXT,
    last_registered_ms INTEGER
) WITHOUT ROWID;

-- Backfill from the history: the newest outcome of each device that still exists
-- (keepalive reachability and refreshes are not outcomes).
INSERT INTO device_state (device_id, account_id, last_kind, last_at_ms, last_reason,
                          last_registered_ms)
SELECT e.device_id, e.account_id, e.kind, e.at_ms, e.reason,
       (SELECT MAX(r.at_ms) FROM events r
         WHERE r.device_id = e.device_id AND r.kind = 'registered')
  FROM events e
 WHERE e.id IN (SELECT MAX(id) FROM events
                 WHERE device_id IS NOT NULL
                   AND kind NOT IN ('offline', 'online', 'refreshed')
                 GROUP BY device_id)
   AND EXISTS (SELECT 1 FROM devices d WHERE d.id = e.device_id);

CREATE TABLE state_samples (
    account_id   TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    total        INTEGER NOT NULL,
    registered   INTEGER NOT NULL,
    offline      INTEGER NOT NULL,
    expired      INTEGER NOT NULL,
    unregistered INTEGER NOT NULL,
    invalid      INTEGER NOT NULL,
    provisioning INTEGER NOT NULL,
    PRIMARY KEY (account_id, at_ms)
) WITHOUT ROWID;
CREATE INDEX state_samples_at ON state_samples (at_ms);
