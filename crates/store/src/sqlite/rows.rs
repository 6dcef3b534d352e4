//! Mapping between rows and domain records. A row this build cannot read becomes a
//! `FromSqlConversionFailure` (reported as `StoreError::Backend`), never a panic.

use std::net::SocketAddr;

use rusqlite::types::Type;
use rusqlite::{Connection, Params, Row, params};
use switchboard_model::{
    AccessLists, Account, Binding, Device, DeviceOutcome, DeviceSip, Event, EventKind,
    SipAuthMethod, Transport, User,
};

use crate::{ApiKey, DeviceSummary};

#[derive(Debug)]
struct Malformed(String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed row: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

fn malformed(column: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, Box::new(Malformed(what)))
}

/// Runs a query and maps every row, stopping at the first one that cannot be read.
pub(crate) fn collect<T>(
    connection: &Connection,
    sql: &str,
    params: impl Params,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// Like [`collect`], for at most one row.
pub(crate) fn first<T>(
    connection: &Connection,
    sql: &str,
    params: impl Params,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    match rows.next()? {
        Some(row) => map(row).map(Some),
        None => Ok(None),
    }
}

/// Lower-cases for case-insensitive keys, the same way in every backend.
pub(crate) fn fold(text: &str) -> String {
    text.to_lowercase()
}

// ---- accounts ----------------------------------------------------------------------------

pub(crate) const ACCESS_LIST_COLUMNS: &str = "account_id, allow, deny, revision, modified_ms";

pub(crate) fn access_lists(row: &Row<'_>) -> rusqlite::Result<AccessLists> {
    let list = |column: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(column)?;
        serde_json::from_str(&text)
            .map_err(|error| malformed(column, format!("access list: {error}")))
    };
    Ok(AccessLists {
        account_id: row.get(0)?,
        allow: list(1)?,
        deny: list(2)?,
        revision: u64::try_from(row.get::<_, i64>(3)?).unwrap_or_default(),
        modified_ms: row.get(4)?,
    })
}

pub(crate) const ACCOUNT_COLUMNS: &str = "id, name, realm, parent_id, created_ms, modified_ms";

pub(crate) fn account(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        realm: row.get(2)?,
        parent_id: row.get(3)?,
        created_ms: row.get(4)?,
        modified_ms: row.get(5)?,
    })
}

pub(crate) fn insert_account(connection: &Connection, account: &Account) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO accounts (id, name, realm, realm_key, parent_id, created_ms, modified_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            account.id,
            account.name,
            account.realm,
            fold(&account.realm),
            account.parent_id,
            account.created_ms,
            account.modified_ms,
        ])?;
    Ok(())
}

/// Returns how many rows changed (0 = missing).
pub(crate) fn update_account(
    connection: &Connection,
    account: &Account,
) -> rusqlite::Result<usize> {
    connection
        .prepare_cached(
            "UPDATE accounts SET name = ?2, realm = ?3, realm_key = ?4, parent_id = ?5,
                 created_ms = ?6, modified_ms = ?7
             WHERE id = ?1",
        )?
        .execute(params![
            account.id,
            account.name,
            account.realm,
            fold(&account.realm),
            account.parent_id,
            account.created_ms,
            account.modified_ms,
        ])
}

// ---- devices -----------------------------------------------------------------------------

pub(crate) const DEVICE_COLUMNS: &str = "id, account_id, name, enabled, device_type, owner_id, sip_method, \
     sip_username, sip_password, sip_ip, sip_expire_seconds, document, created_ms, modified_ms";

pub(crate) fn device(row: &Row<'_>) -> rusqlite::Result<Device> {
    let method: String = row.get(6)?;
    let method = SipAuthMethod::parse(&method)
        .ok_or_else(|| malformed(6, format!("sip_method {method:?}")))?;
    let expire_seconds: Option<i64> = row.get(10)?;
    let expire_seconds = expire_seconds
        .map(|seconds| {
            u32::try_from(seconds)
                .map_err(|_| malformed(10, format!("sip_expire_seconds {seconds}")))
        })
        .transpose()?;
    let document: String = row.get(11)?;
    let document = serde_json::from_str(&document)
        .map_err(|error| malformed(11, format!("document: {error}")))?;
    Ok(Device {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        enabled: row.get(3)?,
        device_type: row.get(4)?,
        owner_id: row.get(5)?,
        sip: DeviceSip {
            method,
            username: row.get(7)?,
            password: row.get(8)?,
            ip: row.get(9)?,
            expire_seconds,
        },
        document,
        created_ms: row.get(12)?,
        modified_ms: row.get(13)?,
    })
}

/// A [`DeviceOutcome`] from four columns starting at `first` (kind, at, reason,
/// last registered); `None` when the kind is NULL (no outcome yet, from a LEFT JOIN).
pub(crate) fn outcome(row: &Row<'_>, first: usize) -> rusqlite::Result<Option<DeviceOutcome>> {
    let kind: Option<String> = row.get(first)?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let kind = EventKind::parse(&kind)
        .ok_or_else(|| malformed(first, format!("device_state kind {kind:?}")))?;
    Ok(Some(DeviceOutcome {
        kind,
        at_ms: row.get(first + 1)?,
        reason: row.get(first + 2)?,
        last_registered_ms: row.get(first + 3)?,
    }))
}

pub(crate) fn device_summary(row: &Row<'_>) -> rusqlite::Result<DeviceSummary> {
    let expire_seconds: Option<i64> = row.get(7)?;
    Ok(DeviceSummary {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        enabled: row.get(3)?,
        device_type: row.get(4)?,
        owner_id: row.get(5)?,
        username: row.get(6)?,
        expire_seconds: expire_seconds.and_then(|seconds| u32::try_from(seconds).ok()),
        created_ms: row.get(8)?,
        outcome: outcome(row, 9)?,
    })
}

fn document_text(device: &Device) -> rusqlite::Result<String> {
    serde_json::to_string(&device.document)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
}

/// Writes the device, inserting (`replace == false`) or updating by id; returns rows changed.
pub(crate) fn write_device(
    connection: &Connection,
    device: &Device,
    replace: bool,
) -> rusqlite::Result<usize> {
    let sql = if replace {
        "UPDATE devices SET account_id = ?2, name = ?3, enabled = ?4, device_type = ?5, owner_id = ?6,
             sip_method = ?7, sip_username = ?8, sip_username_key = ?9, sip_password = ?10,
             sip_ip = ?11, sip_expire_seconds = ?12, document = ?13, created_ms = ?14, modified_ms = ?15
         WHERE id = ?1"
    } else {
        "INSERT INTO devices (id, account_id, name, enabled, device_type, owner_id, sip_method,
             sip_username, sip_username_key, sip_password, sip_ip, sip_expire_seconds, document,
             created_ms, modified_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    };
    connection.prepare_cached(sql)?.execute(params![
        device.id,
        device.account_id,
        device.name,
        device.enabled,
        device.device_type,
        device.owner_id,
        device.sip.method.as_str(),
        device.sip.username,
        device.sip.username.as_deref().map(fold),
        device.sip.password,
        device.sip.ip,
        device.sip.expire_seconds,
        document_text(device)?,
        device.created_ms,
        device.modified_ms,
    ])
}

// ---- users -------------------------------------------------------------------------------

pub(crate) const USER_COLUMNS: &str = "id, account_id, username, first_name, last_name, enabled, \
     md5_auth, sha1_auth, document, created_ms, modified_ms, revision";

pub(crate) fn user(row: &Row<'_>) -> rusqlite::Result<User> {
    let document: String = row.get(8)?;
    let document = serde_json::from_str(&document)
        .map_err(|error| malformed(8, format!("document: {error}")))?;
    Ok(User {
        id: row.get(0)?,
        account_id: row.get(1)?,
        username: row.get(2)?,
        first_name: row.get(3)?,
        last_name: row.get(4)?,
        enabled: row.get(5)?,
        md5_auth: row.get(6)?,
        sha1_auth: row.get(7)?,
        document,
        created_ms: row.get(9)?,
        modified_ms: row.get(10)?,
        revision: integer(row, 11, "revision")?,
    })
}

/// Inserts the user (`replace == false`), or updates it by id when its stored revision is
/// `user.revision - 1`; returns rows changed.
pub(crate) fn write_user(
    connection: &Connection,
    user: &User,
    replace: bool,
) -> rusqlite::Result<usize> {
    let sql = if replace {
        "UPDATE users SET account_id = ?2, username = ?3, username_key = ?4, first_name = ?5,
             last_name = ?6, enabled = ?7, md5_auth = ?8, sha1_auth = ?9, document = ?10,
             created_ms = ?11, modified_ms = ?12, revision = ?13
         WHERE id = ?1 AND revision = ?13 - 1"
    } else {
        "INSERT INTO users (id, account_id, username, username_key, first_name, last_name, enabled,
             md5_auth, sha1_auth, document, created_ms, modified_ms, revision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    };
    let document = serde_json::to_string(&user.document)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
    let revision = i64::try_from(user.revision)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
    connection.prepare_cached(sql)?.execute(params![
        user.id,
        user.account_id,
        user.username,
        user.username.as_deref().map(fold),
        user.first_name,
        user.last_name,
        user.enabled,
        user.md5_auth,
        user.sha1_auth,
        document,
        user.created_ms,
        user.modified_ms,
        revision,
    ])
}

// ---- API keys ----------------------------------------------------------------------------

pub(crate) const API_KEY_COLUMNS: &str =
    "id, account_id, name, key_hash, created_ms, scopes, prefix";

pub(crate) fn api_key(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let scopes: String = row.get(5)?;
    let scopes = serde_json::from_str(&scopes)
        .map_err(|error| malformed(5, format!("api key scopes: {error}")))?;
    Ok(ApiKey {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        key_hash: row.get(3)?,
        created_ms: row.get(4)?,
        scopes,
        prefix: row.get(6)?,
    })
}

// ---- bindings ----------------------------------------------------------------------------

pub(crate) const BINDING_COLUMNS: &str = "account_id, device_id, key, aor, contact, contact_params, instance, \
     reg_id, q_milli, expires_at_ms, registered_at_ms, updated_ms, call_id, cseq, user_agent, transport, \
     received, local, connection_id, path";

/// An update in place on conflict (not `INSERT OR REPLACE`, which deletes and re-inserts the
/// row and so rewrites every index entry): a refresh touches only the columns and indexes that
/// changed.
pub(crate) const UPSERT_BINDING: &str = "INSERT INTO bindings (account_id, device_id, key, aor, \
     contact, contact_params, instance, reg_id, q_milli, expires_at_ms, registered_at_ms, updated_ms, call_id, \
     cseq, user_agent, transport, received, local, connection_id, path)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
     ON CONFLICT (device_id, key) DO UPDATE SET account_id = excluded.account_id, aor = excluded.aor, \
     contact = excluded.contact, contact_params = excluded.contact_params, instance = excluded.instance, \
     reg_id = excluded.reg_id, q_milli = excluded.q_milli, expires_at_ms = excluded.expires_at_ms, \
     registered_at_ms = excluded.registered_at_ms, updated_ms = excluded.updated_ms, \
     call_id = excluded.call_id, cseq = excluded.cseq, user_agent = excluded.user_agent, \
     transport = excluded.transport, received = excluded.received, local = excluded.local, \
     connection_id = excluded.connection_id, path = excluded.path";

/// The connection id is a `u64` kept bit for bit in SQLite's signed 64-bit integer.
fn connection_id_to_sql(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

fn connection_id_from_sql(id: i64) -> u64 {
    u64::from_ne_bytes(id.to_ne_bytes())
}

pub(crate) fn upsert_binding(connection: &Connection, binding: &Binding) -> rusqlite::Result<()> {
    connection.prepare_cached(UPSERT_BINDING)?.execute(params![
        binding.account_id,
        binding.device_id,
        binding.key,
        binding.aor,
        binding.contact,
        binding.contact_params,
        binding.instance,
        binding.reg_id,
        binding.q_milli,
        binding.expires_at_ms,
        binding.registered_at_ms,
        binding.updated_ms,
        binding.call_id,
        binding.cseq,
        binding.user_agent,
        binding.transport.as_str(),
        binding.received.to_string(),
        binding.local.to_string(),
        binding.connection_id.map(connection_id_to_sql),
        binding.path,
    ])?;
    Ok(())
}

fn integer<T: TryFrom<i64>>(row: &Row<'_>, column: usize, name: &str) -> rusqlite::Result<T> {
    let value: i64 = row.get(column)?;
    T::try_from(value).map_err(|_| malformed(column, format!("{name} {value}")))
}

fn optional_integer<T: TryFrom<i64>>(
    row: &Row<'_>,
    column: usize,
    name: &str,
) -> rusqlite::Result<Option<T>> {
    let value: Option<i64> = row.get(column)?;
    value
        .map(|value| T::try_from(value).map_err(|_| malformed(column, format!("{name} {value}"))))
        .transpose()
}

fn address(row: &Row<'_>, column: usize, name: &str) -> rusqlite::Result<SocketAddr> {
    let text: String = row.get(column)?;
    text.parse()
        .map_err(|_| malformed(column, format!("{name} {text:?}")))
}

fn transport(text: &str, column: usize) -> rusqlite::Result<Transport> {
    Transport::parse(text).ok_or_else(|| malformed(column, format!("transport {text:?}")))
}

pub(crate) fn binding(row: &Row<'_>) -> rusqlite::Result<Binding> {
    let transport_text: String = row.get(15)?;
    let connection_id: Option<i64> = row.get(18)?;
    Ok(Binding {
        account_id: row.get(0)?,
        device_id: row.get(1)?,
        key: row.get(2)?,
        aor: row.get(3)?,
        contact: row.get(4)?,
        contact_params: row.get(5)?,
        instance: row.get(6)?,
        reg_id: optional_integer(row, 7, "reg_id")?,
        q_milli: optional_integer(row, 8, "q_milli")?,
        expires_at_ms: row.get(9)?,
        registered_at_ms: row.get(10)?,
        updated_ms: row.get(11)?,
        call_id: row.get(12)?,
        cseq: integer(row, 13, "cseq")?,
        user_agent: row.get(14)?,
        transport: transport(&transport_text, 15)?,
        received: address(row, 16, "received")?,
        local: address(row, 17, "local")?,
        connection_id: connection_id.map(connection_id_from_sql),
        path: row.get(19)?,
        // Reachability is node-local and kept in memory only: a loaded binding is reachable
        // until its keepalives say otherwise.
        last_keepalive_ms: None,
        keepalive_rtt_ms: None,
        keepalive_failures: 0,
        reachable: true,
    })
}

// ---- events ------------------------------------------------------------------------------

pub(crate) const EVENT_COLUMNS: &str = "id, at_ms, kind, account_id, device_id, binding_key, contact, address, transport, user_agent, reason";

/// Appends the event and returns the id it was given.
pub(crate) fn append_event(connection: &Connection, event: &Event) -> rusqlite::Result<i64> {
    connection
        .prepare_cached(
            "INSERT INTO events (at_ms, kind, account_id, device_id, binding_key, contact, address,
                 transport, user_agent, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            event.at_ms,
            event.kind.as_str(),
            event.account_id,
            event.device_id,
            event.binding_key,
            event.contact,
            event.address,
            event.transport.map(Transport::as_str),
            event.user_agent,
            event.reason,
        ])?;
    let id = connection.last_insert_rowid();
    record_outcome(connection, event)?;
    Ok(id)
}

/// Keeps `device_state` (the device's last outcome) in step with the history, in the same
/// transaction. Refreshes change nothing there (the outcome stays `registered`), so the
/// REGISTER hot path pays for this only when a binding is created or ends.
fn record_outcome(connection: &Connection, event: &Event) -> rusqlite::Result<()> {
    let Some(device_id) = &event.device_id else {
        return Ok(());
    };
    if !event.kind.is_outcome() || event.kind == EventKind::Refreshed {
        return Ok(());
    }
    let registered = (event.kind == EventKind::Registered).then_some(event.at_ms);
    connection
        .prepare_cached(
            "INSERT INTO device_state (device_id, account_id, last_kind, last_at_ms, last_reason,
                 last_registered_ms)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?1)
             ON CONFLICT (device_id) DO UPDATE SET
                 last_kind = excluded.last_kind,
                 last_at_ms = excluded.last_at_ms,
                 last_reason = excluded.last_reason,
                 last_registered_ms = COALESCE(excluded.last_registered_ms,
                                               device_state.last_registered_ms)",
        )?
        .execute(params![
            device_id,
            event.account_id,
            event.kind.as_str(),
            event.at_ms,
            event.reason,
            registered,
        ])?;
    Ok(())
}

pub(crate) fn event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let kind: String = row.get(2)?;
    let kind =
        EventKind::parse(&kind).ok_or_else(|| malformed(2, format!("event kind {kind:?}")))?;
    let transport_text: Option<String> = row.get(8)?;
    Ok(Event {
        id: row.get(0)?,
        at_ms: row.get(1)?,
        kind,
        account_id: row.get(3)?,
        device_id: row.get(4)?,
        binding_key: row.get(5)?,
        contact: row.get(6)?,
        address: row.get(7)?,
        transport: transport_text
            .as_deref()
            .map(|text| transport(text, 8))
            .transpose()?,
        user_agent: row.get(9)?,
        reason: row.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_round_trip_across_the_sign_bit() {
        for id in [0, 1, u64::MAX, u64::MAX / 2 + 1] {
            assert_eq!(connection_id_from_sql(connection_id_to_sql(id)), id);
        }
    }
}
