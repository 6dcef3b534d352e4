//! `/v2/accounts/{id}`: fetch, create a sub-account (`PUT`), replace (`POST`), merge
//! (`PATCH`), delete; and `/v2/accounts/{id}/api_key`.

use axum::extract::{Path, State};
use serde_json::{Map, Value, json};
use switchboard_model::{Account, new_id};
use switchboard_store::StoreError;

use crate::auth::{authorize, scope};
use crate::devices::{gregorian, merge_patch};
use crate::envelope::Reply;
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState, validation};

/// The account as a Kazoo account document: every key the client stored, with the typed
/// fields (id, name, realm, parent, times) laid over them.
fn document(account: &Account, stored: &Value) -> Value {
    let mut document = match stored {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let typed = json!({
        "id": account.id,
        "name": account.name,
        "realm": account.realm,
        "created": gregorian(account.created_ms),
        "modified": gregorian(account.modified_ms),
    });
    if let Value::Object(typed) = typed {
        document.extend(typed);
    }
    match &account.parent_id {
        Some(parent) => {
            document.insert("parent_id".into(), parent.clone().into());
        }
        None => {
            document.remove("parent_id");
        }
    }
    Value::Object(document)
}

/// The body as stored: private keys and the fields the server owns removed.
pub(crate) fn storable(data: Map<String, Value>) -> Value {
    let mut data = crate::devices::public(data);
    for owned in ["created", "modified", "parent_id"] {
        data.remove(owned);
    }
    Value::Object(data)
}

/// The account's stored document (empty when it never had one).
async fn stored_document(state: &ApiState, account_id: &str) -> Result<Value, ApiError> {
    let id = account_id.to_owned();
    Ok(state
        .blocking(move |store| store.account_document(&id))
        .await?
        .unwrap_or_else(|| json!({})))
}

/// Saves the document of an account that exists.
async fn save_document(
    state: &ApiState,
    account_id: &str,
    document: Value,
) -> Result<(), ApiError> {
    let id = account_id.to_owned();
    state
        .blocking(move |store| store.set_account_document(&id, &document))
        .await
}

/// A fresh 64-hex account key, the shape Kazoo issues.
fn new_api_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn realm_taken(realm: &str) -> ApiError {
    validation::unique("realm", "Realm already in use", realm)
}

/// Name and realm from a validated body.
pub(crate) fn name_and_realm(data: &Map<String, Value>) -> Result<(String, String), ApiError> {
    validation::account(data)?;
    let text = |key: &str| {
        data.get(key)
            .and_then(Value::as_str)
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    };
    Ok((text("name"), text("realm").to_lowercase()))
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}",
    operation_id = "get_account",
    tag = "accounts",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "The account document", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::ACCOUNTS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let stored = stored_document(&state, &account.id).await?;
    Ok(Reply::ok(document(&account, &stored)).token(Some(caller.token)))
}

/// `PUT /accounts/{parent_id}`: a new account below `parent_id`.
#[utoipa::path(
    put,
    path = "/accounts/{account_id}",
    operation_id = "create_account",
    tag = "accounts",
    params(openapi::AccountPath),
    request_body = openapi::AccountRequest,
    responses(
        (status = 201, description = "The new account, below `{account_id}`", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Path(parent_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::ACCOUNTS_WRITE).await?;
    let parent = caller.reach(&state, &parent_id).await?;
    let data = request.data()?;
    let (name, realm) = name_and_realm(&data)?;
    let body = storable(data);
    let now = crate::now_ms();
    let account = Account {
        id: new_id(),
        name,
        realm,
        parent_id: Some(parent.id),
        created_ms: now,
        modified_ms: now,
    };
    let stored = account.clone();
    let stored_body = body.clone();
    let result = state
        .blocking(move |store| {
            store.create_account(&stored)?;
            store.set_account_document(&stored.id, &stored_body)?;
            store.set_account_api_key(&stored.id, &new_api_key())
        })
        .await;
    match result {
        Ok(()) => {}
        Err(ApiError::Conflict) => return Err(realm_taken(&account.realm)),
        Err(error) => return Err(error),
    }
    tracing::info!(account_id = %account.id, "account created");
    Ok(Reply::created(document(&account, &body)).token(Some(caller.token)))
}

/// Stores a changed name/realm; a realm clash is Kazoo's `realm.unique`.
async fn save(state: &ApiState, account: Account) -> Result<Account, ApiError> {
    let stored = account.clone();
    match state
        .blocking(move |store| store.update_account(&stored))
        .await
    {
        Ok(()) => Ok(account),
        Err(ApiError::Conflict) => Err(realm_taken(&account.realm)),
        Err(ApiError::BadIdentifier(_)) => Err(ApiError::BadIdentifier(account.id)),
        Err(error) => Err(error),
    }
}

#[utoipa::path(
    post,
    path = "/accounts/{account_id}",
    operation_id = "replace_account",
    tag = "accounts",
    params(openapi::AccountPath),
    request_body = openapi::AccountRequest,
    responses(
        (status = 200, description = "The account as stored", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn replace(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::ACCOUNTS_WRITE).await?;
    let mut account = caller.reach(&state, &account_id).await?;
    let data = request.data()?;
    let (name, realm) = name_and_realm(&data)?;
    account.name = name;
    account.realm = realm;
    account.modified_ms = crate::now_ms();
    let account = save(&state, account).await?;
    let body = storable(data);
    save_document(&state, &account.id, body.clone()).await?;
    Ok(Reply::ok(document(&account, &body)).token(Some(caller.token)))
}

#[utoipa::path(
    patch,
    path = "/accounts/{account_id}",
    operation_id = "patch_account",
    tag = "accounts",
    params(openapi::AccountPath),
    request_body = openapi::AccountRequest,
    responses(
        (status = 200, description = "The account as stored (the body merged into it)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn patch(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::ACCOUNTS_WRITE).await?;
    let mut account = caller.reach(&state, &account_id).await?;
    let stored = stored_document(&state, &account.id).await?;
    let Value::Object(mut merged) = document(&account, &stored) else {
        return Err(ApiError::Internal(
            "account document is not an object".into(),
        ));
    };
    merge_patch(&mut merged, request.data()?);
    let (name, realm) = name_and_realm(&merged)?;
    account.name = name;
    account.realm = realm;
    account.modified_ms = crate::now_ms();
    let account = save(&state, account).await?;
    let body = storable(merged);
    save_document(&state, &account.id, body.clone()).await?;
    Ok(Reply::ok(document(&account, &body)).token(Some(caller.token)))
}

/// Deletes an account below the caller's (never the caller's own, never one that still has
/// sub-accounts), with its devices; their bindings are flushed on the SIP side.
#[utoipa::path(
    delete,
    path = "/accounts/{account_id}",
    operation_id = "delete_account",
    tag = "accounts",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "The deleted account; its devices and their registrations are gone (400 `account_has_descendants` while it has sub-accounts; 403 for the token's own account)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::ACCOUNTS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    if account.id == caller.account_id {
        return Err(ApiError::Forbidden);
    }
    let id = account.id.clone();
    let devices = state
        .blocking(move |store| {
            if store
                .accounts()?
                .iter()
                .any(|other| other.parent_id.as_deref() == Some(id.as_str()))
            {
                return Ok(None);
            }
            let devices = store.devices(&id)?;
            match store.delete_account(&id) {
                Ok(()) | Err(StoreError::NotFound) => Ok(Some(devices)),
                Err(error) => Err(error),
            }
        })
        .await?
        .ok_or_else(|| ApiError::BadRequest("account_has_descendants".to_owned()))?;
    for device in &devices {
        state
            .sip()
            .device_changed(&account.id, &device.id, true)
            .await?;
    }
    tracing::info!(account_id = %account.id, devices = devices.len(), "account deleted");
    Ok(Reply::ok(document(&account, &Value::Null)).token(Some(caller.token)))
}

/// `GET /accounts/{id}/api_key`: the account's own key (issued on first request for accounts
/// created before keys existed, e.g. with the CLI).
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/api_key",
    operation_id = "get_account_api_key",
    tag = "accounts",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "`{api_key}`: the account's key for `PUT /api_auth`", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn api_key(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::ACCOUNTS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let key = state
        .blocking(move |store| match store.account_api_key(&account.id)? {
            Some(key) => Ok(key),
            None => {
                let key = new_api_key();
                store.set_account_api_key(&account.id, &key)?;
                Ok(key)
            }
        })
        .await?;
    Ok(Reply::ok(json!({ "api_key": key })).token(Some(caller.token)))
}
