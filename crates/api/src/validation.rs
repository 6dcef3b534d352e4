//! Document validation behind one function per resource, reporting every error at once in
//! Kazoo's 400 shape: `{"<dotted.path>": {"<code>": {"message", "target", "cause", "value"}}}`.
//!
//! Devices are checked against Kazoo's whole `devices` schema (`switchboard-schema`), with
//! the defaults written into the document as Kazoo's validator does; accounts against the
//! few fields Switchboard stores for them.

use serde_json::{Map, Value, json};
use switchboard_schema::Schemas;

use crate::ApiError;
use crate::auth::scope;

/// Errors collected over one document.
#[derive(Debug, Default)]
pub(crate) struct ValidationErrors {
    errors: Map<String, Value>,
}

impl ValidationErrors {
    pub fn push(&mut self, path: &str, code: &str, detail: Value) {
        let entry = self
            .errors
            .entry(path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(codes) = entry {
            codes.insert(code.to_owned(), detail);
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(Value::Object(self.errors)))
        }
    }

    pub fn required(&mut self, path: &str) {
        self.push(
            path,
            "required",
            json!({ "message": "Field is required but missing" }),
        );
    }

    pub fn wrong_type(&mut self, path: &str, expected: &str, value: &Value) {
        self.push(
            path,
            "type",
            json!({
                "message": format!("Value did not match type(s): {expected}"),
                "target": expected,
                "value": value,
            }),
        );
    }

    /// A string whose length (in characters) must lie in `min..=max`.
    pub fn string_length(&mut self, path: &str, value: &Value, min: usize, max: usize) {
        let Some(text) = value.as_str() else {
            self.wrong_type(path, "string", value);
            return;
        };
        let length = text.chars().count();
        if length < min {
            self.push(
                path,
                "minLength",
                json!({
                    "message": format!("String must be at least {min} characters"),
                    "target": min,
                    "value": text,
                }),
            );
        } else if length > max {
            self.push(
                path,
                "maxLength",
                json!({
                    "message": format!("String must not be more than {max} characters"),
                    "target": max,
                    "value": text,
                }),
            );
        }
    }
}

/// Validates a device document (public fields only) against Kazoo's `devices` schema
/// (`switchboard-schema`, which writes the schema's defaults in), plus what Kazoo checks in
/// code rather than in the schema: a `sip.method: ip` device needs an IPv4 `sip.ip`.
pub(crate) fn device(document: &mut Map<String, Value>) -> Result<(), ApiError> {
    let mut value = Value::Object(std::mem::take(document));
    let checked = Schemas::kazoo().validate("devices", &mut value);
    if let Value::Object(validated) = value {
        *document = validated;
    }
    let mut errors = ValidationErrors::default();
    if let Err(found) = checked
        && let Value::Object(paths) = found.to_kazoo_data()
    {
        for (path, codes) in paths {
            if let Value::Object(codes) = codes {
                for (code, detail) in codes {
                    errors.push(&path, &code, detail);
                }
            }
        }
    }
    ip_address(document, &mut errors);
    errors.into_result()
}

fn ip_address(document: &Map<String, Value>, errors: &mut ValidationErrors) {
    let sip = document.get("sip");
    let method = sip
        .and_then(|sip| sip.get("method"))
        .and_then(Value::as_str);
    if method != Some("ip") {
        return;
    }
    let ip = sip.and_then(|sip| sip.get("ip"));
    let valid = ip
        .and_then(Value::as_str)
        .is_some_and(|text| text.parse::<std::net::Ipv4Addr>().is_ok());
    if !valid {
        errors.push(
            "sip.ip",
            "type",
            json!({
                "message": "Must be a valid IPv4 RFC 791",
                "value": ip.cloned().unwrap_or(Value::Null),
            }),
        );
    }
}

/// Validates an account document: `name` (1..128 once trimmed, as it is stored) and `realm`
/// (4..253, `^[.\w_-]+$` with `\w` ASCII as in Kazoo's Erlang regex, so the lower-cased realm
/// that is stored matches too).
pub(crate) fn account(document: &Map<String, Value>) -> Result<(), ApiError> {
    let mut errors = ValidationErrors::default();
    match document.get("name") {
        None | Some(Value::Null) => errors.required("name"),
        Some(Value::String(name)) => {
            errors.string_length("name", &Value::String(name.trim().to_owned()), 1, 128);
        }
        Some(name) => errors.string_length("name", name, 1, 128),
    }
    match document.get("realm") {
        None | Some(Value::Null) => errors.required("realm"),
        Some(realm) => {
            errors.string_length("realm", realm, 4, 253);
            if let Some(text) = realm.as_str()
                && !text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                errors.push(
                    "realm",
                    "pattern",
                    json!({
                        "message": "Failed to match pattern '^[.\\w_-]+$'",
                        "target": "^[.\\w_-]+$",
                        "value": text,
                    }),
                );
            }
        }
    }
    errors.into_result()
}

/// Validates a new API key's `{name, scopes}`: `name` a string of 1..128 characters (blank
/// counts as empty), `scopes` a non-empty array of names from [`scope::ALL`]. Returns the
/// trimmed name and the scopes (each once, in the order given).
pub(crate) fn api_key(
    document: &Map<String, Value>,
) -> Result<(String, Vec<&'static str>), ApiError> {
    let mut errors = ValidationErrors::default();
    let mut name = String::new();
    match document.get("name") {
        None | Some(Value::Null) => errors.required("name"),
        Some(Value::String(text)) => {
            name = text.trim().to_owned();
            errors.string_length("name", &Value::String(name.clone()), 1, 128);
        }
        Some(other) => errors.wrong_type("name", "string", other),
    }
    let mut scopes: Vec<&'static str> = Vec::new();
    match document.get("scopes") {
        None | Some(Value::Null) => errors.required("scopes"),
        Some(Value::Array(items)) if items.is_empty() => errors.push(
            "scopes",
            "minItems",
            json!({
                "message": "The list must have at least 1 items",
                "target": 1,
                "value": [],
            }),
        ),
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                let known = item
                    .as_str()
                    .and_then(|text| scope::ALL.iter().find(|name| **name == text));
                match known {
                    Some(known) if !scopes.contains(known) => scopes.push(known),
                    Some(_) => {}
                    None => errors.push(
                        &format!("scopes.{index}"),
                        "enum",
                        json!({
                            "message": "Value not found in enumerated list of values",
                            "target": scope::ALL,
                            "value": item,
                        }),
                    ),
                }
            }
        }
        Some(other) => errors.wrong_type("scopes", "array", other),
    }
    errors.into_result().map(|()| (name, scopes))
}

/// Entries at most in each of an account's access lists.
pub(crate) const MAX_ACCESS_LIST_ENTRIES: usize = 256;

/// Validates an account's `{allow, deny}` access lists: each, when present, an array of at
/// most [`MAX_ACCESS_LIST_ENTRIES`] strings, each an IPv4/IPv6 address or CIDR network
/// (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`). A bad entry is reported at its index
/// (`allow.1`). Returns the lists, entries trimmed; a missing or `null` list is empty.
pub(crate) fn access_lists(
    document: &Map<String, Value>,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let mut errors = ValidationErrors::default();
    let mut list = |key: &str| -> Vec<String> {
        let mut entries = Vec::new();
        match document.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.len() > MAX_ACCESS_LIST_ENTRIES => errors.push(
                key,
                "maxItems",
                json!({
                    "message": format!("The list is more than {MAX_ACCESS_LIST_ENTRIES} items"),
                    "target": MAX_ACCESS_LIST_ENTRIES,
                }),
            ),
            Some(Value::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    let path = format!("{key}.{index}");
                    match item.as_str() {
                        Some(text) if text.parse::<switchboard_model::Cidr>().is_ok() => {
                            entries.push(text.trim().to_owned());
                        }
                        Some(_) => errors.push(
                            &path,
                            "type",
                            json!({
                                "message": "Must be an IPv4 or IPv6 address or CIDR network",
                                "value": item,
                            }),
                        ),
                        None => errors.wrong_type(&path, "string", item),
                    }
                }
            }
            Some(other) => errors.wrong_type(key, "array", other),
        }
        entries
    };
    let allow = list("allow");
    let deny = list("deny");
    errors.into_result().map(|()| (allow, deny))
}

/// Validates a document against one of Kazoo's schemas (`users`, `user_auth`...), writing
/// the schema's defaults in; every error at once.
pub(crate) fn schema(name: &str, document: &mut Map<String, Value>) -> Result<(), ApiError> {
    let mut value = Value::Object(std::mem::take(document));
    let checked = Schemas::kazoo().validate(name, &mut value);
    if let Value::Object(validated) = value {
        *document = validated;
    }
    match checked {
        Ok(_) => Ok(()),
        Err(found) => Err(ApiError::Validation(found.to_kazoo_data())),
    }
}

/// One `invalid` error (a reference to something that does not exist) as its own failure.
pub(crate) fn invalid(path: &str, message: &str, cause: &str) -> ApiError {
    ApiError::Validation(json!({ path: { "invalid": { "message": message, "cause": cause } } }))
}

/// One `unique` error as its own validation failure.
pub(crate) fn unique(path: &str, message: &str, cause: &str) -> ApiError {
    ApiError::Validation(json!({ path: { "unique": { "message": message, "cause": cause } } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_key_errors(document: Value) -> Value {
        let Value::Object(document) = document else {
            panic!("object")
        };
        match api_key(&document) {
            Err(ApiError::Validation(data)) => data,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn api_key_bodies() {
        let Value::Object(good) = json!({"name": "  CRM  ", "scopes": ["devices:read", "pbx:phones:read", "devices:read"]})
        else {
            panic!("object")
        };
        let (name, scopes) = api_key(&good).expect("valid");
        assert_eq!(name, "CRM");
        assert_eq!(scopes, vec!["devices:read", "pbx:phones:read"]);

        let errors = api_key_errors(json!({}));
        assert!(errors["name"]["required"].is_object(), "{errors}");
        assert!(errors["scopes"]["required"].is_object(), "{errors}");
        let errors = api_key_errors(json!({"name": " ", "scopes": []}));
        assert!(errors["name"]["minLength"].is_object(), "{errors}");
        assert!(errors["scopes"]["minItems"].is_object(), "{errors}");
        let errors = api_key_errors(json!({"name": "x".repeat(129), "scopes": "devices:read"}));
        assert!(errors["name"]["maxLength"].is_object(), "{errors}");
        assert_eq!(errors["scopes"]["type"]["target"], "array", "{errors}");
        let errors = api_key_errors(json!({"name": 7, "scopes": ["devices:read", "root", 3]}));
        assert_eq!(errors["name"]["type"]["target"], "string", "{errors}");
        assert!(errors.get("scopes.0").is_none(), "{errors}");
        assert_eq!(errors["scopes.1"]["enum"]["value"], "root", "{errors}");
        assert_eq!(errors["scopes.2"]["enum"]["value"], 3, "{errors}");
    }

    fn access_list_errors(document: Value) -> Value {
        let Value::Object(document) = document else {
            panic!("object")
        };
        match access_lists(&document) {
            Err(ApiError::Validation(data)) => data,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn access_list_bodies() {
        let Value::Object(good) =
            json!({"allow": [" 10.0.0.0/8 ", "2001:db8::/32"], "deny": ["192.0.2.7"], "other": 1})
        else {
            panic!("object")
        };
        let (allow, deny) = access_lists(&good).expect("valid");
        assert_eq!(allow, vec!["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(deny, vec!["192.0.2.7"]);
        let Value::Object(empty) = json!({"deny": null}) else {
            panic!("object")
        };
        assert_eq!(access_lists(&empty).expect("valid"), (vec![], vec![]));

        let errors = access_list_errors(
            json!({"allow": ["10.0.0.0/8", "10.0.0.0/33", 7], "deny": "192.0.2.7"}),
        );
        assert!(errors.get("allow.0").is_none(), "{errors}");
        assert_eq!(
            errors["allow.1"]["type"]["value"], "10.0.0.0/33",
            "{errors}"
        );
        assert_eq!(errors["allow.2"]["type"]["target"], "string", "{errors}");
        assert_eq!(errors["deny"]["type"]["target"], "array", "{errors}");
        let too_many: Vec<String> = (0..=MAX_ACCESS_LIST_ENTRIES)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        let errors = access_list_errors(json!({"deny": too_many}));
        assert_eq!(
            errors["deny"]["maxItems"]["target"], MAX_ACCESS_LIST_ENTRIES,
            "{errors}"
        );
    }

    fn errors_of(document: Value) -> Value {
        let Value::Object(mut document) = document else {
            panic!("object")
        };
        match device(&mut document) {
            Err(ApiError::Validation(data)) => data,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let data = errors_of(json!({"sip": {"username": "x", "password": "abc", "method": "md5"}}));
        assert!(data["name"]["required"].is_object());
        assert_eq!(data["sip.username"]["minLength"]["target"], 2);
        assert_eq!(data["sip.password"]["minLength"]["target"], 5);
        assert_eq!(
            data["sip.method"]["enum"]["target"],
            json!(["password", "ip"])
        );
    }

    #[test]
    fn defaults_are_written_into_the_document() {
        let Value::Object(mut document) = json!({"name": "desk"}) else {
            panic!("object")
        };
        device(&mut document).expect("valid");
        assert_eq!(document["enabled"], true);
        assert_eq!(document["sip"]["method"], "password");
        assert_eq!(document["sip"]["invite_format"], "contact");
        assert_eq!(document["sip"]["expire_seconds"], 300);
    }

    fn account_errors(document: Value) -> Value {
        let Value::Object(document) = document else {
            panic!("object")
        };
        match account(&document) {
            Err(ApiError::Validation(data)) => data,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn account_names_and_realms_are_validated_as_stored() {
        // Regressions from the `api_json` fuzz target: a blank name was accepted and stored
        // trimmed (empty); a realm of non-ASCII letters was accepted and stored lower-cased
        // into one that fails the pattern ("İ" lower-cases to "i" + U+0307).
        let errors = account_errors(json!({"name": "   ", "realm": "abcd"}));
        assert!(errors["name"]["minLength"].is_object(), "{errors}");
        let errors = account_errors(json!({"name": "x", "realm": "İİİİ"}));
        assert!(errors["realm"]["pattern"].is_object(), "{errors}");
        let errors = account_errors(json!({"name": "x", "realm": "ßtraße.example"}));
        assert!(errors["realm"]["pattern"].is_object(), "{errors}");
        let Value::Object(good) = json!({"name": " Acme ", "realm": "Acme-1_a.Example"}) else {
            panic!("object")
        };
        account(&good).expect("valid");
    }

    #[test]
    fn ip_devices_need_an_ipv4_address() {
        let data = errors_of(json!({"name": "trunk", "sip": {"method": "ip", "ip": "::1"}}));
        assert!(data["sip.ip"]["type"].is_object());
    }
}
