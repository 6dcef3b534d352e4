//! `/v2/accounts/{id}/webhooks[/{webhook_id}[/attempts]]`: webhook subscriptions, in both
//! shapes clients send — the seed's `{"url", "events"}` (top level or in `data`) and Kazoo's
//! `{"data": {"name", "uri", "hook", "http_verb", "retries", "custom_data", "enabled",
//! "include_subaccounts"}}` — normalised to one stored document; and the attempts the
//! delivery worker ([`delivery`]) recorded.
//!
//! The stored document keeps what the client sent, plus `id`, `url` and `uri` (the same URL),
//! `events` (`device.*` names or `*`), `http_verb`, `retries`, `enabled`. The signing secret
//! is kept apart and shown only in the create response.

pub(crate) mod delivery;

use axum::extract::{Path, State};
use serde_json::{Map, Value, json};
use switchboard_model::{Account, EventKind, new_id};
use switchboard_store::{Attempt, Webhook};

use crate::auth::{Caller, authorize, scope};
use crate::devices::{merge_patch, public};
use crate::envelope::Reply;
use crate::openapi;
use crate::request::ApiRequest;
use crate::validation::ValidationErrors;
use crate::{ApiError, ApiState};

/// A JSON document's top-level object.
type Document = Map<String, Value>;

/// Retries when the client names none: with the durable outbox, four (Kazoo's maximum; its
/// default is 2) spread over about 15 s at the default base.
pub(crate) const DEFAULT_RETRIES: u64 = 4;

/// Kazoo's `retries` maximum.
const MAX_RETRIES: u64 = 4;

/// Attempts listed when the client gives no `limit`; and the most it may ask for.
const DEFAULT_ATTEMPTS: usize = 50;
const MAX_ATTEMPTS: usize = 1000;

/// Every event, in `events`.
pub(crate) const ALL_EVENTS: &str = "*";

/// The webhook event name of a history event kind.
pub(crate) fn event_name(kind: EventKind) -> String {
    kind.event_name().to_owned()
}

/// Whether `name` is `*` or the public name of a kind the history knows (`device.<kind>`,
/// `security.banned`, `security.unbanned`).
fn known_event(name: &str) -> bool {
    name == ALL_EVENTS || EventKind::ALL.iter().any(|kind| kind.event_name() == name)
}

/// A new signing secret: 32 random bytes, hex.
fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The hook's fields from the request: `data`, or the envelope's top level when there is no
/// `data` (the seed's shape). Also whether it asks for Kazoo's `re-enable`.
pub(crate) fn request_fields(request: &ApiRequest) -> Result<(Map<String, Value>, bool), ApiError> {
    let mut fields = request.data()?;
    let envelope = request.envelope.clone().unwrap_or_default();
    if fields.is_empty() {
        fields = envelope.clone();
        fields.retain(|key, _| !matches!(key.as_str(), "auth_token" | "data"));
    }
    let reenable = [
        fields.remove("re-enable"),
        envelope.get("re-enable").cloned(),
    ]
    .into_iter()
    .flatten()
    .any(|value| value == Value::Bool(true));
    Ok((fields, reenable))
}

/// The client's document, normalised and validated (every error at once, by field), and the
/// secret it carried (kept out of the document).
pub(crate) fn normalise(
    mut document: Map<String, Value>,
) -> Result<(Map<String, Value>, Option<String>), ApiError> {
    let mut errors = ValidationErrors::default();
    let kazoo_shape = document.contains_key("hook") || document.contains_key("uri");
    let url_field = if kazoo_shape { "uri" } else { "url" };
    let url = match (document.get("url"), document.get("uri")) {
        (Some(url), Some(uri)) if url != uri && !uri.is_null() && !url.is_null() => {
            errors.push(
                "uri",
                "conflict",
                json!({"message": "url and uri must name the same URL", "value": uri}),
            );
            None
        }
        (Some(url), _) if !url.is_null() => Some(("url", url.clone())),
        (_, Some(uri)) if !uri.is_null() => Some(("uri", uri.clone())),
        _ => {
            errors.required(url_field);
            None
        }
    };
    if let Some((field, value)) = url {
        match value.as_str() {
            Some(text) if valid_url(text) => {
                document.insert("url".into(), text.into());
                document.insert("uri".into(), text.into());
            }
            Some(text) => errors.push(
                field,
                "format",
                json!({
                    "message": "Must be an absolute http or https URL",
                    "target": "uri",
                    "value": text,
                }),
            ),
            None => errors.wrong_type(field, "string", &value),
        }
    }
    match document.get("events") {
        None | Some(Value::Null) => {
            // Kazoo's `hook` (`all`, `notifications`, any other) subscribes to every
            // device event; so does a seed-shaped hook without `events`.
            document.insert("events".into(), json!([ALL_EVENTS]));
        }
        Some(Value::Array(names)) if names.is_empty() => errors.push(
            "events",
            "minItems",
            json!({"message": "At least one event is needed", "target": 1}),
        ),
        Some(Value::Array(names)) => {
            for name in names {
                if !name.as_str().is_some_and(known_event) {
                    errors.push(
                        "events",
                        "enum",
                        json!({
                            "message": "Value not found in enumerated list of values: * or device.<registered|refreshed|unregistered|expired|auth_failed|rejected|offline|online…> or security.<banned|unbanned>",
                            "value": name,
                        }),
                    );
                }
            }
        }
        Some(other) => errors.wrong_type("events", "array", &other.clone()),
    }
    if let Some(hook) = document.get("hook")
        && !hook.is_string()
    {
        errors.wrong_type("hook", "string", &hook.clone());
    }
    if let Some(name) = document.get("name") {
        errors.string_length("name", &name.clone(), 1, 128);
    }
    match document.get("http_verb") {
        None | Some(Value::Null) => {
            document.insert("http_verb".into(), "post".into());
        }
        Some(Value::String(verb))
            if matches!(verb.to_ascii_lowercase().as_str(), "post" | "put" | "get") =>
        {
            let verb = verb.to_ascii_lowercase();
            document.insert("http_verb".into(), verb.into());
        }
        Some(other) => errors.push(
            "http_verb",
            "enum",
            json!({
                "message": "Value not found in enumerated list of values",
                "target": ["get", "post", "put"],
                "value": other,
            }),
        ),
    }
    match document.get("retries") {
        None | Some(Value::Null) => {
            document.insert("retries".into(), DEFAULT_RETRIES.into());
        }
        Some(value) => match value.as_u64() {
            Some(retries) if retries <= MAX_RETRIES => {}
            Some(_) => errors.push(
                "retries",
                "maximum",
                json!({"message": "Value is above the maximum allowed", "target": MAX_RETRIES, "value": value}),
            ),
            None if value.as_i64().is_some() => errors.push(
                "retries",
                "minimum",
                json!({"message": "Value is below the minimum allowed", "target": 0, "value": value}),
            ),
            None => errors.wrong_type("retries", "integer", &value.clone()),
        },
    }
    for (field, default) in [("enabled", true), ("include_subaccounts", false)] {
        match document.get(field) {
            None | Some(Value::Null) => {
                document.insert(field.into(), default.into());
            }
            Some(Value::Bool(_)) => {}
            Some(other) => errors.wrong_type(field, "boolean", &other.clone()),
        }
    }
    match document.get("custom_data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(custom)) => {
            for (key, value) in custom {
                if !value.is_string() {
                    errors.wrong_type(&format!("custom_data.{key}"), "string", value);
                }
            }
        }
        Some(other) => errors.wrong_type("custom_data", "object", &other.clone()),
    }
    let secret = match document.remove("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(secret)) if (16..=256).contains(&secret.len()) => Some(secret),
        Some(value) => {
            errors.string_length("secret", &value, 16, 256);
            None
        }
    };
    // Kazoo's summary field is written by us, never by the client.
    document.remove("disable_reason");
    errors.into_result()?;
    Ok((document, secret))
}

fn valid_url(text: &str) -> bool {
    reqwest::Url::parse(text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty())
    })
}

/// The hook as answered: its document with `id`, `enabled` and, when disabled by failures,
/// Kazoo's `disable_reason`. Never the secret.
fn render(hook: &Webhook) -> Value {
    let mut document = match &hook.document {
        Value::Object(document) => document.clone(),
        _ => Map::new(),
    };
    document.insert("id".into(), hook.id.clone().into());
    document.insert("enabled".into(), hook.enabled.into());
    match &hook.disabled_reason {
        Some(reason) if !hook.enabled => {
            document.insert("disable_reason".into(), reason.clone().into());
        }
        _ => {
            document.remove("disable_reason");
        }
    }
    Value::Object(document)
}

/// `evt_<history id>`: the event id the receiver sees (body `eventId`, header
/// `X-Switchboard-Event-Id`), the same on every retry.
pub(crate) fn public_event_id(event_id: i64) -> String {
    crate::monitoring::public_event_id(event_id)
}

fn attempt_row(attempt: &Attempt) -> Value {
    json!({
        "id": attempt.id,
        "hook_id": attempt.hook_id,
        "delivery_id": attempt.delivery_id,
        "event": attempt.event_name,
        "event_id": public_event_id(attempt.event_id),
        "timestamp": delivery::rfc3339(attempt.at_ms),
        "result": if attempt.success { "success" } else { "failure" },
        "http_status": attempt.http_status,
        "reason": attempt.error,
        "duration_ms": attempt.duration_ms,
    })
}

/// The hook `webhook_id` of `account`; 404 `bad_identifier` when it is missing or belongs to
/// another account.
async fn load(state: &ApiState, account: &Account, webhook_id: &str) -> Result<Webhook, ApiError> {
    let id = webhook_id.to_owned();
    let hook = state.blocking(move |store| store.webhook(&id)).await?;
    hook.filter(|hook| hook.account_id == account.id)
        .ok_or_else(|| ApiError::BadIdentifier(webhook_id.to_owned()))
}

fn limit(request: &ApiRequest) -> Result<usize, ApiError> {
    match request.param("limit") {
        None => Ok(DEFAULT_ATTEMPTS),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_ATTEMPTS).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must lie between 1 and {MAX_ATTEMPTS}"))
            }),
    }
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "The account's webhooks (documents with `id`, `url`/`uri`, `events`, `enabled`, `disable_reason` when failures disabled it; never the secret), by id", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::WEBHOOKS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let hooks = state
        .blocking(move |store| store.webhooks(&account.id))
        .await?;
    let rows: Vec<Value> = hooks.iter().map(render).collect();
    Ok(Reply::ok(Value::Array(rows)).token(Some(caller.token)))
}

async fn create_hook(
    state: ApiState,
    account_id: String,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::WEBHOOKS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let (fields, _) = request_fields(&request)?;
    let (mut document, secret) = normalise(public(fields))?;
    let id = new_id();
    document.insert("id".into(), id.clone().into());
    let now = crate::now_ms();
    let hook = Webhook {
        id: id.clone(),
        account_id: account.id.clone(),
        enabled: document
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        document: Value::Object(document),
        disabled_reason: None,
        secret: secret.unwrap_or_else(new_secret),
        failure_streak: 0,
        created_ms: now,
        modified_ms: now,
    };
    let stored = hook.clone();
    state
        .blocking(move |store| store.create_webhook(&stored))
        .await?;
    tracing::info!(account_id = %account.id, webhook_id = %id, "webhook created");
    let mut answer = render(&hook);
    if let Value::Object(answer) = &mut answer {
        // Shown once: the receiver needs it to check signatures.
        answer.insert("secret".into(), hook.secret.clone().into());
    }
    Ok(Reply::created(answer).token(Some(caller.token)))
}

#[utoipa::path(
    put,
    path = "/accounts/{account_id}/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    params(openapi::AccountPath),
    request_body = openapi::WebhookRequest,
    responses(
        (status = 201, description = "The new webhook, with its signing `secret` (shown only here)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    create_hook(state, account_id, request).await
}

#[utoipa::path(
    post,
    path = "/accounts/{account_id}/webhooks",
    operation_id = "create_webhook_post",
    tag = "webhooks",
    params(openapi::AccountPath),
    request_body = openapi::WebhookRequest,
    responses(
        (status = 201, description = "The new webhook, with its signing `secret` (shown only here); the same as PUT", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn create_post(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    create_hook(state, account_id, request).await
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/webhooks/{webhook_id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    params(openapi::WebhookPath),
    responses(
        (status = 200, description = "The webhook", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    Path((account_id, webhook_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::WEBHOOKS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let hook = load(&state, &account, &webhook_id).await?;
    Ok(Reply::ok(render(&hook)).token(Some(caller.token)))
}

/// The common path of `POST` and `PATCH`: `build` makes the new document from the stored one
/// and the request's fields.
async fn update(
    state: ApiState,
    account_id: String,
    webhook_id: String,
    request: ApiRequest,
    build: fn(Document, Document) -> Document,
) -> Result<Reply, ApiError> {
    let caller: Caller = authorize(&state, &request, scope::WEBHOOKS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let _guard = state.lock_device(&webhook_id).await;
    let old = load(&state, &account, &webhook_id).await?;
    let (fields, reenable) = request_fields(&request)?;
    let mut stored = match &old.document {
        Value::Object(document) => public(document.clone()),
        _ => Map::new(),
    };
    if fields.contains_key("url") || fields.contains_key("uri") {
        // The client names the URL by one of its two names: the other follows.
        stored.remove("url");
        stored.remove("uri");
    }
    let asks_enabled = fields.get("enabled") == Some(&Value::Bool(true));
    let (mut document, secret) = normalise(build(stored, public(fields)))?;
    if reenable {
        document.insert("enabled".into(), true.into());
    }
    document.insert("id".into(), old.id.clone().into());
    let enabled = document
        .get("enabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    // Disabled by failures and not asked to come back: it stays off with its reason.
    let stays_disabled =
        !old.enabled && old.disabled_reason.is_some() && !(reenable || asks_enabled);
    let hook = Webhook {
        enabled: enabled && !stays_disabled,
        disabled_reason: if enabled && !stays_disabled {
            None
        } else {
            old.disabled_reason.clone()
        },
        document: Value::Object(document),
        secret: secret.unwrap_or_else(|| old.secret.clone()),
        modified_ms: crate::now_ms().max(old.modified_ms + 1),
        ..old
    };
    let stored = hook.clone();
    state
        .blocking(move |store| store.update_webhook(&stored))
        .await?;
    tracing::info!(account_id = %account.id, webhook_id = %hook.id, enabled = hook.enabled, "webhook updated");
    let fresh = state
        .blocking(move |store| store.webhook(&hook.id))
        .await?
        .ok_or_else(|| ApiError::BadIdentifier(webhook_id.clone()))?;
    Ok(Reply::ok(render(&fresh)).token(Some(caller.token)))
}

#[utoipa::path(
    post,
    path = "/accounts/{account_id}/webhooks/{webhook_id}",
    operation_id = "replace_webhook",
    tag = "webhooks",
    params(openapi::WebhookPath),
    request_body = openapi::WebhookRequest,
    responses(
        (status = 200, description = "The webhook as stored (the body replaces it)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn replace(
    State(state): State<ApiState>,
    Path((account_id, webhook_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    update(state, account_id, webhook_id, request, |_stored, data| data).await
}

#[utoipa::path(
    patch,
    path = "/accounts/{account_id}/webhooks/{webhook_id}",
    operation_id = "patch_webhook",
    tag = "webhooks",
    params(openapi::WebhookPath),
    request_body = openapi::WebhookRequest,
    responses(
        (status = 200, description = "The webhook as stored (the body merged into it). `{\"data\":{\"enabled\":true}}` or Kazoo's `{\"re-enable\":true}` turns a hook disabled by failures back on and clears its failure streak", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn patch(
    State(state): State<ApiState>,
    Path((account_id, webhook_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    update(
        state,
        account_id,
        webhook_id,
        request,
        |mut stored, data| {
            merge_patch(&mut stored, data);
            stored
        },
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/accounts/{account_id}/webhooks/{webhook_id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    params(openapi::WebhookPath),
    responses(
        (status = 200, description = "The deleted webhook; its pending deliveries and attempts are gone", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    Path((account_id, webhook_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::WEBHOOKS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let _guard = state.lock_device(&webhook_id).await;
    let hook = load(&state, &account, &webhook_id).await?;
    let id = hook.id.clone();
    match state.blocking(move |store| store.delete_webhook(&id)).await {
        Ok(()) | Err(ApiError::BadIdentifier(_)) => {}
        Err(error) => return Err(error),
    }
    tracing::info!(account_id = %account.id, webhook_id = %hook.id, "webhook deleted");
    Ok(Reply::ok(render(&hook)).token(Some(caller.token)))
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/webhooks/{webhook_id}/attempts",
    operation_id = "list_webhook_attempts",
    tag = "webhooks",
    params(openapi::WebhookPath, openapi::AttemptLimit),
    responses(
        (status = 200, description = "The hook's delivery attempts, newest first: `hook_id`, `event`, `event_id`, `timestamp`, `result` (success|failure), `http_status`, `reason`, `duration_ms`", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn attempts(
    State(state): State<ApiState>,
    Path((account_id, webhook_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::WEBHOOKS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let limit = limit(&request)?;
    let hook = load(&state, &account, &webhook_id).await?;
    let found = state
        .blocking(move |store| store.webhook_attempts(&account.id, Some(&hook.id), limit))
        .await?;
    let rows: Vec<Value> = found.iter().map(attempt_row).collect();
    Ok(Reply::ok(Value::Array(rows)).token(Some(caller.token)))
}

#[utoipa::path(
    get,
    path = "/accounts/{account_id}/webhooks/attempts",
    operation_id = "list_account_webhook_attempts",
    tag = "webhooks",
    params(openapi::AccountPath, openapi::AttemptLimit),
    responses(
        (status = 200, description = "Delivery attempts of every hook of the account, newest first", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn account_attempts(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let caller = authorize(&state, &request, scope::WEBHOOKS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let limit = limit(&request)?;
    let found = state
        .blocking(move |store| store.webhook_attempts(&account.id, None, limit))
        .await?;
    let rows: Vec<Value> = found.iter().map(attempt_row).collect();
    Ok(Reply::ok(Value::Array(rows)).token(Some(caller.token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("object"),
        }
    }

    fn errors(value: Value) -> Value {
        match normalise(object(value)) {
            Err(ApiError::Validation(data)) => data,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn the_seed_shape_is_normalised() {
        let (document, secret) = normalise(object(json!({
            "url": "https://example.com/in",
            "events": ["device.registered", "device.offline"],
        })))
        .expect("valid");
        assert_eq!(secret, None);
        assert_eq!(document["url"], "https://example.com/in");
        assert_eq!(document["uri"], "https://example.com/in");
        assert_eq!(
            document["events"],
            json!(["device.registered", "device.offline"])
        );
        assert_eq!(document["http_verb"], "post");
        assert_eq!(document["retries"], DEFAULT_RETRIES);
        assert_eq!(document["enabled"], true);
        assert_eq!(document["include_subaccounts"], false);
    }

    #[test]
    fn the_kazoo_shape_is_normalised() {
        let (document, secret) = normalise(object(json!({
            "name": "ops",
            "uri": "http://10.0.0.1:8080/hook",
            "hook": "notifications",
            "http_verb": "PUT",
            "retries": 0,
            "custom_data": {"tenant": "x"},
            "secret": "0123456789abcdef",
        })))
        .expect("valid");
        assert_eq!(secret.as_deref(), Some("0123456789abcdef"));
        assert!(!document.contains_key("secret"));
        assert_eq!(document["url"], "http://10.0.0.1:8080/hook");
        assert_eq!(document["events"], json!(["*"]));
        assert_eq!(document["http_verb"], "put");
        assert_eq!(document["retries"], 0);
    }

    #[test]
    fn every_bad_field_is_named() {
        let found = errors(json!({
            "url": "ftp://example.com/x",
            "events": ["device.registered", "call.started"],
            "http_verb": "delete",
            "retries": 5,
            "enabled": "yes",
            "custom_data": {"n": 1},
        }));
        assert!(found["url"]["format"].is_object(), "{found}");
        assert_eq!(found["events"]["enum"]["value"], "call.started");
        assert!(found["http_verb"]["enum"].is_object());
        assert_eq!(found["retries"]["maximum"]["target"], 4);
        assert!(found["enabled"]["type"].is_object());
        assert!(found["custom_data.n"]["type"].is_object());
        assert!(errors(json!({"events": ["*"]}))["url"]["required"].is_object());
        assert!(errors(json!({"hook": "all"}))["uri"]["required"].is_object());
        assert!(errors(json!({"uri": "/relative"}))["uri"]["format"].is_object());
        assert!(
            errors(json!({"url": "http://a/", "retries": -1}))["retries"]["minimum"].is_object()
        );
        assert!(
            errors(json!({"url": "http://a/", "events": []}))["events"]["minItems"].is_object()
        );
        assert!(
            errors(json!({"url": "http://a/", "secret": "short"}))["secret"]["minLength"]
                .is_object()
        );
    }

    #[test]
    fn new_event_kinds_are_known_without_a_list_here() {
        assert!(known_event("*"));
        assert!(known_event("device.registered"));
        assert!(known_event("device.auth_failed"));
        assert!(!known_event("device.bogus"));
        assert!(known_event("security.banned"));
        assert!(!known_event("device.banned"));
        assert!(!known_event("registered"));
        assert_eq!(event_name(EventKind::Online), "device.online");
    }

    #[test]
    fn secrets_are_32_random_bytes_in_hex() {
        let (one, two) = (new_secret(), new_secret());
        assert_eq!(one.len(), 64);
        assert_ne!(one, two);
    }
}
