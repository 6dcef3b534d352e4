//! `/v2/accounts/{id}`: fetch, create a sub-account (`PUT`), replace (`POST`), merge
//! (`PATCH`), delete; and `/v2/accounts/{id}/api_key`.

use axum::extract::{Path, State};
use axum::routing::{MethodRouter, get};
use serde_json::{Map, Value, json};
use switchboard_model::{Account, new_id};
use switchboard_store::StoreError;

use crate::auth::caller;
use crate::devices::{gregorian, merge_patch};
use crate::envelope::Reply;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState, validation};

pub(crate) fn item() -> MethodRouter<ApiState> {
    get(fetch)
        .put(create)
        .post(replace)
        .patch(patch)
        .delete(remove)
}

/// The account as a Kazoo account document.
fn document(account: &Account) -> Value {
    let mut document = json!({
        "id": account.id,
        "name": account.name,
        "realm": account.realm,
        "created": gregorian(account.created_ms),
        "modified": gregorian(account.modified_ms),
    });
    if let (Some(parent), Some(object)) = (&account.parent_id, document.as_object_mut()) {
        object.insert("parent_id".into(), parent.clone().into());
    }
    document
}

/// A fresh 64-hex account key, the shape Kazoo issues.
fn new_api_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn realm_taken(realm: &str) -> ApiError {
    validation::unique("realm", "Realm already in use", realm)
}

/// Name and realm from a validated body.
fn name_and_realm(data: &Map<String, Value>) -> Result<(String, String), ApiError> {
    validation::account(data)?;
    let text = |key: &str| {
        data.get(key)
            .and_then(Value::as_str)
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    };
    Ok((text("name"), text("realm").to_lowercase()))
}

async fn fetch(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = caller(&state, &request)?;
    let account = caller.reach(&state, &account_id).await?;
    Ok(Reply::ok(document(&account)).token(Some(caller.token)))
}

/// `PUT /accounts/{parent_id}`: a new account below `parent_id`.
async fn create(
    State(state): State<ApiState>,
    Path(parent_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = caller(&state, &request)?;
    let parent = caller.reach(&state, &parent_id).await?;
    let (name, realm) = name_and_realm(&request.data()?)?;
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
    let result = state
        .blocking(move |store| {
            store.create_account(&stored)?;
            store.set_account_api_key(&stored.id, &new_api_key())
        })
        .await;
    match result {
        Ok(()) => {}
        Err(ApiError::Conflict) => return Err(realm_taken(&account.realm)),
        Err(error) => return Err(error),
    }
    tracing::info!(account_id = %account.id, "account created");
    Ok(Reply::created(document(&account)).token(Some(caller.token)))
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

async fn replace(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = caller(&state, &request)?;
    let mut account = caller.reach(&state, &account_id).await?;
    let (name, realm) = name_and_realm(&request.data()?)?;
    account.name = name;
    account.realm = realm;
    account.modified_ms = crate::now_ms();
    let account = save(&state, account).await?;
    Ok(Reply::ok(document(&account)).token(Some(caller.token)))
}

async fn patch(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = caller(&state, &request)?;
    let mut account = caller.reach(&state, &account_id).await?;
    let Value::Object(mut merged) = document(&account) else {
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
    Ok(Reply::ok(document(&account)).token(Some(caller.token)))
}

/// Deletes an account below the caller's (never the caller's own, never one that still has
/// sub-accounts), with its devices; their bindings are flushed on the SIP side.
async fn remove(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = caller(&state, &request)?;
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
    Ok(Reply::ok(document(&account)).token(Some(caller.token)))
}

/// `GET /accounts/{id}/api_key`: the account's own key (issued on first request for accounts
/// created before keys existed, e.g. with the CLI).
pub(crate) async fn api_key(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = caller(&state, &request)?;
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
