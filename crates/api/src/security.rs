//! The abuse defences' operator surface: the registrar's current bans and failure counters
//! (`/security/…`, for the operator: a root account's credentials, i.e. an account without a
//! parent), lifting a ban, an account's own security history (its `auth_failed`,
//! `banned` and `unbanned` events), and an account's own SIP allow/deny lists
//! (`/accounts/{id}/security/access_lists`, stored by the store, held by the registrar's
//! directory cache and told of each write through [`crate::SipControl::access_lists_changed`]).
//!
//! The live state belongs to the registrar; it is read and changed through [`crate::SipControl`]
//! (`security_bans`, `security_counters`, `lift_ban`), so this crate stays free of the
//! runtime.

use axum::extract::{Path, State};
use serde_json::{Value, json};
use switchboard_model::{AccessLists, EventKind};
use switchboard_store::EventQuery;

use crate::auth::{Caller, authorize, scope};
use crate::envelope::{Reply, rfc3339};
use crate::monitoring::{bounded_number, event_payload};
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState, validation};

/// What a ban applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanTarget {
    /// A source address, refused entirely (403 or dropped).
    Address,
    /// A username (`user@realm`), slowed: attempts for it from addresses that failed lately
    /// are refused whatever their credentials.
    Username,
}

impl BanTarget {
    fn as_str(self) -> &'static str {
        match self {
            BanTarget::Address => "address",
            BanTarget::Username => "username",
        }
    }
}

/// One current ban, as the registrar reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanView {
    pub target: BanTarget,
    /// The address, or `user@realm`.
    pub subject: String,
    pub since_ms: i64,
    pub until_ms: i64,
    /// Failures that led to it.
    pub failures: u32,
    /// 1 for a first ban of the address, 2 for the next, ... (0 for usernames).
    pub offence: u32,
    pub reason: String,
}

/// Failures inside the current window of one address or username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCounter {
    pub subject: String,
    pub failures: u32,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// The registrar's failure counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityCounters {
    pub addresses: Vec<FailureCounter>,
    pub usernames: Vec<FailureCounter>,
}

fn ban_json(ban: &BanView) -> Value {
    let mut value = json!({
        "type": ban.target.as_str(),
        "since": rfc3339(ban.since_ms),
        "until": rfc3339(ban.until_ms),
        "failures": ban.failures,
        "reason": ban.reason,
    });
    if let Value::Object(fields) = &mut value {
        let key = match ban.target {
            BanTarget::Address => "address",
            BanTarget::Username => "username",
        };
        fields.insert(key.into(), ban.subject.clone().into());
        if ban.target == BanTarget::Address {
            fields.insert("offence".into(), ban.offence.into());
        }
    }
    value
}

fn counter_json(counter: &FailureCounter, key: &str) -> Value {
    json!({
        key: counter.subject,
        "failures": counter.failures,
        "first_failure": rfc3339(counter.first_ms),
        "last_failure": rfc3339(counter.last_ms),
    })
}

/// The caller, when it is the operator: credentials holding `scope` of an account without a
/// parent. Anyone else is 403.
async fn operator(
    state: &ApiState,
    request: &ApiRequest,
    scope: &'static str,
) -> Result<Caller, ApiError> {
    let caller = authorize(state, request, scope).await?;
    let id = caller.account_id.clone();
    let account = state.blocking(move |store| store.account(&id)).await?;
    match account {
        Some(account) if account.parent_id.is_none() => Ok(caller),
        _ => Err(ApiError::Forbidden),
    }
}

/// `GET /security/bans`.
#[utoipa::path(
    get,
    path = "/security/bans",
    operation_id = "list_bans",
    tag = "security",
    responses(
        (status = 200, description = "Current bans, oldest first: `type` (`address`: refused entirely; `username`: slowed, attempts from addresses that failed lately are refused), `address` or `username`, `since`, `until` (RFC 3339), `failures`, `offence` (addresses: 1 for a first ban, each repeat doubles the length), `reason`. Root accounts only.", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn bans(
    State(state): State<ApiState>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = operator(&state, &request, scope::SECURITY_READ).await?;
    let bans: Vec<Value> = state.sip().security_bans().iter().map(ban_json).collect();
    Ok(Reply::ok(Value::Array(bans)).token(Some(caller.token)))
}

/// `DELETE /security/bans/{address}`.
#[utoipa::path(
    delete,
    path = "/security/bans/{address}",
    operation_id = "lift_ban",
    tag = "security",
    params(("address" = String, Path, description = "The banned address (IPv4 or IPv6), or a slowed `user@realm`")),
    responses(
        (status = 200, description = "The ban lifted (same shape as in the list); an address's lifting is recorded as a `security.unbanned` event. Root accounts only.", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn lift(
    State(state): State<ApiState>,
    Path(address): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = operator(&state, &request, scope::SECURITY_WRITE).await?;
    let lifted = state
        .sip()
        .lift_ban(&address)
        .await
        .ok_or_else(|| ApiError::BadIdentifier(address.clone()))?;
    tracing::info!(subject = %lifted.subject, "ban lifted by the operator");
    Ok(Reply::ok(ban_json(&lifted)).token(Some(caller.token)))
}

/// `GET /security/counters`.
#[utoipa::path(
    get,
    path = "/security/counters",
    operation_id = "security_counters",
    tag = "security",
    responses(
        (status = 200, description = "Failed authentications inside the current windows, most first: `addresses` (`address`, per `security.ip_window`) and `usernames` (`username`, per `security.username_window`), each with `failures`, `first_failure`, `last_failure`. Root accounts only.", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn counters(
    State(state): State<ApiState>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = operator(&state, &request, scope::SECURITY_READ).await?;
    let counters = state.sip().security_counters();
    let addresses: Vec<Value> = counters
        .addresses
        .iter()
        .map(|counter| counter_json(counter, "address"))
        .collect();
    let usernames: Vec<Value> = counters
        .usernames
        .iter()
        .map(|counter| counter_json(counter, "username"))
        .collect();
    Ok(
        Reply::ok(json!({ "addresses": addresses, "usernames": usernames }))
            .token(Some(caller.token)),
    )
}

/// `GET /accounts/{account_id}/security/events`.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/security/events",
    operation_id = "security_events",
    tag = "security",
    params(
        openapi::AccountPath,
        ("limit" = Option<usize>, Query, description = "How many events, 1–1000 (50)"),
    ),
    responses(
        (status = 200, description = "The account's `device.auth_failed`, `security.banned` and `security.unbanned` events, newest first, each `{event, eventId, timestamp, accountId, data}` (the webhook payload; `data.deviceId` absent for unknown users and bans)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn events(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::SECURITY_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let limit = bounded_number(&request, "limit", 50, 1, 1000)?;
    let events = state
        .blocking(move |store| {
            store.events(&EventQuery {
                account_id: Some(account.id),
                kinds: vec![
                    EventKind::AuthFailed,
                    EventKind::Banned,
                    EventKind::Unbanned,
                ],
                limit,
                newest_first: true,
                ..EventQuery::default()
            })
        })
        .await?;
    let list: Vec<Value> = events.iter().map(event_payload).collect();
    Ok(Reply::ok(Value::Array(list)).token(Some(caller.token)))
}

/// The lists as the API shows them: `{allow, deny}` (empty for an account that never set any).
fn access_json(lists: Option<&AccessLists>) -> Value {
    match lists {
        Some(lists) => json!({ "allow": lists.allow, "deny": lists.deny }),
        None => json!({ "allow": [], "deny": [] }),
    }
}

/// Stores the account's lists (empty ones clear them), tells the registrar at once, and
/// answers them as stored. The store commits before this returns.
async fn store_access_lists(
    state: &ApiState,
    account_id: String,
    allow: Vec<String>,
    deny: Vec<String>,
) -> Result<Value, ApiError> {
    let now = crate::now_ms();
    let stored = state
        .blocking(move |store| store.set_access_lists(&account_id, &allow, &deny, now))
        .await?;
    state.sip().access_lists_changed(&stored);
    tracing::info!(account_id = %stored.account_id, allow = stored.allow.len(),
        deny = stored.deny.len(), revision = stored.revision, "account access lists written");
    Ok(access_json(Some(&stored)))
}

/// `GET /accounts/{account_id}/security/access_lists`.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/security/access_lists",
    operation_id = "get_access_lists",
    tag = "security",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "The account's own SIP source-address lists, `{allow, deny}` (CIDR networks or addresses, as stored; both empty when never set): a REGISTER for the account's realm from an address the deny list matches, or that a non-empty allow list does not match, is answered `403 Forbidden`", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn access_lists(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::SECURITY_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let lists = state
        .blocking(move |store| store.access_lists(&account.id))
        .await?;
    Ok(Reply::ok(access_json(lists.as_ref())).token(Some(caller.token)))
}

/// `PUT` (or `POST`) `/accounts/{account_id}/security/access_lists`.
#[utoipa::path(
    put,
    path = "/accounts/{account_id}/security/access_lists",
    operation_id = "set_access_lists",
    tag = "security",
    params(openapi::AccountPath),
    request_body = openapi::AccessListsRequest,
    responses(
        (status = 200, description = "The lists as stored, `{allow, deny}`: they replace the previous ones (a list left out is empty) and apply to the next REGISTER. 400 `validation error` names each bad entry (`allow.1`: `type`) or a list over 256 entries (`maxItems`).", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn set_access_lists(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::SECURITY_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let (allow, deny) = validation::access_lists(&request.data()?)?;
    let data = store_access_lists(&state, account.id, allow, deny).await?;
    Ok(Reply::ok(data).token(Some(caller.token)))
}

/// `POST /accounts/{account_id}/security/access_lists`: the same as `PUT`.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/security/access_lists",
    operation_id = "replace_access_lists",
    tag = "security",
    params(openapi::AccountPath),
    request_body = openapi::AccessListsRequest,
    responses(
        (status = 200, description = "The same as `PUT`: the lists replaced, as stored", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn replace_access_lists(
    state: State<ApiState>,
    path: Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    set_access_lists(state, path, request).await
}

/// `DELETE /accounts/{account_id}/security/access_lists`.
#[utoipa::path(
    delete,
    path = "/accounts/{account_id}/security/access_lists",
    operation_id = "clear_access_lists",
    tag = "security",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "Both lists cleared (`{allow: [], deny: []}`): every address may register again (the global `[security]` lists still apply)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn clear_access_lists(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::SECURITY_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let data = store_access_lists(&state, account.id, Vec::new(), Vec::new()).await?;
    Ok(Reply::ok(data).token(Some(caller.token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lists_show_empty_lists_when_never_set() {
        assert_eq!(access_json(None), json!({"allow": [], "deny": []}));
        let lists = AccessLists {
            account_id: "a".into(),
            allow: vec!["10.0.0.0/8".into()],
            deny: vec!["192.0.2.1".into()],
            revision: 2,
            modified_ms: 5,
        };
        assert_eq!(
            access_json(Some(&lists)),
            json!({"allow": ["10.0.0.0/8"], "deny": ["192.0.2.1"]})
        );
    }

    #[test]
    fn bans_name_their_subject_by_kind() {
        let address = BanView {
            target: BanTarget::Address,
            subject: "203.0.113.7".into(),
            since_ms: 0,
            until_ms: 300_000,
            failures: 10,
            offence: 1,
            reason: "10 failed authentications".into(),
        };
        let value = ban_json(&address);
        assert_eq!(value["type"], "address");
        assert_eq!(value["address"], "203.0.113.7");
        assert_eq!(value["until"], "1970-01-01T00:05:00Z");
        assert_eq!(value["offence"], 1);
        let username = BanView {
            target: BanTarget::Username,
            subject: "alice@acme.test".into(),
            offence: 0,
            ..address
        };
        let value = ban_json(&username);
        assert_eq!(value["username"], "alice@acme.test");
        assert!(value.get("address").is_none() && value.get("offence").is_none());
    }
}
