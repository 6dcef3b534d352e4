//! `PUT /v2/api_auth`, credential checking, scopes, and tenancy: a caller reaches its own
//! account and the accounts below it (the `parent_id` chain), nothing else.
//!
//! A credential is a signed token (from `api_auth` or `user_auth`) or an API key sent as it is
//! (`Authorization: Bearer sbk_…`), looked up by its SHA-256 on every request, so a revoked
//! key stops working at once. Either way the caller holds a set of [`scope`]s, and
//! [`authorize`] refuses a request whose scope it lacks with 403 naming it.

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

/// Who is asking: the account the credentials belong to, and what they may do.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub account_id: String,
    /// The token to echo in the answer's envelope; empty when the caller used an API key
    /// directly (a secret is never echoed).
    pub token: String,
    pub scopes: Scopes,
}

/// The scopes a caller holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scopes {
    /// Every scope: tokens from an account's own key, from `user_auth`, from a key stored
    /// with `["*"]` (the bootstrap key).
    Every,
    /// Only these.
    Only(Vec<String>),
}

impl Scopes {
    /// A stored key's scopes: `"*"` among them means every scope.
    pub fn from_stored(scopes: &[String]) -> Scopes {
        if scopes.iter().any(|scope| scope == ApiKey::EVERY_SCOPE) {
            Scopes::Every
        } else {
            Scopes::Only(scopes.to_vec())
        }
    }

    /// A token's `scopes` claim: absent means every scope.
    pub fn from_claim(claim: Option<Vec<String>>) -> Scopes {
        claim.map_or(Scopes::Every, |scopes| Scopes::from_stored(&scopes))
    }

    /// The `scopes` claim of a token carrying these scopes.
    pub fn claim(&self) -> Option<Vec<String>> {
        match self {
            Scopes::Every => None,
            Scopes::Only(scopes) => Some(scopes.clone()),
        }
    }

    pub fn holds(&self, wanted: &str) -> bool {
        match self {
            Scopes::Every => true,
            Scopes::Only(scopes) => scopes.iter().any(|scope| scope == wanted),
        }
    }
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
    /// The defences: bans and failure counters (the operator's, a root account's), and an
    /// account's security events.
    pub const SECURITY_READ: &str = "security:read";
    pub const SECURITY_WRITE: &str = "security:write";

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
        SECURITY_READ,
        SECURITY_WRITE,
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
    let caller = authenticate(state, request).await?;
    if caller.scopes.holds(scope) {
        Ok(caller)
    } else {
        Err(ApiError::MissingScope(scope))
    }
}

/// The request's credentials, verified: a token, or an API key used directly. 401
/// `invalid_credentials` when there are none, or they are bad, expired or revoked.
async fn authenticate(state: &ApiState, request: &ApiRequest) -> Result<Caller, ApiError> {
    let credential = request.token().ok_or(ApiError::InvalidCredentials)?;
    if !token::is_token_shaped(&credential) {
        // An API key: found by its hash (the lookup compares hashes, never the secret).
        let hash = ApiKey::hash(&credential);
        let key = state
            .blocking(move |store| store.api_key_by_hash(&hash))
            .await?
            .ok_or_else(|| {
                tracing::debug!("api key refused");
                ApiError::InvalidCredentials
            })?;
        return Ok(Caller {
            account_id: key.account_id,
            token: String::new(),
            scopes: Scopes::from_stored(&key.scopes),
        });
    }
    let claims = match token::verify(&state.inner.token_secret, &credential, now_secs()) {
        Ok(claims) => claims,
        Err(error) => {
            tracing::debug!(%error, "api token refused");
            return Err(ApiError::InvalidCredentials);
        }
    };
    if let Some(key_id) = claims.key_id.clone() {
        // A token issued for a stored key lives only as long as the key.
        let key = state.blocking(move |store| store.api_key(&key_id)).await?;
        if key.is_none_or(|key| key.account_id != claims.account_id) {
            tracing::debug!("api token of a revoked key refused");
            return Err(ApiError::InvalidCredentials);
        }
    }
    Ok(Caller {
        account_id: claims.account_id,
        token: credential,
        scopes: Scopes::from_claim(claims.scopes),
    })
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

/// `PUT /v2/api_auth {"data":{"api_key":…}}`: a stored key (the bootstrap key, or one from
/// `POST /accounts/{id}/api_keys`, found by its hash) gives a token for its account holding
/// its scopes, valid until it expires or the key is revoked; an account's own key gives a
/// token holding every scope.
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
    let found = state
        .blocking(move |store| {
            if let Some(issued) = store.api_key_by_hash(&ApiKey::hash(&key))? {
                let account = store.account(&issued.account_id)?;
                return Ok(account.map(|account| (account, Some(issued))));
            }
            Ok(store
                .account_by_api_key(&key)?
                .map(|account| (account, None)))
        })
        .await?;
    let (account, issued) = found.ok_or(ApiError::InvalidCredentials)?;
    let claims = Claims {
        account_id: account.id.clone(),
        exp: now_secs() + state.inner.token_lifetime_secs,
        method: "api_key".to_owned(),
        owner_id: None,
        scopes: issued
            .as_ref()
            .and_then(|issued| Scopes::from_stored(&issued.scopes).claim()),
        key_id: issued.map(|issued| issued.id),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_hold_what_they_list_and_star_holds_everything() {
        let only = Scopes::from_stored(&["devices:read".to_owned()]);
        assert!(only.holds(scope::DEVICES_READ));
        assert!(!only.holds(scope::DEVICES_WRITE));
        assert_eq!(only.claim(), Some(vec!["devices:read".to_owned()]));
        let every = Scopes::from_stored(&[ApiKey::EVERY_SCOPE.to_owned()]);
        assert_eq!(every, Scopes::Every);
        assert!(scope::ALL.iter().all(|name| every.holds(name)));
        assert_eq!(every.claim(), None);
        assert_eq!(Scopes::from_claim(None), Scopes::Every);
        assert_eq!(
            Scopes::from_claim(Some(Vec::new())),
            Scopes::Only(Vec::new())
        );
        assert!(!Scopes::Only(Vec::new()).holds(scope::ACCOUNTS_READ));
    }

    #[test]
    fn scope_names_are_unique() {
        let mut names: Vec<&str> = scope::ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), scope::ALL.len());
    }
}
