//! `/v2/accounts/{id}/users[/{user_id}]`: list, create, fetch, replace, merge, delete; and
//! `/v2/accounts/{id}/users/{user_id}/devices` (Kazoo's `listing_by_owner`).
//!
//! Users are validated against Kazoo's `users` schema (defaults written in). As in Kazoo's
//! `cb_users`, the username is lower-cased, and the GUI `password` is never stored: it becomes
//! the `user_auth` credentials `md5("username:password")` and `sha1("username:password")`.

use axum::extract::{Path, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use md5::Md5;
use serde_json::{Map, Value, json};
use sha1::Sha1;
use sha2::Digest;
use switchboard_model::{Account, Device, User, location, new_id};
use switchboard_store::StoreError;

use crate::auth::{Caller, authorize, scope};
use crate::devices::{digest, merge_patch};
use crate::envelope::{Page, Reply};
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState, validation};

type Document = Map<String, Value>;

/// Kazoo's `crossbar.pagination_page_size`.
const DEFAULT_PAGE_SIZE: usize = 50;

/// Kazoo's `user_auth` credentials of a username and password: lower-case hex
/// `(md5, sha1)` of `"username:password"`.
pub(crate) fn credential_hashes(username: &str, password: &str) -> (String, String) {
    let text = format!("{username}:{password}");
    (
        hex::encode(Md5::digest(text.as_bytes())),
        hex::encode(Sha1::digest(text.as_bytes())),
    )
}

/// The client-writable part of a document: without `id`, `_id`, `_rev` and `pvt_*`.
fn public(mut document: Document) -> Document {
    document.retain(|key, _| {
        !matches!(key.as_str(), "id" | "_id" | "_rev") && !key.starts_with("pvt_")
    });
    document
}

/// The user's `ETag` and envelope `revision`: `"{N}-{digest}"`, like CouchDB's `_rev`.
fn revision(user: &User) -> String {
    let text = serde_json::to_string(&user.document).unwrap_or_default();
    format!(
        "{}-{}",
        user.revision,
        digest(format!("{}:{text}", user.modified_ms).as_bytes())
    )
}

fn text(document: &Document, key: &str) -> Option<String> {
    document.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Kazoo lower-cases (and trims) the username before validating.
fn normalise_username(document: &mut Document) {
    if let Some(Value::String(username)) = document.get_mut("username") {
        *username = username.trim().to_lowercase();
    }
}

/// Validates `document` (public fields), takes its `password` out and works out the stored
/// user. `old` is the stored user on an update: its hashes are kept unless a password is
/// given, and a username change needs the password (the hashes cover the username).
pub(crate) fn build_user(
    mut document: Document,
    id: &str,
    account_id: &str,
    old: Option<&User>,
) -> Result<User, ApiError> {
    normalise_username(&mut document);
    validation::schema("users", &mut document)?;
    let password = document
        .remove("password")
        .and_then(|value| value.as_str().map(str::to_owned))
        .filter(|password| !password.is_empty());
    let username = text(&document, "username");
    let (md5_auth, sha1_auth) = match (&username, password, old) {
        (Some(username), Some(password), _) => {
            let (md5, sha1) = credential_hashes(username, &password);
            (Some(md5), Some(sha1))
        }
        (None, Some(_), _) => {
            return Err(ApiError::Validation(json!({"username": {"required": {
                "message": "a username is required to set a password"
            }}})));
        }
        (None, None, _) | (Some(_), None, None) => (None, None),
        (Some(username), None, Some(old)) => {
            if old.username.as_deref() == Some(username.as_str()) {
                (old.md5_auth.clone(), old.sha1_auth.clone())
            } else if old.md5_auth.is_some() {
                return Err(ApiError::Validation(json!({"password": {"required": {
                    "message": "The password must be provided when updating the username"
                }}})));
            } else {
                (None, None)
            }
        }
    };
    document.insert("id".into(), id.into());
    let now = crate::now_ms();
    Ok(User {
        id: id.to_owned(),
        account_id: account_id.to_owned(),
        username,
        first_name: text(&document, "first_name").unwrap_or_default(),
        last_name: text(&document, "last_name").unwrap_or_default(),
        enabled: document
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        md5_auth,
        sha1_auth,
        document: Value::Object(document),
        created_ms: old.map_or(now, |old| old.created_ms),
        modified_ms: old.map_or(now, |old| now.max(old.modified_ms + 1)),
        revision: old.map_or(1, |old| old.revision + 1),
    })
}

fn username_taken(username: &str) -> ApiError {
    validation::unique("username", "Username already in use", username)
}

/// Stores a new or changed user; the username must be unique in the account (case-insensitive,
/// backed by the store's unique index).
async fn store_user(state: &ApiState, user: User, existing: bool) -> Result<(), ApiError> {
    let username = user.username.clone().unwrap_or_default();
    let outcome = state
        .blocking(move |store| {
            if let Some(name) = &user.username
                && store
                    .user_by_username(&user.account_id, name)?
                    .is_some_and(|holder| holder.id != user.id)
            {
                return Ok(Err("username".to_owned()));
            }
            let written = if existing {
                store.update_user(&user)
            } else {
                store.create_user(&user)
            };
            match written {
                Ok(()) => Ok(Ok(())),
                Err(StoreError::Conflict(field)) => Ok(Err(field)),
                Err(error) => Err(error),
            }
        })
        .await?;
    match outcome {
        Ok(()) => Ok(()),
        Err(field) if field == "username" => Err(username_taken(&username)),
        Err(_) => Err(ApiError::Conflict),
    }
}

/// The user `user_id` of `account`; 404 `bad_identifier` when missing or another account's.
async fn load(state: &ApiState, account: &Account, user_id: &str) -> Result<User, ApiError> {
    let id = user_id.to_owned();
    let user = state.blocking(move |store| store.user(&id)).await?;
    user.filter(|user| user.account_id == account.id)
        .ok_or_else(|| ApiError::BadIdentifier(user_id.to_owned()))
}

fn check_revision(request: &ApiRequest, user: &User) -> Result<(), ApiError> {
    match request.if_match() {
        Some(wanted) if wanted != revision(user) => Err(ApiError::PreconditionFailed),
        _ => Ok(()),
    }
}

fn reply_document(user: &User, caller: Caller) -> Reply {
    Reply::ok(user.document.clone())
        .document_revision(revision(user))
        .token(Some(caller.token))
}

/// Features a user has switched on, as Kazoo's user listing shows them (unless the document
/// names its own `features`).
fn features(document: &Value) -> Value {
    if let Some(features) = document.get("features") {
        return features.clone();
    }
    let enabled = |path: &str| {
        document
            .pointer(path)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mut found = Vec::new();
    if enabled("/call_forward/enabled") {
        found.push("call_forward");
    }
    if enabled("/hotdesk/enabled") {
        found.push("hotdesk");
    }
    if enabled("/do_not_disturb/enabled") {
        found.push("do_not_disturb");
    }
    if document
        .get("caller_id")
        .and_then(Value::as_object)
        .is_some_and(|caller_id| !caller_id.is_empty())
    {
        found.push("caller_id");
    }
    if enabled("/vm_to_email_enabled") && document.get("email").is_some() {
        found.push("vm_to_email");
    }
    json!(found)
}

/// One listing row, as Kazoo's users `crossbar_listing` view emits it.
fn row(user: &User) -> Value {
    let document = &user.document;
    let mut row = json!({
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "priv_level": document.get("priv_level").cloned().unwrap_or_else(|| "user".into()),
        "features": features(document),
    });
    if let Value::Object(object) = &mut row {
        if let Some(username) = &user.username {
            object.insert("username".into(), username.clone().into());
        }
        for key in ["email", "presence_id", "timezone", "flags"] {
            if let Some(value) = document.get(key) {
                object.insert(key.into(), value.clone());
            }
        }
    }
    row
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/users",
    operation_id = "list_users",
    tag = "users",
    params(openapi::AccountPath, openapi::Pagination),
    responses(
        (status = 200, description = "One listing row per user, by id, with `page_size`/`next_start_key`", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::USERS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let users = state
        .blocking(move |store| store.users(&account.id))
        .await?;
    if request.param("paginate").as_deref() == Some("false") {
        let rows: Vec<Value> = users.iter().map(row).collect();
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
    let mut page: Vec<&User> = users
        .iter()
        .filter(|user| after.as_ref().is_none_or(|after| user.id > *after))
        .take(page_size.saturating_add(1))
        .collect();
    let next_start_key = if page.len() > page_size {
        page.truncate(page_size);
        page.last().map(|last| URL_SAFE_NO_PAD.encode(&last.id))
    } else {
        None
    };
    let rows: Vec<Value> = page.iter().map(|user| row(user)).collect();
    Ok(Reply::ok(Value::Array(rows))
        .page(Page {
            page_size: page.len(),
            start_key,
            next_start_key,
        })
        .token(Some(caller.token)))
}

#[utoipa::path(
    put,
    path = "/accounts/{account_id}/users",
    operation_id = "create_user",
    tag = "users",
    params(openapi::AccountPath),
    request_body = openapi::DocumentRequest,
    responses(
        (status = 201, description = "The new user document (the password is kept only as Kazoo's md5/sha1 hashes)", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        (status = 409, description = "`datastore_conflict`: a concurrent write won", body = openapi::ErrorEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::USERS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let user = build_user(public(request.data()?), &new_id(), &account.id, None)?;
    store_user(&state, user.clone(), false).await?;
    tracing::info!(account_id = %account.id, user_id = %user.id, "user created");
    Ok(Reply::created(user.document.clone())
        .document_revision(revision(&user))
        .token(Some(caller.token)))
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/users/{user_id}",
    operation_id = "get_user",
    tag = "users",
    params(openapi::UserPath),
    responses(
        (status = 200, description = "The user document", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    Path((account_id, user_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::USERS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let user = load(&state, &account, &user_id).await?;
    Ok(reply_document(&user, caller))
}

/// The common path of `POST` and `PATCH`: `build` makes the new public document from the
/// stored one and the request's `data`.
async fn update(
    state: ApiState,
    account_id: String,
    user_id: String,
    request: ApiRequest,
    build: fn(Document, Document) -> Document,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::USERS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let _guard = state.lock_device(&user_id).await;
    let old = load(&state, &account, &user_id).await?;
    check_revision(&request, &old)?;
    let stored = match &old.document {
        Value::Object(document) => public(document.clone()),
        _ => Map::new(),
    };
    let document = public(build(stored, public(request.data()?)));
    let user = build_user(document, &old.id, &account.id, Some(&old))?;
    store_user(&state, user.clone(), true).await?;
    tracing::info!(account_id = %account.id, user_id = %user.id, "user updated");
    Ok(reply_document(&user, caller))
}

#[utoipa::path(
    post,
    path = "/accounts/{account_id}/users/{user_id}",
    operation_id = "replace_user",
    tag = "users",
    params(openapi::UserPath, openapi::Revision),
    request_body = openapi::DocumentRequest,
    responses(
        (status = 200, description = "The user document as stored", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        (status = 409, description = "`datastore_conflict`: a concurrent write won", body = openapi::ErrorEnvelope),
        (status = 412, description = "`precondition_failed`: `If-Match` names a revision that is no longer current", body = openapi::ErrorEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn replace(
    State(state): State<ApiState>,
    Path((account_id, user_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    update(state, account_id, user_id, request, |_stored, data| data).await
}

#[utoipa::path(
    patch,
    path = "/accounts/{account_id}/users/{user_id}",
    operation_id = "patch_user",
    tag = "users",
    params(openapi::UserPath, openapi::Revision),
    request_body = openapi::DocumentRequest,
    responses(
        (status = 200, description = "The user document as stored (the body merged into it)", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        (status = 409, description = "`datastore_conflict`: a concurrent write won", body = openapi::ErrorEnvelope),
        (status = 412, description = "`precondition_failed`: `If-Match` names a revision that is no longer current", body = openapi::ErrorEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn patch(
    State(state): State<ApiState>,
    Path((account_id, user_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    update(state, account_id, user_id, request, |mut stored, data| {
        merge_patch(&mut stored, data);
        stored
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/accounts/{account_id}/users/{user_id}",
    operation_id = "delete_user",
    tag = "users",
    params(openapi::UserPath, openapi::Revision),
    responses(
        (status = 200, description = "The deleted user document", body = openapi::SuccessEnvelope, headers(("ETag" = String, description = "The document's revision"))),
        (status = 412, description = "`precondition_failed`: `If-Match` names a revision that is no longer current", body = openapi::ErrorEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    Path((account_id, user_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::USERS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let _guard = state.lock_device(&user_id).await;
    let user = load(&state, &account, &user_id).await?;
    check_revision(&request, &user)?;
    let id = user.id.clone();
    match state.blocking(move |store| store.delete_user(&id)).await {
        Ok(()) | Err(ApiError::BadIdentifier(_)) => {}
        Err(error) => return Err(error),
    }
    tracing::info!(account_id = %account.id, user_id = %user.id, "user deleted");
    Ok(reply_document(&user, caller))
}

/// Whether `device` is hotdesked by `user_id` (its `hotdesk.users` names the user).
fn hotdesked_by(device: &Device, user_id: &str) -> bool {
    device
        .document
        .pointer("/hotdesk/users")
        .and_then(Value::as_object)
        .is_some_and(|users| users.contains_key(user_id))
}

/// One `listing_by_owner` row.
fn owned_row(device: &Device, hotdesked: bool) -> Value {
    let document = &device.document;
    let mut row = json!({
        "id": device.id,
        "name": device.name,
        "mac_address": document.get("mac_address").cloned().unwrap_or_else(|| "".into()),
        "enabled": device.enabled,
        "device_type": device.device_type,
        "hotdesked": hotdesked,
    });
    if let Value::Object(object) = &mut row {
        for key in ["owner_id", "call_recording"] {
            if let Some(value) = document.get(key) {
                object.insert(key.into(), value.clone());
            }
        }
    }
    row
}

/// `GET /accounts/{id}/users/{user_id}/devices`: the devices the user owns (`owner_id`) or is
/// hotdesked into (the device's `hotdesk.users`), sorted by device id.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/users/{user_id}/devices",
    operation_id = "list_user_devices",
    tag = "users",
    params(openapi::UserPath),
    responses(
        (status = 200, description = "The devices the user owns (`owner_id`) or is hotdesked into, by id", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn devices(
    State(state): State<ApiState>,
    Path((account_id, user_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::USERS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let user = load(&state, &account, &user_id).await?;
    let devices = state
        .blocking(move |store| store.devices(&account.id))
        .await?;
    let rows: Vec<Value> = devices
        .iter()
        .filter_map(|device| {
            if device.owner_id.as_deref() == Some(user.id.as_str()) {
                Some(owned_row(device, false))
            } else if hotdesked_by(device, &user.id) {
                Some(owned_row(device, true))
            } else {
                None
            }
        })
        .collect();
    Ok(Reply::ok(Value::Array(rows)).token(Some(caller.token)))
}

/// `GET /accounts/{id}/users/{user_id}/location`: where a call to the user forks to (seed
/// 002) — every live, reachable binding of every device the user owns (`owner_id`), by q
/// (highest first; none counts as 1.0), then the most recently refreshed. The same list the
/// SIP side answers an INVITE to the user with (302).
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/users/{user_id}/location",
    operation_id = "get_user_location",
    tag = "users",
    params(openapi::UserPath),
    responses(
        (status = 200, description = "The user's reachable contacts, by q then most recent: `device_id`, `device_name`, `contact`, `q`, `expires` (seconds left), `transport`, `received`, `user_agent`, `instance`, `path`, `updated`", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn location(
    State(state): State<ApiState>,
    Path((account_id, user_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::USERS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let user = load(&state, &account, &user_id).await?;
    let account_id = account.id.clone();
    let devices = state
        .blocking(move |store| store.devices(&account_id))
        .await?;
    let owned: Vec<&Device> = devices
        .iter()
        .filter(|device| device.owner_id.as_deref() == Some(user.id.as_str()))
        .collect();
    let mut bindings = Vec::new();
    for device in &owned {
        bindings.extend(state.sip().device_bindings(&account.id, &device.id));
    }
    let now = crate::now_ms();
    let rows: Vec<Value> = location::reachable_by_q(bindings, now)
        .into_iter()
        .map(|binding| {
            let name = owned
                .iter()
                .find(|device| device.id == binding.device_id)
                .map(|device| device.name.clone());
            json!({
                "device_id": binding.device_id,
                "device_name": name,
                "contact": binding.contact,
                "q": f64::from(binding.q_milli.unwrap_or(location::DEFAULT_Q_MILLI)) / 1000.0,
                "expires": binding.remaining_secs(now),
                "transport": binding.transport.as_str(),
                "received": binding.received.to_string(),
                "user_agent": binding.user_agent,
                "instance": binding.instance,
                "path": (!binding.path.is_empty()).then_some(binding.path),
                "updated": crate::monitoring::rfc3339(binding.updated_ms),
            })
        })
        .collect();
    Ok(Reply::ok(Value::Array(rows)).token(Some(caller.token)))
}

/// A device's `owner_id` must name a user of the device's account (400 `owner_id.invalid`).
/// A device that already had that owner keeps it (so a device whose owner was deleted can
/// still be edited).
pub(crate) async fn check_owner(state: &ApiState, device: &Device) -> Result<(), ApiError> {
    let Some(owner_id) = device.owner_id.clone() else {
        return Ok(());
    };
    let account_id = device.account_id.clone();
    let device_id = device.id.clone();
    let lookup = owner_id.clone();
    let valid = state
        .blocking(move |store| {
            if store
                .user(&lookup)?
                .is_some_and(|user| user.account_id == account_id)
            {
                return Ok(true);
            }
            Ok(store.device(&device_id)?.is_some_and(|stored| {
                stored.account_id == account_id && stored.owner_id.as_deref() == Some(&lookup)
            }))
        })
        .await?;
    if valid {
        Ok(())
    } else {
        Err(validation::invalid(
            "owner_id",
            "Owner ID does not exist",
            &owner_id,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_kazoos_user_auth_credentials() {
        let (md5, sha1) = credential_hashes("user", "pass");
        // md5("user:pass"), sha1("user:pass")
        assert_eq!(md5, "21a39285884a268d6458e3fdeb08beac");
        assert_eq!(sha1, "b2619aa1529dfdc4248e6edbf3c1b2a2b014cf6d");
    }

    #[test]
    fn passwords_are_never_stored_and_usernames_are_lower_cased() {
        let Value::Object(document) = json!({
            "first_name": "Ada", "last_name": "Lovelace",
            "username": " Ada@Example.com ", "password": "s3cret"
        }) else {
            panic!("object")
        };
        let user = build_user(document, &"a".repeat(32), &"b".repeat(32), None).expect("valid");
        assert_eq!(user.username.as_deref(), Some("ada@example.com"));
        assert!(user.document.get("password").is_none());
        assert_eq!(user.document["priv_level"], "user", "defaults written");
        let (md5, sha1) = credential_hashes("ada@example.com", "s3cret");
        assert_eq!(user.md5_auth, Some(md5));
        assert_eq!(user.sha1_auth, Some(sha1));
    }

    #[test]
    fn renaming_needs_the_password() {
        let Value::Object(document) = json!({
            "first_name": "A", "last_name": "B", "username": "one", "password": "pw"
        }) else {
            panic!("object")
        };
        let old = build_user(document, &"a".repeat(32), &"b".repeat(32), None).expect("valid");
        let Value::Object(renamed) =
            json!({"first_name": "A", "last_name": "B", "username": "two"})
        else {
            panic!("object")
        };
        assert!(matches!(
            build_user(renamed, &old.id, &old.account_id, Some(&old)),
            Err(ApiError::Validation(data)) if data["password"]["required"].is_object()
        ));
    }
}
