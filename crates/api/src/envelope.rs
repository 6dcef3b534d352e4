//! Kazoo's success envelope: `{auth_token, status, request_id, node, version, timestamp,
//! revision, data, page_size/start_key/next_start_key}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// The fields every envelope (success or error) carries.
pub(crate) fn base(auth_token: Option<&str>) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("auth_token".into(), auth_token.unwrap_or_default().into());
    body.insert("request_id".into(), switchboard_model::new_id().into());
    body.insert("node".into(), NODE.with(|node| node.clone()).into());
    body.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    body.insert("timestamp".into(), timestamp(crate::now_ms()).into());
    body
}

thread_local! {
    static NODE: String = crate::node_name();
}

pub(crate) fn json_response(status: StatusCode, body: &Value, etag: Option<&str>) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(etag) = etag
        && let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\""))
    {
        headers.insert(header::ETAG, value);
    }
    response
}

/// Where a paginated list stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub page_size: usize,
    pub start_key: Option<String>,
    pub next_start_key: Option<String>,
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    data: Value,
    auth_token: Option<String>,
    revision: Option<String>,
    etag: bool,
    page: Option<Page>,
}

impl Reply {
    pub fn ok(data: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            data,
            auth_token: None,
            revision: None,
            etag: false,
            page: None,
        }
    }

    pub fn created(data: Value) -> Self {
        Reply {
            status: StatusCode::CREATED,
            ..Reply::ok(data)
        }
    }

    /// Kazoo's `response_202`: the request was passed on.
    pub fn accepted(data: Value) -> Self {
        Reply {
            status: StatusCode::ACCEPTED,
            ..Reply::ok(data)
        }
    }

    pub fn token(mut self, token: Option<String>) -> Self {
        self.auth_token = token;
        self
    }

    /// A single document: its revision in the envelope and as the `ETag`.
    pub fn document_revision(mut self, revision: String) -> Self {
        self.revision = Some(revision);
        self.etag = true;
        self
    }

    pub fn page(mut self, page: Page) -> Self {
        self.page = Some(page);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut body = base(self.auth_token.as_deref());
        body.insert("status".into(), "success".into());
        // Lists and other answers without a document revision: an md5-like digest of the
        // data, as Kazoo's `automatic` revision.
        let revision = self.revision.clone().unwrap_or_else(|| {
            let text = serde_json::to_string(&self.data).unwrap_or_default();
            crate::devices::digest(text.as_bytes())
        });
        body.insert("revision".into(), revision.clone().into());
        if let Some(page) = self.page {
            body.insert("page_size".into(), page.page_size.into());
            if let Some(start) = page.start_key {
                body.insert("start_key".into(), start.into());
            }
            if let Some(next) = page.next_start_key {
                body.insert("next_start_key".into(), next.into());
            }
        }
        body.insert("data".into(), self.data);
        let etag = self.etag.then_some(revision);
        json_response(self.status, &Value::Object(body), etag.as_deref())
    }
}

/// RFC 3339 in UTC to the second: `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(unix_ms: i64) -> String {
    format!("{}Z", timestamp(unix_ms))
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, the envelope's timestamp format.
pub(crate) fn timestamp(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = switchboard_model::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00");
        assert_eq!(timestamp(1_704_067_200_000), "2024-01-01T00:00:00");
        assert_eq!(
            timestamp(1_709_208_000_000 + 3_661_000),
            "2024-02-29T13:01:01"
        );
    }
}
