//! SIP NOTIFY to a device's registered contacts: `POST …/devices/{id}/sync` (Kazoo's
//! `check-sync`, `;reboot=true` on request), `PUT …/devices/{id}/notify` and its tunnelled
//! form `PUT …/devices/{id}` with `{"action": "notify"}` (schema `devices_notify`).
//!
//! The request is sent through [`crate::SipControl::notify`] to every binding of the device,
//! and the answer waits for the device: 202 with Kazoo's data string when a binding answered
//! 2xx; 404 `device not registered` when it has no reachable binding; 504 when none answered
//! before the SIP timeout; 502 when it refused. The error `data` lists each binding's result.

use axum::extract::{Path, State};
use serde_json::{Map, Value, json};
use switchboard_schema::Schemas;

use crate::auth::{authorize, scope};
use crate::envelope::Reply;
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState};

/// What to send: the Event header value and an optional `(Content-Type, body)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRequest {
    pub event: String,
    pub body: Option<(String, Vec<u8>)>,
}

/// How the NOTIFY to one binding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyResult {
    /// The device's final status code.
    Answered(u16),
    /// No final response before the SIP timeout.
    TimedOut,
    /// Nothing to send it on (the binding's connection closed).
    NoRoute,
}

/// One binding's NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingNotify {
    pub contact: String,
    pub transport: String,
    pub result: NotifyResult,
}

/// Kazoo's default `check_sync_event`, and the suffixes for `?reboot=true|false`.
pub(crate) const CHECK_SYNC: &str = "check-sync";

fn result_json(outcomes: &[BindingNotify]) -> Value {
    Value::Array(
        outcomes
            .iter()
            .map(|outcome| {
                let (result, status) = match outcome.result {
                    NotifyResult::Answered(code) => ("answered", Some(code)),
                    NotifyResult::TimedOut => ("timeout", None),
                    NotifyResult::NoRoute => ("no_route", None),
                };
                json!({
                    "contact": outcome.contact,
                    "transport": outcome.transport,
                    "result": result,
                    "status_code": status,
                })
            })
            .collect(),
    )
}

/// The answer for a device's outcomes: any 2xx is success; else a timeout says so; else a
/// refusal; a device with nothing reachable is not registered.
pub(crate) fn conclude(
    device_id: &str,
    outcomes: &[BindingNotify],
    sent: &'static str,
) -> Result<Value, ApiError> {
    let answered = |ok: bool| {
        outcomes.iter().any(|outcome| {
            matches!(outcome.result, NotifyResult::Answered(code) if (200..300).contains(&code) == ok)
        })
    };
    if answered(true) {
        return Ok(Value::String(sent.to_owned()));
    }
    let detail = result_json(outcomes);
    if outcomes
        .iter()
        .any(|outcome| outcome.result == NotifyResult::TimedOut)
    {
        return Err(ApiError::DeviceTimeout {
            device_id: device_id.to_owned(),
            bindings: detail,
        });
    }
    if answered(false) {
        return Err(ApiError::DeviceRefused {
            device_id: device_id.to_owned(),
            bindings: detail,
        });
    }
    Err(ApiError::NotRegistered(device_id.to_owned()))
}

/// Checks the caller and that the device is the account's; sends; concludes.
async fn send(
    state: &ApiState,
    request: &ApiRequest,
    account_id: &str,
    device_id: &str,
    notify: NotifyRequest,
    sent: &'static str,
) -> Result<Reply, ApiError> {
    let caller = authorize(state, request, scope::REGISTRATIONS_WRITE).await?;
    let account = caller.reach(state, account_id).await?;
    let id = device_id.to_owned();
    let device = state.blocking(move |store| store.device(&id)).await?;
    if device.is_none_or(|device| device.account_id != account.id) {
        return Err(ApiError::BadIdentifier(device_id.to_owned()));
    }
    let outcomes = state.sip().notify(&account.id, device_id, notify).await;
    tracing::info!(account_id = %account.id, %device_id, bindings = outcomes.len(), "notify sent");
    let data = conclude(device_id, &outcomes, sent)?;
    Ok(Reply::accepted(data).token(Some(caller.token)))
}

/// `POST …/devices/{id}/sync`.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/devices/{device_id}/sync",
    operation_id = "sync_device",
    tag = "notify",
    params(openapi::DevicePath, ("reboot" = Option<bool>, Query, description = "`true`: `Event: check-sync;reboot=true`; `false`: `;reboot=false`; absent: `check-sync`")),
    responses(
        (status = 202, description = "`sync request sent`: a registration answered 2xx", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
        (status = 404, description = "`bad_identifier` (no such account or device), or `device not registered`: the device has no reachable registration", body = openapi::ErrorEnvelope),
        (status = 502, description = "The device refused the NOTIFY (`data.bindings`: each registration's result)", body = openapi::ErrorEnvelope),
        (status = 504, description = "No registration answered before the SIP timeout (`data.bindings`: each registration's result)", body = openapi::ErrorEnvelope),
    ),
)]
pub(crate) async fn sync(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let event = match request.param("reboot").as_deref() {
        Some("true") => format!("{CHECK_SYNC};reboot=true"),
        Some("false") => format!("{CHECK_SYNC};reboot=false"),
        _ => CHECK_SYNC.to_owned(),
    };
    let notify = NotifyRequest { event, body: None };
    send(
        &state,
        &request,
        &account_id,
        &device_id,
        notify,
        "sync request sent",
    )
    .await
}

/// `PUT …/devices/{id}/notify`.
#[utoipa::path(
    put,
    path = "/accounts/{account_id}/devices/{device_id}/notify",
    operation_id = "notify_device",
    tag = "notify",
    params(openapi::DevicePath),
    request_body = openapi::NotifyBody,
    responses(
        (status = 202, description = "`NOTIFY sent`: a registration answered 2xx", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
        (status = 404, description = "`bad_identifier` (no such account or device), or `device not registered`: the device has no reachable registration", body = openapi::ErrorEnvelope),
        (status = 502, description = "The device refused the NOTIFY (`data.bindings`: each registration's result)", body = openapi::ErrorEnvelope),
        (status = 504, description = "No registration answered before the SIP timeout (`data.bindings`: each registration's result)", body = openapi::ErrorEnvelope),
    ),
)]
pub(crate) async fn notify(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let notify = notify_request(request.data()?)?;
    send(
        &state,
        &request,
        &account_id,
        &device_id,
        notify,
        "NOTIFY sent",
    )
    .await
}

/// `PUT …/devices/{id}`: Kazoo's action tunnel; only `notify` is an action of devices.
#[utoipa::path(
    put,
    path = "/accounts/{account_id}/devices/{device_id}",
    operation_id = "device_action",
    tag = "notify",
    params(openapi::DevicePath),
    request_body = openapi::NotifyBody,
    responses(
        (status = 202, description = "`NOTIFY sent`: a registration answered 2xx (the body's `action` must be `notify`, else 400)", body = openapi::SuccessEnvelope),
        openapi::AuthenticatedErrors,
        (status = 404, description = "`bad_identifier` (no such account or device), or `device not registered`: the device has no reachable registration", body = openapi::ErrorEnvelope),
        (status = 502, description = "The device refused the NOTIFY (`data.bindings`: each registration's result)", body = openapi::ErrorEnvelope),
        (status = 504, description = "No registration answered before the SIP timeout (`data.bindings`: each registration's result)", body = openapi::ErrorEnvelope),
    ),
)]
pub(crate) async fn action(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    match request.param("action").as_deref() {
        None => Err(ApiError::BadRequest("action required".to_owned())),
        Some("notify") => {
            let notify = notify_request(request.data()?)?;
            send(
                &state,
                &request,
                &account_id,
                &device_id,
                notify,
                "NOTIFY sent",
            )
            .await
        }
        Some(_) => Err(ApiError::BadRequest("invalid action".to_owned())),
    }
}

/// One `invalid` error as its own validation failure (a value the schema allows but SIP
/// cannot carry, e.g. a line break in a header value).
fn invalid(path: &str, message: &str, value: &str) -> ApiError {
    ApiError::Validation(json!({ path: { "invalid": { "message": message, "value": value } } }))
}

/// The NOTIFY described by a request's `data`, checked against `devices_notify`. Kazoo's
/// request data is the schema's document (`{"action"?, "data": {"event", "body"?}}`); a
/// request whose `data` is the inner object itself (`{"data": {"event": …}}` as the whole
/// body) is accepted too.
pub(crate) fn notify_request(data: Map<String, Value>) -> Result<NotifyRequest, ApiError> {
    let mut document = if data.contains_key("data") {
        Value::Object(data)
    } else {
        json!({ "data": data })
    };
    if let Err(errors) = Schemas::kazoo().validate("devices_notify", &mut document) {
        return Err(ApiError::Validation(errors.to_kazoo_data()));
    }
    let inner = &document["data"];
    let event = inner["event"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if event.is_empty() || event.contains(['\r', '\n']) {
        return Err(invalid("data.event", "Event must be one line", &event));
    }
    let body = match &inner["body"] {
        Value::Object(body) => {
            let content_type = body
                .get("content_type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_owned();
            if content_type.is_empty() || content_type.contains(['\r', '\n']) {
                return Err(invalid(
                    "data.body.content_type",
                    "Content-Type must be one line",
                    &content_type,
                ));
            }
            let bytes = body
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .as_bytes()
                .to_vec();
            Some((content_type, bytes))
        }
        _ => None,
    };
    Ok(NotifyRequest { event, body })
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

    #[test]
    fn both_body_shapes_are_read() {
        let kazoo = notify_request(object(json!({
            "action": "notify",
            "data": {"event": "check-sync", "body": {"content_type": "text/plain", "data": "hi"}}
        })))
        .expect("valid");
        assert_eq!(kazoo.event, "check-sync");
        assert_eq!(kazoo.body, Some(("text/plain".to_owned(), b"hi".to_vec())));
        let flat = notify_request(object(json!({"event": "talk"}))).expect("valid");
        assert_eq!(
            flat,
            NotifyRequest {
                event: "talk".into(),
                body: None
            }
        );
    }

    #[test]
    fn the_schema_is_enforced() {
        match notify_request(object(json!({"data": {"body": {"data": "x"}}}))) {
            Err(ApiError::Validation(data)) => {
                let text = data.to_string();
                assert!(text.contains("event"), "{text}");
                assert!(text.contains("content_type"), "{text}");
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        assert!(notify_request(object(json!({"event": "a\r\nVia: x"}))).is_err());
    }

    fn outcome(result: NotifyResult) -> BindingNotify {
        BindingNotify {
            contact: "sip:a@192.0.2.1".into(),
            transport: "udp".into(),
            result,
        }
    }

    #[test]
    fn any_2xx_is_success_then_timeouts_then_refusals() {
        let ok = [
            outcome(NotifyResult::TimedOut),
            outcome(NotifyResult::Answered(200)),
        ];
        assert_eq!(conclude("d", &ok, "sent").expect("ok"), json!("sent"));
        let late = [
            outcome(NotifyResult::Answered(481)),
            outcome(NotifyResult::TimedOut),
        ];
        assert!(matches!(
            conclude("d", &late, "sent"),
            Err(ApiError::DeviceTimeout { .. })
        ));
        let refused = [outcome(NotifyResult::Answered(489))];
        assert!(matches!(
            conclude("d", &refused, "sent"),
            Err(ApiError::DeviceRefused { .. })
        ));
        assert!(matches!(
            conclude("d", &[], "sent"),
            Err(ApiError::NotRegistered(_))
        ));
        let gone = [outcome(NotifyResult::NoRoute)];
        assert!(matches!(
            conclude("d", &gone, "sent"),
            Err(ApiError::NotRegistered(_))
        ));
    }
}
