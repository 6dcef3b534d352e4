//! The one extractor every handler takes: the request's JSON envelope (content type, size
//! and syntax checked here, once), its query string, and the auth token wherever Kazoo
//! accepts it.

use std::collections::HashMap;

use axum::extract::{FromRequest, Query, Request};
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use crate::{ApiError, ApiState, MAX_BODY_BYTES};

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct ApiRequest {
    pub headers: HeaderMap,
    pub query: HashMap<String, String>,
    /// The request envelope, when there was a body.
    pub envelope: Option<Map<String, Value>>,
}

impl ApiRequest {
    /// The credential (a token, or an API key used directly) from `X-Auth-Token`,
    /// `Authorization: Bearer`, or the body's `auth_token`.
    pub fn token(&self) -> Option<String> {
        if let Some(token) = header_token(&self.headers) {
            return Some(token);
        }
        self.envelope
            .as_ref()
            .and_then(|envelope| envelope.get("auth_token"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The envelope's `data` object; a missing body or `data` is an empty object.
    pub fn data(&self) -> Result<Map<String, Value>, ApiError> {
        match self
            .envelope
            .as_ref()
            .and_then(|envelope| envelope.get("data"))
        {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(data)) => Ok(data.clone()),
            Some(_) => Err(ApiError::Parse("data must be a JSON object".to_owned())),
        }
    }

    /// A request parameter, looked up as Kazoo does: in `data`, then the query string, then
    /// the envelope.
    pub fn param(&self, name: &str) -> Option<String> {
        let text = |value: &Value| match value {
            Value::String(text) => Some(text.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        let envelope = self.envelope.as_ref();
        envelope
            .and_then(|envelope| envelope.get("data"))
            .and_then(|data| data.get(name))
            .and_then(text)
            .or_else(|| self.query.get(name).cloned())
            .or_else(|| {
                envelope
                    .and_then(|envelope| envelope.get(name))
                    .and_then(text)
            })
    }

    /// The revision named by `If-Match` (quotes and a weak prefix removed); `None` when absent
    /// or `*`.
    pub fn if_match(&self) -> Option<String> {
        let value = self.headers.get(header::IF_MATCH)?.to_str().ok()?.trim();
        let value = value.strip_prefix("W/").unwrap_or(value).trim_matches('"');
        (value != "*").then(|| value.to_owned())
    }
}

/// The token from `X-Auth-Token` or `Authorization: Bearer`.
pub(crate) fn header_token(headers: &HeaderMap) -> Option<String> {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|text| !text.is_empty())
    };
    if let Some(token) = header_text("x-auth-token") {
        return Some(token.to_owned());
    }
    let authorization = header_text(header::AUTHORIZATION.as_str())?;
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Whether a Content-Type names a body we parse as JSON. Kazoo's own curl examples send JSON
/// with `-d` (form-urlencoded), so that is accepted too.
fn json_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence == "application/x-www-form-urlencoded"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A non-blank body as the Kazoo envelope: a JSON object, or [`ApiError::Parse`].
pub(crate) fn parse_envelope(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(envelope)) => Ok(envelope),
        Ok(_) => Err(ApiError::Parse("the body must be a JSON object".to_owned())),
        Err(error) => Err(ApiError::Parse(error.to_string())),
    }
}

impl FromRequest<ApiState> for ApiRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &ApiState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|Query(query)| query)
            .unwrap_or_default();
        let declared_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
            return Err(ApiError::TooLarge);
        }
        // Reading stops at the limit: a body without a Content-Length cannot exceed it either.
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::TooLarge)?;
        let envelope = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
                let text = content_type.to_str().unwrap_or_default();
                if !json_content_type(text) {
                    return Err(ApiError::UnsupportedMediaType(text.to_owned()));
                }
            }
            Some(parse_envelope(&bytes)?)
        };
        Ok(ApiRequest {
            headers: parts.headers,
            query,
            envelope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(json_content_type("application/json"));
        assert!(json_content_type("Application/JSON; charset=utf-8"));
        assert!(json_content_type("application/merge-patch+json"));
        assert!(json_content_type("application/x-www-form-urlencoded"));
        assert!(!json_content_type("text/xml"));
        assert!(!json_content_type("multipart/form-data; boundary=x"));
    }
}
