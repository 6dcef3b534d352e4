//! `/v2/accounts/{id}/devices[/{device_id}]`: list (paginated), create, fetch, replace,
//! merge, delete. A write that changes what the registrar checks (credentials, owner,
//! enabled) or a delete takes effect on the SIP side at once, through [`crate::SipControl`].

use axum::extract::{Path, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use switchboard_model::{Account, Device, DeviceSip, Event, EventKind, SipAuthMethod, new_id};

use crate::auth::{Caller, authorize, scope};
use crate::envelope::{Page, Reply};
use crate::filters::Filters;
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState, validation};

/// A JSON document's top-level object.
type Document = Map<String, Value>;

/// Kazoo's `crossbar.pagination_page_size`.
const DEFAULT_PAGE_SIZE: usize = 50;

/// Seconds between year 0 and the Unix epoch: Kazoo timestamps are Gregorian seconds.
const GREGORIAN_OFFSET_SECS: i64 = 62_167_219_200;

/// A 32-hex digest, the shape of Kazoo's md5 revisions.
pub(crate) fn digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

pub(crate) fn gregorian(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(1000) + GREGORIAN_OFFSET_SECS
}

/// RFC 7386 merge: objects merge key by key, `null` deletes, anything else replaces.
pub(crate) fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(inner) => match target.get_mut(&key) {
                Some(Value::Object(existing)) => merge_patch(existing, inner),
                _ => {
                    let mut fresh = Map::new();
                    merge_patch(&mut fresh, inner);
                    target.insert(key, Value::Object(fresh));
                }
            },
            other => {
                target.insert(key, other);
            }
        }
    }
}

/// The client-writable part of a document: without `id`, `_id`, `_rev` and `pvt_*`.
pub(crate) fn public(mut document: Map<String, Value>) -> Map<String, Value> {
    document.retain(|key, _| {
        !matches!(key.as_str(), "id" | "_id" | "_rev") && !key.starts_with("pvt_")
    });
    document
}

/// The revision of a stored device: its `ETag` and the envelope's `revision`.
fn revision(device: &Device) -> String {
    let text = serde_json::to_string(&device.document).unwrap_or_default();
    digest(format!("{}:{text}", device.modified_ms).as_bytes())
}

/// The typed device the registrar reads, from a validated document.
fn to_device(
    id: &str,
    account_id: &str,
    document: &Map<String, Value>,
    created_ms: i64,
    modified_ms: i64,
) -> Device {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let sip = document.get("sip");
    let field = |name: &str| sip.and_then(|sip| sip.get(name));
    Device {
        id: id.to_owned(),
        account_id: account_id.to_owned(),
        name: text(document.get("name")).unwrap_or_default(),
        enabled: document
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        device_type: text(document.get("device_type")).unwrap_or_else(|| "sip_device".to_owned()),
        owner_id: text(document.get("owner_id")),
        sip: DeviceSip {
            method: field("method")
                .and_then(Value::as_str)
                .and_then(SipAuthMethod::parse)
                .unwrap_or_default(),
            username: text(field("username")),
            password: text(field("password")),
            ip: text(field("ip")),
            expire_seconds: field("expire_seconds")
                .and_then(Value::as_u64)
                .and_then(|secs| u32::try_from(secs).ok()),
        },
        document: Value::Object(document.clone()),
        created_ms,
        modified_ms,
    }
}

/// Whether a change must flush the device's registrations (Kazoo's rule).
fn changes_registration(old: &Device, new: &Device) -> bool {
    old.sip.username != new.sip.username
        || old.sip.password != new.sip.password
        || old.sip.method != new.sip.method
        || old.sip.ip != new.sip.ip
        || old.enabled != new.enabled
        || old.owner_id != new.owner_id
}

fn credentials_taken(username: &str) -> ApiError {
    validation::unique("sip.username", "SIP credentials already in use", username)
}

/// Stores a new (`existing: false`) or changed device; SIP credentials must be unique in the
/// account, case-insensitive (Kazoo's `sip.username.unique`).
async fn store_device(state: &ApiState, device: Device, existing: bool) -> Result<(), ApiError> {
    crate::users::check_owner(state, &device).await?;
    let username = device.sip.username.clone();
    let checked = device.sip.method == SipAuthMethod::Password;
    if device.sip.method == SipAuthMethod::Ip
        && let Some(ip) = device.sip.ip.clone()
    {
        let id = device.id.clone();
        let lookup = ip.clone();
        let holders = state
            .blocking(move |store| store.devices_by_ip(&lookup))
            .await?;
        if holders
            .iter()
            .any(|holder| holder.id != id && holder.sip.method == SipAuthMethod::Ip)
        {
            return Err(validation::unique("sip.ip", "SIP IP already in use", &ip));
        }
    }
    let result = state
        .blocking(move |store| {
            if checked && let Some(username) = &device.sip.username {
                let holder = store.device_by_username(&device.account_id, username)?;
                if holder.is_some_and(|holder| {
                    holder.id != device.id && holder.sip.method == SipAuthMethod::Password
                }) {
                    return Ok(false);
                }
            }
            if existing {
                store.update_device(&device)?;
            } else {
                store.create_device(&device)?;
            }
            Ok(true)
        })
        .await;
    match (result, username) {
        (Ok(true), _) => Ok(()),
        (Ok(false) | Err(ApiError::Conflict), Some(username)) => Err(credentials_taken(&username)),
        (Ok(false), None) => Err(ApiError::Conflict),
        (Err(error), _) => Err(error),
    }
}

/// The device `device_id` of `account`; 404 `bad_identifier` when it is missing or belongs
/// to another account.
async fn load(state: &ApiState, account: &Account, device_id: &str) -> Result<Device, ApiError> {
    let id = device_id.to_owned();
    let device = state.blocking(move |store| store.device(&id)).await?;
    device
        .filter(|device| device.account_id == account.id)
        .ok_or_else(|| ApiError::BadIdentifier(device_id.to_owned()))
}

fn check_revision(request: &ApiRequest, device: &Device) -> Result<(), ApiError> {
    match request.if_match() {
        Some(wanted) if wanted != revision(device) => Err(ApiError::PreconditionFailed),
        _ => Ok(()),
    }
}

fn reply_document(device: &Device, caller: Caller) -> Reply {
    Reply::ok(device.document.clone())
        .document_revision(revision(device))
        .token(Some(caller.token))
}

/// One listing row, as Kazoo's `crossbar_listing` view emits it.
fn row(device: &Device) -> Value {
    let document = &device.document;
    let mut row = json!({
        "id": device.id,
        "name": device.name,
        "mac_address": document.get("mac_address").cloned().unwrap_or_else(|| "".into()),
        "enabled": device.enabled,
        "device_type": device.device_type,
        "flags": document.get("flags").cloned().unwrap_or_else(|| json!([])),
    });
    if let Value::Object(object) = &mut row {
        if let Some(username) = &device.sip.username {
            object.insert("username".into(), username.clone().into());
        }
        for key in ["owner_id", "mobile", "call_recording"] {
            if let Some(value) = document.get(key) {
                object.insert(key.into(), value.clone());
            }
        }
    }
    row
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices",
    operation_id = "list_devices",
    tag = "devices",
    params(openapi::AccountPath, openapi::Pagination, openapi::Filters),
    responses(
        (status = 200, description = "One listing row per device (`id`, `name`, `username`, `mac_address`, `enabled`, `device_type`, `flags`, `owner_id`…), by id, with `page_size`/`next_start_key`", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::DEVICES_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let filters = Filters::from_request(&request)?;
    if request.param("paginate").as_deref() == Some("false") {
        let mut devices = state
            .blocking(move |store| store.devices(&account.id))
            .await?;
        devices.retain(|device| {
            filters.matches(&device.document, device.created_ms, device.modified_ms)
        });
        let rows: Vec<Value> = devices.iter().map(row).collect();
        return Ok(Reply::ok(Value::Array(rows)).token(Some(caller.token)));
    }
    let page_size = request
        .param("page_size")
        .and_then(|text| text.parse::<usize>().ok())
        .filter(|&size| size > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE);
    let start_key = request.param("start_key").filter(|key| !key.is_empty());
    let after = match &start_key {
        Some(key) => Some(
            URL_SAFE_NO_PAD
                .decode(key)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| ApiError::BadRequest("invalid start_key".to_owned()))?,
        ),
        None => None,
    };
    let mut devices = state
        .blocking(move |store| {
            if filters.is_empty() {
                return store.devices_page(
                    &account.id,
                    after.as_deref(),
                    page_size.saturating_add(1),
                );
            }
            // Kazoo keeps reading until a filtered page is full or the account is exhausted.
            const CHUNK: usize = 500;
            let mut matched = Vec::new();
            let mut cursor = after;
            loop {
                let chunk = store.devices_page(&account.id, cursor.as_deref(), CHUNK)?;
                let exhausted = chunk.len() < CHUNK;
                cursor = chunk.last().map(|device| device.id.clone());
                for device in chunk {
                    if filters.matches(&device.document, device.created_ms, device.modified_ms) {
                        matched.push(device);
                        if matched.len() > page_size {
                            return Ok(matched);
                        }
                    }
                }
                if exhausted {
                    return Ok(matched);
                }
            }
        })
        .await?;
    let next_start_key = if devices.len() > page_size {
        devices.truncate(page_size);
        devices.last().map(|last| URL_SAFE_NO_PAD.encode(&last.id))
    } else {
        None
    };
    let rows: Vec<Value> = devices.iter().map(row).collect();
    Ok(Reply::ok(Value::Array(rows))
        .page(Page {
            page_size: devices.len(),
            start_key,
            next_start_key,
        })
        .token(Some(caller.token)))
}

#[utoipa::path(
    put,
    path = "/accounts/{account_id}/devices",
    operation_id = "create_device",
    tag = "devices",
    params(openapi::AccountPath),
    request_body = openapi::DocumentRequest,
    responses(
        (status = 201, description = "The new device document (defaults written in)", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        (status = 409, description = "`datastore_conflict`: a concurrent write won", body = openapi::ErrorEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::DEVICES_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let mut document = public(request.data()?);
    validation::device(&mut document)?;
    let id = new_id();
    document.insert("id".into(), id.clone().into());
    let now = crate::now_ms();
    let device = to_device(&id, &account.id, &document, now, now);
    store_device(&state, device.clone(), false).await?;
    tracing::info!(account_id = %account.id, device_id = %id, "device created");
    state
        .record(Event {
            id: 0,
            at_ms: now,
            kind: EventKind::Provisioning,
            account_id: account.id.clone(),
            device_id: Some(id.clone()),
            binding_key: None,
            contact: None,
            address: None,
            transport: None,
            user_agent: None,
            reason: Some("created".to_owned()),
        })
        .await;
    Ok(Reply::created(device.document.clone())
        .document_revision(revision(&device))
        .token(Some(caller.token)))
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices/{device_id}",
    operation_id = "get_device",
    tag = "devices",
    params(openapi::DevicePath),
    responses(
        (status = 200, description = "The device document", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::DEVICES_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let device = load(&state, &account, &device_id).await?;
    Ok(reply_document(&device, caller))
}

/// The common path of `POST` and `PATCH`: `build` makes the new public document from the
/// stored one and the request's `data`.
async fn update(
    state: ApiState,
    account_id: String,
    device_id: String,
    request: ApiRequest,
    data: Document,
    build: fn(Document, Document) -> Document,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::DEVICES_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let _guard = state.lock_device(&device_id).await;
    let old = load(&state, &account, &device_id).await?;
    check_revision(&request, &old)?;
    let stored = match &old.document {
        Value::Object(document) => public(document.clone()),
        _ => Map::new(),
    };
    let mut document = public(build(stored, public(data)));
    validation::device(&mut document)?;
    document.insert("id".into(), old.id.clone().into());
    let device = to_device(
        &old.id,
        &account.id,
        &document,
        old.created_ms,
        crate::now_ms().max(old.modified_ms + 1),
    );
    store_device(&state, device.clone(), true).await?;
    let flush = changes_registration(&old, &device);
    state
        .sip()
        .device_changed(&account.id, &device.id, flush)
        .await?;
    tracing::info!(account_id = %account.id, device_id = %device.id, flush, "device updated");
    Ok(reply_document(&device, caller))
}

#[utoipa::path(
    post,
    path = "/accounts/{account_id}/devices/{device_id}",
    operation_id = "replace_device",
    tag = "devices",
    params(openapi::DevicePath, openapi::Revision),
    request_body = openapi::DocumentRequest,
    responses(
        (status = 200, description = "The device document as stored; a change of credentials, method, `enabled` or `owner_id` unregisters it at once", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        (status = 409, description = "`datastore_conflict`: a concurrent write won", body = openapi::ErrorEnvelope),
        (status = 412, description = "`precondition_failed`: `If-Match` names a revision that is no longer current", body = openapi::ErrorEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn replace(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let data = request.data()?;
    update(
        state,
        account_id,
        device_id,
        request,
        data,
        |_stored, data| data,
    )
    .await
}

#[utoipa::path(
    patch,
    path = "/accounts/{account_id}/devices/{device_id}",
    operation_id = "patch_device",
    tag = "devices",
    params(openapi::DevicePath, openapi::Revision),
    request_body = openapi::DocumentRequest,
    responses(
        (status = 200, description = "The device document as stored (the body merged into it)", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        (status = 409, description = "`datastore_conflict`: a concurrent write won", body = openapi::ErrorEnvelope),
        (status = 412, description = "`precondition_failed`: `If-Match` names a revision that is no longer current", body = openapi::ErrorEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn patch(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let data = patch_data(&request)?;
    update(
        state,
        account_id,
        device_id,
        request,
        data,
        |mut stored, data| {
            merge_patch(&mut stored, data);
            stored
        },
    )
    .await
}

/// Bounds of seed 000's `settings.registrationExpiry` (seconds).
const REGISTRATION_EXPIRY: std::ops::RangeInclusive<u64> = 60..=86_400;

/// A PATCH body as a merge patch of the document: Kazoo's `data`, where seed 000's
/// `{"settings":{"registrationExpiry":N}}` (bare or inside `data`) means `sip.expire_seconds`.
pub(crate) fn patch_data(request: &ApiRequest) -> Result<Document, ApiError> {
    let mut data = request.data()?;
    let settings = match data.remove("settings") {
        Some(settings) => Some(settings),
        None => request
            .envelope
            .as_ref()
            .and_then(|envelope| envelope.get("settings"))
            .cloned(),
    };
    let Some(settings) = settings else {
        return Ok(data);
    };
    let Value::Object(mut settings) = settings else {
        return Err(validation::invalid(
            "settings",
            "settings must be an object",
            "settings",
        ));
    };
    if let Some(expiry) = settings.remove("registrationExpiry") {
        let seconds = expiry
            .as_u64()
            .filter(|seconds| REGISTRATION_EXPIRY.contains(seconds))
            .ok_or_else(|| {
                ApiError::Validation(json!({ "settings.registrationExpiry": { "minimum": {
                    "message": format!(
                        "registrationExpiry must be an integer from {} to {} seconds",
                        REGISTRATION_EXPIRY.start(),
                        REGISTRATION_EXPIRY.end()
                    ),
                    "target": REGISTRATION_EXPIRY.start(),
                    "value": expiry,
                } } }))
            })?;
        let sip = data
            .entry("sip")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(sip) = sip {
            sip.insert("expire_seconds".into(), seconds.into());
        }
    }
    if !settings.is_empty() {
        // Other settings are kept in the document as they were sent.
        data.insert("settings".into(), Value::Object(settings));
    }
    Ok(data)
}

#[utoipa::path(
    delete,
    path = "/accounts/{account_id}/devices/{device_id}",
    operation_id = "delete_device",
    tag = "devices",
    params(openapi::DevicePath, openapi::Revision),
    responses(
        (status = 200, description = "The deleted device document; its registrations are gone", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        (status = 412, description = "`precondition_failed`: `If-Match` names a revision that is no longer current", body = openapi::ErrorEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::DEVICES_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let _guard = state.lock_device(&device_id).await;
    let device = load(&state, &account, &device_id).await?;
    check_revision(&request, &device)?;
    let id = device.id.clone();
    match state.blocking(move |store| store.delete_device(&id)).await {
        Ok(()) | Err(ApiError::BadIdentifier(_)) => {}
        Err(error) => return Err(error),
    }
    state
        .sip()
        .device_changed(&account.id, &device.id, true)
        .await?;
    tracing::info!(account_id = %account.id, device_id = %device.id, "device deleted");
    Ok(reply_document(&device, caller))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_merges_objects_and_null_deletes() {
        let Value::Object(mut target) = json!({"a": 1, "sip": {"username": "u", "password": "p"}})
        else {
            panic!("object")
        };
        let Value::Object(patch) =
            json!({"a": null, "sip": {"password": "q", "realm": null}, "b": [1]})
        else {
            panic!("object")
        };
        merge_patch(&mut target, patch);
        assert_eq!(
            Value::Object(target),
            json!({"sip": {"username": "u", "password": "q"}, "b": [1]})
        );
    }

    #[test]
    fn private_keys_are_stripped() {
        let Value::Object(document) =
            json!({"id": "x", "_rev": "1", "pvt_type": "device", "name": "n"})
        else {
            panic!("object")
        };
        assert_eq!(Value::Object(public(document)), json!({"name": "n"}));
    }
}
