//! `PUT /v2/api_auth`, token checking, and tenancy: a token reaches its own account and the
//! accounts below it (the `parent_id` chain), nothing else.

use axum::extract::State;
use serde_json::json;
use switchboard_model::Account;
use switchboard_store::ApiKey;

use crate::envelope::Reply;
use crate::openapi;
use crate::request::ApiRequest;
use crate::token::{self, Claims};
use crate::{ApiError, ApiState};

/// Deeper account trees than this are not walked (a loop in `parent_id` cannot hang a request).
const MAX_ACCOUNT_DEPTH: usize = 64;

/// Who is asking: the account the token was issued for.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub account_id: String,
    pub token: String,
}

/// What a request may do. Tokens from `api_auth` (the account's own key) and `user_auth` hold
/// every scope; a scoped API key (`Authorization: Bearer <key>`) holds only those it was created
/// with, and a request needing another one gets 403 naming it.
pub(crate) mod scope {
    pub const ACCOUNTS_READ: &str = "accounts:read";
    pub const ACCOUNTS_WRITE: &str = "accounts:write";
    pub const USERS_READ: &str = "users:read";
    pub const USERS_WRITE: &str = "users:write";
    pub const DEVICES_READ: &str = "devices:read";
    pub const DEVICES_WRITE: &str = "devices:write";
    pub const REGISTRATIONS_READ: &str = "registrations:read";
    pub const REGISTRATIONS_WRITE: &str = "registrations:write";
    pub const WEBHOOKS_READ: &str = "webhooks:read";
    pub const WEBHOOKS_WRITE: &str = "webhooks:write";
    pub const EVENTS_READ: &str = "events:read";
    pub const PHONES_READ: &str = "pbx:phones:read";
    pub const API_KEYS_WRITE: &str = "api_keys:write";

    /// Every scope, in the order the documentation lists them.
    pub const ALL: &[&str] = &[
        ACCOUNTS_READ,
        ACCOUNTS_WRITE,
        USERS_READ,
        USERS_WRITE,
        DEVICES_READ,
        DEVICES_WRITE,
        REGISTRATIONS_READ,
        REGISTRATIONS_WRITE,
        WEBHOOKS_READ,
        WEBHOOKS_WRITE,
        EVENTS_READ,
        PHONES_READ,
        API_KEYS_WRITE,
    ];
}

pub(crate) fn now_secs() -> u64 {
    u64::try_from(crate::now_ms() / 1000).unwrap_or_default()
}

/// The request's credentials, verified and holding `scope`: 401 `invalid_credentials` without
/// valid credentials, 403 naming the scope when they lack it.
pub(crate) async fn authorize(
    state: &ApiState,
    request: &ApiRequest,
    scope: &'static str,
) -> Result<Caller, ApiError> {
    debug_assert!(scope::ALL.contains(&scope));
    caller(state, request)
}

/// The request's token, verified; 401 `invalid_credentials` otherwise.
pub(crate) fn caller(state: &ApiState, request: &ApiRequest) -> Result<Caller, ApiError> {
    let token = request.token().ok_or(ApiError::InvalidCredentials)?;
    match token::verify(&state.inner.token_secret, &token, now_secs()) {
        Ok(claims) => Ok(Caller {
            account_id: claims.account_id,
            token,
        }),
        Err(error) => {
            tracing::debug!(%error, "api token refused");
            Err(ApiError::InvalidCredentials)
        }
    }
}

impl Caller {
    /// The account `account_id`, when the caller may act on it: 404 `bad_identifier` when it
    /// does not exist, 403 when it is neither the caller's account nor below it.
    pub async fn reach(&self, state: &ApiState, account_id: &str) -> Result<Account, ApiError> {
        let own = self.account_id.clone();
        let wanted = account_id.to_owned();
        let found = state
            .blocking(move |store| {
                let Some(account) = store.account(&wanted)? else {
                    return Ok(None);
                };
                let mut current = Some(account.clone());
                for _ in 0..MAX_ACCOUNT_DEPTH {
                    let Some(step) = current else { break };
                    if step.id == own {
                        return Ok(Some((account, true)));
                    }
                    current = match step.parent_id {
                        Some(parent) => store.account(&parent)?,
                        None => None,
                    };
                }
                Ok(Some((account, false)))
            })
            .await?;
        match found {
            None => Err(ApiError::BadIdentifier(account_id.to_owned())),
            Some((account, true)) => Ok(account),
            Some((_, false)) => Err(ApiError::Forbidden),
        }
    }
}

/// `PUT /v2/api_auth {"data":{"api_key":…}}`: the bootstrap key (stored hashed) or an
/// account's own key gives a token for that account.
#[utoipa::path(
    put,
    path = "/api_auth",
    operation_id = "api_auth",
    tag = "auth",
    request_body = openapi::ApiAuthRequest,
    security(()),
    responses(
        (status = 201, description = "A token for the key's account (`auth_token`) and `data`: `account_id`, `account_name`, `is_reseller`, `reseller_id`, `expires_in`", body = openapi::SuccessEnvelope),
        openapi::LoginErrors,
    ),
)]
pub(crate) async fn api_auth(
    State(state): State<ApiState>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let data = request.data()?;
    let key = data
        .get("api_key")
        .and_then(|key| key.as_str())
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or(ApiError::InvalidCredentials)?
        .to_owned();
    let account = state
        .blocking(move |store| {
            if let Some(issued) = store.api_key_by_hash(&ApiKey::hash(&key))? {
                return store.account(&issued.account_id);
            }
            store.account_by_api_key(&key)
        })
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let claims = Claims {
        account_id: account.id.clone(),
        exp: now_secs() + state.inner.token_lifetime_secs,
        method: "api_key".to_owned(),
        owner_id: None,
    };
    let token = token::sign(&state.inner.token_secret, &claims);
    tracing::info!(account_id = %account.id, "api token issued");
    Ok(Reply::created(json!({
        "account_id": account.id,
        "account_name": account.name,
        "is_reseller": account.parent_id.is_none(),
        "reseller_id": account.parent_id.clone().unwrap_or_else(|| account.id.clone()),
        "expires_in": state.inner.token_lifetime_secs,
    }))
    .token(Some(token)))
}
