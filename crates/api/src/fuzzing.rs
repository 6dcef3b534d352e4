//! The pure steps a request body goes through, callable without a server, a store or a token:
//! for the `api_json` fuzz target (`fuzz/`) and tests. Each function is the handler's own code
//! path up to the first store call — the envelope ([`body`]), `data`, the resource's
//! normalisation and validation — so what is fuzzed here is what the API runs.
//!
//! Not a stable interface; hidden from the documentation.

use std::collections::HashMap;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::ApiError;
use crate::devices::{merge_patch, public};
use crate::filters::Filters;
use crate::request::{ApiRequest, parse_envelope};
use crate::{accounts, devices, notify, users, validation, webhooks};

/// A JSON document's top-level object.
pub type Document = Map<String, Value>;

/// A request as the extractor leaves it: the parsed envelope, no headers, and a query string
/// (for the list filters) made of the envelope's top-level members.
#[derive(Debug)]
pub struct Body {
    request: ApiRequest,
}

/// Parses a request body as the extractor does: blank is no envelope (`None`), anything else
/// must be a JSON object ([`ApiError::Parse`] otherwise).
pub fn body(bytes: &[u8]) -> Result<Option<Body>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let envelope = parse_envelope(bytes)?;
    let query: HashMap<String, String> = envelope
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect();
    Ok(Some(Body {
        request: ApiRequest {
            headers: HeaderMap::new(),
            query,
            envelope: Some(envelope),
        },
    }))
}

impl Body {
    /// The envelope's `data` object (`{}` when absent or null).
    pub fn data(&self) -> Result<Document, ApiError> {
        self.request.data()
    }

    /// A request parameter, from `data`, the query string or the envelope.
    pub fn param(&self, name: &str) -> Option<String> {
        self.request.param(name)
    }

    /// The body's `auth_token`.
    pub fn token(&self) -> Option<String> {
        self.request.token()
    }

    /// `PUT /devices` up to the store: the validated document, defaults written in.
    pub fn device_create(&self) -> Result<Document, ApiError> {
        let mut document = public(self.request.data()?);
        validation::device(&mut document)?;
        Ok(document)
    }

    /// `PATCH /devices/{id}` up to the store, onto the stored document `stored` (seed 000's
    /// `settings.registrationExpiry` included).
    pub fn device_patch(&self, stored: &Document) -> Result<Document, ApiError> {
        let data = devices::patch_data(&self.request)?;
        let mut merged = public(stored.clone());
        merge_patch(&mut merged, public(data));
        let mut document = public(merged);
        validation::device(&mut document)?;
        Ok(document)
    }

    /// `PUT /accounts/{id}` up to the store: the account's name and realm as stored, and its
    /// stored document.
    pub fn account_create(&self) -> Result<(String, String, Value), ApiError> {
        let data = self.request.data()?;
        let (name, realm) = accounts::name_and_realm(&data)?;
        Ok((name, realm, accounts::storable(data)))
    }

    /// `PATCH /accounts/{id}` up to the store, onto the document `stored`.
    pub fn account_patch(&self, stored: &Document) -> Result<(String, String), ApiError> {
        let mut merged = stored.clone();
        merge_patch(&mut merged, self.request.data()?);
        accounts::name_and_realm(&merged)
    }

    /// `PUT /users` up to the store: the stored user document (no `password`; its hashes are
    /// kept apart).
    pub fn user_create(&self) -> Result<Document, ApiError> {
        let user = users::build_user(public(self.request.data()?), "u1", "a1", None)?;
        match user.document {
            Value::Object(document) => Ok(document),
            _ => Err(ApiError::Internal("user document is not an object".into())),
        }
    }

    /// `PUT /user_auth`'s schema step.
    pub fn user_auth(&self) -> Result<Document, ApiError> {
        let mut data = self.request.data()?;
        validation::schema("user_auth", &mut data)?;
        Ok(data)
    }

    /// `PUT /api_keys` up to the store: the trimmed name and the scopes.
    pub fn api_key(&self) -> Result<(String, Vec<&'static str>), ApiError> {
        validation::api_key(&self.request.data()?)
    }

    /// `PUT /webhooks` up to the store: the normalised document, its secret, and whether the
    /// body asked for `re-enable`.
    pub fn webhook(&self) -> Result<(Document, Option<String>, bool), ApiError> {
        let (fields, reenable) = webhooks::request_fields(&self.request)?;
        let (document, secret) = webhooks::normalise(public(fields))?;
        Ok((document, secret, reenable))
    }

    /// `PUT /devices/{id}/notify` up to the SIP side.
    pub fn notify(&self) -> Result<(), ApiError> {
        notify::notify_request(self.request.data()?).map(|_| ())
    }

    /// The list filters read from the query string (here: the envelope's members), applied to
    /// `document` created and modified at the given Unix times (ms).
    pub fn filter(
        &self,
        document: &Value,
        created_ms: i64,
        modified_ms: i64,
    ) -> Result<bool, ApiError> {
        let filters = Filters::from_request(&self.request)?;
        Ok(filters.matches(document, created_ms, modified_ms))
    }
}
