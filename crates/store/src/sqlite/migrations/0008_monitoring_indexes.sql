-- A census of an account's devices (dashboard, status list, analytics samples) reads two
-- ordered index ranges and merges them, instead of one table seek per device:
-- `devices_summary` covers every column a summary shows (it also serves what
-- `devices_account` did, which it replaces), `device_state_account` covers the outcomes.

CREATE INDEX devices_summary ON devices (account_id, id, name, enabled, device_type, owner_id,
                                         sip_username, sip_expire_seconds, created_ms);
DROP INDEX devices_account;
CREATE INDEX device_state_account ON device_state (account_id, device_id, last_kind, last_at_ms,
                                                   last_reason, last_registered_ms);
