//! `PUT /v2/user_auth` (a token from a user's credentials hash, Kazoo's `cb_user_auth`) and
//! `GET /v2/user_auth/{token}` (what a token asserts).

use axum::extract::{Path, State};
use serde_json::{Value, json};
use switchboard_model::{Account, User};
use switchboard_store::CredentialHash;

use crate::auth::{Caller, Scopes, now_secs};
use crate::envelope::Reply;
use crate::openapi;
use crate::request::ApiRequest;
use crate::token::{self, Claims};
use crate::{ApiError, ApiState, validation};

/// `PUT /v2/user_auth {"data":{"credentials", "account_name"|"account_realm", "method"}}`:
/// `credentials` is the hex `md5("username:password")` (or SHA-1 with `"method":"sha"`); the
/// first enabled user of the named account(s) holding that hash gets a token carrying its id
/// as `owner_id`. Anything else is 401 `invalid_credentials`.
#[utoipa::path(
    put,
    path = "/user_auth",
    operation_id = "user_auth",
    tag = "auth",
    request_body = openapi::UserAuthRequest,
    security(()),
    responses(
        (status = 201, description = "A token for the user (`auth_token`; its `owner_id` is the user) and the user's account details in `data`", body = openapi::SuccessEnvelope),
        openapi::LoginErrors,
    ),
)]
pub(crate) async fn user_auth(
    State(state): State<ApiState>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let mut data = request.data()?;
    validation::schema("user_auth", &mut data)?;
    let text = |key: &str| {
        data.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let credentials = text("credentials")
        .ok_or(ApiError::InvalidCredentials)?
        .to_ascii_lowercase();
    let method = match text("method").as_deref() {
        Some("sha") => CredentialHash::Sha1,
        _ => CredentialHash::Md5,
    };
    let (name, realm) = (text("account_name"), text("account_realm"));
    if name.is_none() && realm.is_none() && text("phone_number").is_none() {
        return Err(ApiError::Validation(json!({"account_name": {"required": {
            "message": "account_name, account_realm or phone_number is required"
        }}})));
    }
    let found = state
        .blocking(move |store| {
            // Phone numbers are not stored yet: such a login finds no account.
            let accounts: Vec<Account> = match (realm, name) {
                (Some(realm), _) => store.account_by_realm(&realm)?.into_iter().collect(),
                (None, Some(name)) => store
                    .accounts()?
                    .into_iter()
                    .filter(|account| account.name.to_lowercase() == name.to_lowercase())
                    .collect(),
                (None, None) => Vec::new(),
            };
            for account in accounts {
                let users = store.users_by_credentials(&account.id, method, &credentials)?;
                if let Some(user) = users.into_iter().find(|user| user.enabled) {
                    return Ok(Some((account, user)));
                }
            }
            Ok(None)
        })
        .await?;
    let Some((account, user)) = found else {
        tracing::info!("user_auth refused");
        return Err(ApiError::InvalidCredentials);
    };
    let claims = Claims {
        account_id: account.id.clone(),
        exp: now_secs() + state.inner.token_lifetime_secs,
        method: "user_auth".to_owned(),
        owner_id: Some(user.id.clone()),
        scopes: None,
        key_id: None,
    };
    let token = token::sign(&state.inner.token_secret, &claims);
    tracing::info!(account_id = %account.id, user_id = %user.id, "user token issued");
    Ok(
        Reply::created(login_data(&account, &user, state.inner.token_lifetime_secs))
            .token(Some(token)),
    )
}

fn login_data(account: &Account, user: &User, lifetime_secs: u64) -> Value {
    json!({
        "account_id": account.id,
        "owner_id": user.id,
        "account_name": account.name,
        "reseller_id": account.parent_id.clone().unwrap_or_else(|| account.id.clone()),
        "is_reseller": account.parent_id.is_none(),
        "language": user.document.get("language").cloned().unwrap_or_else(|| "en-us".into()),
        "apps": [],
        "expires_in": lifetime_secs,
    })
}

/// `GET /v2/user_auth/{token}`: the token's `account_id`, `owner_id`, `method` and `exp`.
/// The caller is the request's own token (or, without one, the token in the path); it must
/// reach the inspected token's account like any other account.
#[utoipa::path(
    get,
    path = "/user_auth/{auth_token}",
    operation_id = "user_auth_introspect",
    tag = "auth",
    params(("auth_token" = String, Path, description = "The token to inspect (also the caller's token when the request carries none)")),
    security((), ("auth_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "`account_id`, `owner_id`, `method`, `exp`, `expires_in` of the token", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn introspect(
    State(state): State<ApiState>,
    Path(inspected): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let verify = |token: &str| {
        token::verify(&state.inner.token_secret, token, now_secs())
            .map_err(|_| ApiError::InvalidCredentials)
    };
    let claims = verify(&inspected)?;
    let caller = match request.token() {
        Some(token) => {
            let own = verify(&token)?;
            Caller {
                account_id: own.account_id,
                token,
                scopes: Scopes::from_claim(own.scopes),
            }
        }
        None => Caller {
            account_id: claims.account_id.clone(),
            token: inspected.clone(),
            scopes: Scopes::from_claim(claims.scopes.clone()),
        },
    };
    caller.reach(&state, &claims.account_id).await?;
    Ok(Reply::ok(json!({
        "account_id": claims.account_id,
        "owner_id": claims.owner_id,
        "method": claims.method,
        "exp": claims.exp,
        "expires_in": claims.exp.saturating_sub(now_secs()),
    }))
    .token(Some(caller.token)))
}
