//! The one error type of the API and its one mapping to Kazoo's error envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard_store::StoreError;

use crate::envelope;

/// Everything a request can fail with, each mapped to HTTP in [`ApiError::parts`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (or not the envelope's shape).
    #[error("failed to parse request body: {0}")]
    Parse(String),
    /// The body's Content-Type is not JSON.
    #[error("unsupported content type {0}")]
    UnsupportedMediaType(String),
    /// The body is larger than [`crate::MAX_BODY_BYTES`].
    #[error("request body too large")]
    TooLarge,
    /// No token, a bad or expired token, or a failed login.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The token is valid but the account is not the caller's nor one of its descendants.
    #[error("forbidden")]
    Forbidden,
    /// The credentials are valid but do not hold the scope the request needs.
    #[error("missing scope {0}")]
    MissingScope(&'static str),
    /// No such account or document (the id is echoed as `cause`).
    #[error("bad identifier {0}")]
    BadIdentifier(String),
    /// No such path.
    #[error("not found")]
    NoSuchPath,
    /// A known path with a method it does not serve.
    #[error("invalid method")]
    InvalidMethod,
    /// Kazoo's validation error: `data` is `{dotted.path: {code: {message, ...}}}`.
    #[error("validation error")]
    Validation(Value),
    /// A request that is well-formed but not allowed in this state (e.g. deleting an account
    /// that has sub-accounts).
    #[error("{0}")]
    BadRequest(String),
    /// The client's token bucket is empty (Kazoo's 429); retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests(u64),
    /// A NOTIFY was asked for a device with no reachable registration.
    #[error("device {0} not registered")]
    NotRegistered(String),
    /// No binding of the device answered the NOTIFY before the SIP timeout.
    #[error("device {device_id} did not answer")]
    DeviceTimeout { device_id: String, bindings: Value },
    /// The device answered the NOTIFY with an error status.
    #[error("device {device_id} refused the request")]
    DeviceRefused { device_id: String, bindings: Value },
    /// `If-Match` named a revision that is no longer current.
    #[error("precondition failed")]
    PreconditionFailed,
    /// A concurrent write won (Kazoo's `datastore_conflict`).
    #[error("conflicting documents")]
    Conflict,
    /// The store failed.
    #[error("datastore fault: {0}")]
    Datastore(String),
    /// A bug or a failed task.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(_) => ApiError::Conflict,
            StoreError::NotFound => ApiError::BadIdentifier(String::new()),
            StoreError::Backend(message) => ApiError::Datastore(message),
            StoreError::Closed => ApiError::Datastore("store closed".to_owned()),
        }
    }
}

impl ApiError {
    /// HTTP status, envelope `status`, envelope `message`, and `data`.
    fn parts(&self) -> (StatusCode, &'static str, String, Value) {
        let system = |text: &str| json!({ "message": text });
        match self {
            ApiError::Parse(detail) => (
                StatusCode::BAD_REQUEST,
                "error",
                "parse_error".to_owned(),
                json!({ "message": "failed to parse request body", "cause": detail }),
            ),
            ApiError::UnsupportedMediaType(content_type) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "error",
                "unsupported_media_type".to_owned(),
                json!({
                    "message": "content type must be application/json",
                    "cause": content_type,
                }),
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "error",
                "request_too_large".to_owned(),
                json!({
                    "message": "request body too large",
                    "target": crate::MAX_BODY_BYTES,
                }),
            ),
            ApiError::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "error",
                "invalid_credentials".to_owned(),
                system("invalid credentials"),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "error",
                "forbidden".to_owned(),
                system("forbidden"),
            ),
            ApiError::MissingScope(scope) => (
                StatusCode::FORBIDDEN,
                "error",
                "forbidden".to_owned(),
                json!({ "message": format!("missing scope {scope}"), "scope": scope }),
            ),
            ApiError::BadIdentifier(id) => (
                StatusCode::NOT_FOUND,
                "error",
                "bad_identifier".to_owned(),
                json!({ "message": "bad identifier", "cause": id }),
            ),
            ApiError::NoSuchPath => (
                StatusCode::NOT_FOUND,
                "error",
                "not_found".to_owned(),
                system("not found"),
            ),
            ApiError::TooManyRequests(retry_after) => (
                StatusCode::TOO_MANY_REQUESTS,
                "error",
                "too_many_requests".to_owned(),
                json!({ "message": "too many requests", "retry_after": retry_after }),
            ),
            ApiError::InvalidMethod => (
                StatusCode::METHOD_NOT_ALLOWED,
                "error",
                "invalid_method".to_owned(),
                system("invalid method"),
            ),
            ApiError::Validation(data) => (
                StatusCode::BAD_REQUEST,
                "error",
                "validation error".to_owned(),
                data.clone(),
            ),
            ApiError::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                "error",
                message.clone(),
                system(message),
            ),
            ApiError::NotRegistered(device_id) => (
                StatusCode::NOT_FOUND,
                "error",
                "device not registered".to_owned(),
                json!({ "message": "device not registered", "cause": device_id }),
            ),
            ApiError::DeviceTimeout {
                device_id,
                bindings,
            } => (
                StatusCode::GATEWAY_TIMEOUT,
                "error",
                "device did not answer".to_owned(),
                json!({
                    "message": "device did not answer the NOTIFY in time",
                    "cause": device_id,
                    "bindings": bindings,
                }),
            ),
            ApiError::DeviceRefused {
                device_id,
                bindings,
            } => (
                StatusCode::BAD_GATEWAY,
                "error",
                "device refused the NOTIFY".to_owned(),
                json!({
                    "message": "device refused the NOTIFY",
                    "cause": device_id,
                    "bindings": bindings,
                }),
            ),
            ApiError::PreconditionFailed => (
                StatusCode::PRECONDITION_FAILED,
                "error",
                "precondition_failed".to_owned(),
                system("the document was changed since the revision in If-Match"),
            ),
            ApiError::Conflict => (
                StatusCode::CONFLICT,
                "error",
                "datastore_conflict".to_owned(),
                system("conflicting documents"),
            ),
            ApiError::Datastore(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "fatal",
                "datastore_fault".to_owned(),
                system("datastore fault"),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                "unspecified_fault".to_owned(),
                system("unspecified fault"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Datastore(detail) | ApiError::Internal(detail) = &self {
            tracing::warn!(error = %detail, "api request failed");
        }
        let (status, envelope_status, message, data) = self.parts();
        let mut body = envelope::base(None);
        body.insert("status".into(), envelope_status.into());
        body.insert("error".into(), status.as_u16().to_string().into());
        body.insert("message".into(), message.into());
        body.insert("data".into(), data);
        envelope::json_response(status, &Value::Object(body), None)
    }
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::InvalidMethod
}

pub(crate) async fn no_such_path() -> ApiError {
    ApiError::NoSuchPath
}

/// Puts the request's token (from its headers) into the error envelope, as Kazoo echoes it
/// on errors too. Only error answers (small) are rewritten. An API key sent as the credential
/// is never echoed: a secret does not belong in a response body.
pub(crate) async fn echo_token_on_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = crate::request::header_token(request.headers())
        .filter(|credential| crate::token::is_token_shaped(credential));
    let response = next.run(request).await;
    let Some(token) = token else {
        return response;
    };
    if !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return ApiError::Internal("error body unreadable".into()).into_response();
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut envelope)) if envelope.contains_key("auth_token") => {
            envelope.insert("auth_token".into(), token.into());
            envelope::json_response(parts.status, &Value::Object(envelope), None)
        }
        _ => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}
