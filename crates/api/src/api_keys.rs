//! `/v2/accounts/{id}/api_keys[/{key_id}]`: scoped API keys. Create (the secret is in that
//! answer and nowhere else, ever), list, fetch, revoke. Only the key's SHA-256 is stored; a
//! key is used as it is (`Authorization: Bearer sbk_…`) or exchanged for a token at
//! `PUT /api_auth`. Managing keys needs the `api_keys:write` scope, and a caller can only
//! hand out scopes it holds itself.

use axum::extract::{Path, State};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};
use switchboard_model::{Account, new_id};
use switchboard_store::ApiKey;

use crate::auth::{authorize, scope};
use crate::envelope::{Reply, rfc3339};
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState, validation};

/// Every key starts with this, so a key is recognisable (and never taken for a token).
pub(crate) const KEY_PREFIX: &str = "sbk_";

/// Random characters after [`KEY_PREFIX`]: 40 base62 characters, about 238 bits.
const KEY_RANDOM_CHARS: usize = 40;

/// Characters of the key shown in listings (`sbk_` and 8 more, about 48 bits: enough to tell
/// keys apart, far too few to guess the rest).
const SHOWN_PREFIX_CHARS: usize = KEY_PREFIX.len() + 8;

/// A fresh secret key.
fn new_key() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(KEY_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("{KEY_PREFIX}{random}")
}

/// A key as listed: never its secret nor its hash.
fn listing(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "scopes": key.scopes,
        "created": rfc3339(key.created_ms),
        "prefix": key.prefix,
    })
}

/// The key `key_id` of `account`; 404 `bad_identifier` when it is missing or another's.
async fn load(state: &ApiState, account: &Account, key_id: &str) -> Result<ApiKey, ApiError> {
    let id = key_id.to_owned();
    let key = state.blocking(move |store| store.api_key(&id)).await?;
    key.filter(|key| key.account_id == account.id)
        .ok_or_else(|| ApiError::BadIdentifier(key_id.to_owned()))
}

#[utoipa::path(
    post,
    path = "/accounts/{account_id}/api_keys",
    operation_id = "create_api_key",
    tag = "api_keys",
    params(openapi::AccountPath),
    request_body = openapi::ApiKeyRequest,
    responses(
        (status = 201, description = "The new key: `id`, `name`, `scopes`, `created` (RFC 3339), `prefix`, and `key`, the secret, shown in this answer only", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::API_KEYS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let (name, scopes) = validation::api_key(&request.data()?)?;
    if let Some(missing) = scopes.iter().find(|wanted| !caller.scopes.holds(wanted)) {
        return Err(ApiError::MissingScope(missing));
    }
    let secret = new_key();
    let key = ApiKey {
        id: new_id(),
        account_id: account.id.clone(),
        name,
        key_hash: ApiKey::hash(&secret),
        created_ms: crate::now_ms(),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        prefix: secret.chars().take(SHOWN_PREFIX_CHARS).collect(),
    };
    let stored = key.clone();
    state
        .blocking(move |store| store.create_api_key(&stored))
        .await?;
    tracing::info!(account_id = %account.id, key_id = %key.id, scopes = ?key.scopes, "api key created");
    let mut data = listing(&key);
    if let Value::Object(fields) = &mut data {
        fields.insert("key".into(), secret.into());
    }
    Ok(Reply::created(data).token(Some(caller.token)))
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/api_keys",
    operation_id = "list_api_keys",
    tag = "api_keys",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "The account's keys by id: `id`, `name`, `scopes`, `created`, `prefix` (never the secret)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::API_KEYS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let keys = state
        .blocking(move |store| store.api_keys(&account.id))
        .await?;
    let rows: Vec<Value> = keys.iter().map(listing).collect();
    Ok(Reply::ok(Value::Array(rows)).token(Some(caller.token)))
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/api_keys/{key_id}",
    operation_id = "get_api_key",
    tag = "api_keys",
    params(openapi::ApiKeyPath),
    responses(
        (status = 200, description = "The key: `id`, `name`, `scopes`, `created`, `prefix` (never the secret)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    Path((account_id, key_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::API_KEYS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let key = load(&state, &account, &key_id).await?;
    Ok(Reply::ok(listing(&key)).token(Some(caller.token)))
}

#[utoipa::path(
    delete,
    path = "/accounts/{account_id}/api_keys/{key_id}",
    operation_id = "revoke_api_key",
    tag = "api_keys",
    params(openapi::ApiKeyPath),
    responses(
        (status = 200, description = "The revoked key; it, and every token issued for it, is refused from now on", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn revoke(
    State(state): State<ApiState>,
    Path((account_id, key_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::API_KEYS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let key = load(&state, &account, &key_id).await?;
    let id = key.id.clone();
    state
        .blocking(move |store| store.delete_api_key(&id))
        .await?;
    tracing::info!(account_id = %account.id, key_id = %key.id, "api key revoked");
    Ok(Reply::ok(listing(&key)).token(Some(caller.token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_base62_and_distinct() {
        let first = new_key();
        assert_eq!(first.len(), KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        let random = first.strip_prefix(KEY_PREFIX).expect("prefixed");
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()), "{first}");
        assert!(!crate::token::is_token_shaped(&first));
        assert_ne!(first, new_key());
    }
}
