//! Kazoo's registrations API, fed by the registrar's live binding table:
//! `GET/DELETE /accounts/{id}/registrations`, `GET …/registrations/count`,
//! `DELETE …/registrations/{username}`, and `GET …/devices/status`.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, State};
use serde_json::{Value, json};
use switchboard_model::{Account, Binding, Device, EventKind};
use switchboard_store::EventQuery;

use crate::auth::{authorize, scope};
use crate::devices::gregorian;
use crate::envelope::Reply;
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState};

/// The account's bindings that have not lapsed yet (the sweeper may not have run).
fn live_bindings(state: &ApiState, account: &Account) -> Vec<Binding> {
    let now = crate::now_ms();
    let mut bindings = state.sip().account_bindings(&account.id);
    bindings.retain(|binding| binding.expires_at_ms > now);
    bindings
}

/// Host and port of a SIP URI (`sip:user@host:port;params`), as text.
fn uri_host_port(uri: &str) -> (String, Option<u16>) {
    let rest = uri.split_once(':').map_or(uri, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host_port = rest.split([';', '?', '>']).next().unwrap_or_default();
    if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
        let port = after.strip_prefix(':').and_then(|port| port.parse().ok());
        return (host.to_owned(), port);
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().ok()),
        None => (host_port.to_owned(), None),
    }
}

/// One registration in Kazoo's `cb_registrations` shape.
fn registration(account: &Account, binding: &Binding, device: Option<&Device>, now: i64) -> Value {
    let (user, realm) = binding
        .aor
        .split_once('@')
        .unwrap_or((binding.aor.as_str(), account.realm.as_str()));
    let username = device
        .and_then(|device| device.sip.username.clone())
        .unwrap_or_else(|| user.to_owned());
    let (contact_ip, contact_port) = uri_host_port(&binding.contact);
    let contact = format!("<{}>{}", binding.contact, binding.contact_params);
    json!({
        "account_name": account.name,
        "account_realm": account.realm,
        "authorizing_id": binding.device_id,
        "authorizing_type": "device",
        "call_id": binding.call_id,
        "contact": contact,
        "contact_ip": contact_ip,
        "contact_port": contact_port.map(|port| port.to_string()).unwrap_or_default(),
        "event_timestamp": gregorian(binding.updated_ms),
        "expires": binding.remaining_secs(now),
        "from_host": realm,
        "from_user": user,
        "network_ip": binding.received.ip().to_string(),
        "network_port": binding.received.port().to_string(),
        "original_contact": contact,
        "owner_id": device.and_then(|device| device.owner_id.clone()),
        "proxy_ip": binding.local.ip().to_string(),
        "proxy_port": binding.local.port().to_string(),
        "realm": realm,
        "suppress_unregister_notify": false,
        "to_host": realm,
        "to_user": user,
        "transport": binding.transport.as_str(),
        "user_agent": binding.user_agent,
        "username": username,
    })
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/registrations",
    operation_id = "list_registrations",
    tag = "registrations",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "The account's live registrations, in Kazoo's `cb_registrations` shape", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let bindings = live_bindings(&state, &account);
    let wanted: BTreeSet<String> = bindings.iter().map(|b| b.device_id.clone()).collect();
    let devices: HashMap<String, Device> = state
        .blocking(move |store| {
            let mut found = HashMap::new();
            for id in wanted {
                if let Some(device) = store.device(&id)? {
                    found.insert(id, device);
                }
            }
            Ok(found)
        })
        .await?;
    let now = crate::now_ms();
    let rows: Vec<Value> = bindings
        .iter()
        .map(|binding| registration(&account, binding, devices.get(&binding.device_id), now))
        .collect();
    Ok(Reply::ok(Value::Array(rows)).token(Some(caller.token)))
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/registrations/count",
    operation_id = "count_registrations",
    tag = "registrations",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "`{count}`: the account's live registrations", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn count(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let count = live_bindings(&state, &account).len();
    Ok(Reply::ok(json!({ "count": count })).token(Some(caller.token)))
}

/// Flushes the bindings of each device, one after another.
async fn flush_devices(
    state: &ApiState,
    account: &Account,
    device_ids: BTreeSet<String>,
) -> Result<(), ApiError> {
    for device_id in device_ids {
        state
            .sip()
            .device_changed(&account.id, &device_id, true)
            .await?;
    }
    Ok(())
}

/// `DELETE …/registrations`: every registration of the account's realm.
#[utoipa::path(
    delete,
    path = "/accounts/{account_id}/registrations",
    operation_id = "flush_registrations",
    tag = "registrations",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "`ok`: every registration of the account is removed", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn flush_all(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let devices = state
        .sip()
        .account_bindings(&account.id)
        .into_iter()
        .map(|binding| binding.device_id)
        .collect();
    flush_devices(&state, &account, devices).await?;
    tracing::info!(account_id = %account.id, "registrations flushed");
    Ok(Reply::ok("ok".into()).token(Some(caller.token)))
}

/// `DELETE …/registrations/{username}`: 404 when no device has that username.
#[utoipa::path(
    delete,
    path = "/accounts/{account_id}/registrations/{username}",
    operation_id = "flush_registration",
    tag = "registrations",
    params(openapi::RegistrationPath),
    responses(
        (status = 200, description = "`ok`: the device's registrations are removed (404 when no device has that username)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn flush_username(
    State(state): State<ApiState>,
    Path((account_id, username)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let (id, name) = (account.id.clone(), username.clone());
    let device = state
        .blocking(move |store| store.device_by_username(&id, &name))
        .await?
        .ok_or_else(|| ApiError::BadIdentifier(username.clone()))?;
    flush_devices(&state, &account, BTreeSet::from([device.id.clone()])).await?;
    tracing::info!(account_id = %account.id, device_id = %device.id, "registration flushed");
    Ok(Reply::ok("ok".into()).token(Some(caller.token)))
}

/// `GET …/devices/status`: `[{device_id, registered: true}]` for each registered device.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices/status",
    operation_id = "devices_status",
    tag = "registrations",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "`[{device_id, registered: true}]` for each registered device", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn status(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let registered: BTreeSet<String> = live_bindings(&state, &account)
        .into_iter()
        .map(|binding| binding.device_id)
        .collect();
    let rows: Vec<Value> = registered
        .into_iter()
        .map(|device_id| json!({ "device_id": device_id, "registered": true }))
        .collect();
    Ok(Reply::ok(Value::Array(rows)).token(Some(caller.token)))
}

/// `GET …/devices/{device_id}/status` (the softphone document's shape): whether the device is
/// registered now, from where, and when it last registered (from the history when it is not).
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices/{device_id}/status",
    operation_id = "device_status",
    tag = "registrations",
    params(openapi::DevicePath),
    responses(
        (status = 200, description = "Whether the device is registered, from where, and when it last registered", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn device_status(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let id = device_id.clone();
    let owner = account.id.clone();
    let (device, last_event) = state
        .blocking(move |store| {
            let Some(device) = store.device(&id)?.filter(|d| d.account_id == owner) else {
                return Ok((None, None));
            };
            let last = store
                .events(&EventQuery {
                    device_id: Some(id),
                    kinds: vec![EventKind::Registered, EventKind::Refreshed],
                    limit: 1,
                    newest_first: true,
                    ..EventQuery::default()
                })?
                .into_iter()
                .next();
            Ok((Some(device), last))
        })
        .await?;
    let device = device.ok_or(ApiError::BadIdentifier(device_id))?;
    let newest = live_bindings(&state, &account)
        .into_iter()
        .filter(|binding| binding.device_id == device.id)
        .max_by_key(|binding| binding.updated_ms);
    let iso = |ms: i64| format!("{}Z", crate::envelope::timestamp(ms));
    let data = match newest {
        Some(binding) => json!({
            "registered": true,
            "ip": binding.received.ip().to_string(),
            "port": binding.received.port(),
            "transport": binding.transport.as_str(),
            "last_registration": iso(binding.updated_ms),
        }),
        None => json!({
            "registered": false,
            "ip": null,
            "port": null,
            "last_registration": last_event.map(|event| iso(event.at_ms)),
        }),
    };
    Ok(Reply::ok(data).token(Some(caller.token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_hosts_and_ports() {
        assert_eq!(
            uri_host_port("sip:alice@192.0.2.1:5070;transport=udp"),
            ("192.0.2.1".to_owned(), Some(5070))
        );
        assert_eq!(
            uri_host_port("sip:alice@example.com"),
            ("example.com".to_owned(), None)
        );
        assert_eq!(
            uri_host_port("sip:bob@[2001:db8::1]:5060"),
            ("2001:db8::1".to_owned(), Some(5060))
        );
        assert_eq!(uri_host_port(""), (String::new(), None));
    }
}
