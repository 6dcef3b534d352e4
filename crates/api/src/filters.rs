//! Kazoo's list filters (crossbar_filter): `filter_{key}=v`, `filter_not_{key}=v`, `has_key`,
//! `key_missing`, `has_value`, `value_missing`, `created_from/to`, `modified_from/to`.
//!
//! Every filter is AND-ed and applied to the full stored document. Keys are dotted paths into
//! it (`filter_sip.method=ip`). A filter value that parses as a JSON array means "any of these";
//! otherwise the document's value, as text (`true`, `42`, a string as is), must equal it. Dates
//! are Gregorian seconds (seconds since year 0, what Kazoo stores in `pvt_created`), inclusive.

use serde_json::Value;

use crate::error::ApiError;
use crate::request::ApiRequest;

/// Seconds from 0000-01-01 to 1970-01-01, Kazoo's Gregorian-seconds offset.
pub(crate) const GREGORIAN_UNIX_OFFSET: i64 = 62_167_219_200;

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Equals {
        path: Vec<String>,
        wanted: Vec<String>,
        negate: bool,
    },
    HasKey(Vec<String>),
    KeyMissing(Vec<String>),
    HasValue(Vec<String>),
    ValueMissing(Vec<String>),
    CreatedFrom(i64),
    CreatedTo(i64),
    ModifiedFrom(i64),
    ModifiedTo(i64),
}

/// The filters of one list request; empty when it has none.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Filters {
    conditions: Vec<Condition>,
}

fn path(key: &str) -> Vec<String> {
    key.split('.').map(str::to_owned).collect()
}

fn gregorian_ms(name: &str, text: &str) -> Result<i64, ApiError> {
    let seconds: i64 = text.trim().parse().map_err(|_| {
        ApiError::BadRequest(format!("{name} must be a number of Gregorian seconds"))
    })?;
    // Saturating: a date beyond what Unix ms can hold is "before/after everything", not an
    // overflow (an input to the `api_json` fuzz target).
    Ok(seconds
        .saturating_sub(GREGORIAN_UNIX_OFFSET)
        .saturating_mul(1000))
}

/// The text form Kazoo compares a document value with.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn lookup<'v>(document: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(document, |value, key| value.as_object()?.get(key))
}

fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

impl Filters {
    /// Reads the filters from the query string (sorted, so the result does not depend on the
    /// order of the query's keys).
    pub(crate) fn from_request(request: &ApiRequest) -> Result<Filters, ApiError> {
        let mut names: Vec<&String> = request.query.keys().collect();
        names.sort();
        let mut conditions = Vec::new();
        for name in names {
            let Some(value) = request.query.get(name) else {
                continue;
            };
            let condition = if let Some(key) = name.strip_prefix("filter_not_") {
                Condition::Equals {
                    path: path(key),
                    wanted: wanted(value),
                    negate: true,
                }
            } else if let Some(key) = name.strip_prefix("filter_") {
                Condition::Equals {
                    path: path(key),
                    wanted: wanted(value),
                    negate: false,
                }
            } else {
                match name.as_str() {
                    "has_key" => Condition::HasKey(path(value)),
                    "key_missing" => Condition::KeyMissing(path(value)),
                    "has_value" => Condition::HasValue(path(value)),
                    "value_missing" => Condition::ValueMissing(path(value)),
                    "created_from" => Condition::CreatedFrom(gregorian_ms(name, value)?),
                    "created_to" => Condition::CreatedTo(gregorian_ms(name, value)?),
                    "modified_from" => Condition::ModifiedFrom(gregorian_ms(name, value)?),
                    "modified_to" => Condition::ModifiedTo(gregorian_ms(name, value)?),
                    _ => continue,
                }
            };
            conditions.push(condition);
        }
        Ok(Filters { conditions })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether a document (with its creation and modification times, Unix ms) passes.
    pub(crate) fn matches(&self, document: &Value, created_ms: i64, modified_ms: i64) -> bool {
        // Kazoo's `to` bounds are inclusive of the whole second.
        let to_bound = |bound: i64| bound.saturating_add(999);
        self.conditions.iter().all(|condition| match condition {
            Condition::Equals {
                path,
                wanted,
                negate,
            } => {
                let found = lookup(document, path)
                    .and_then(as_text)
                    .is_some_and(|text| wanted.contains(&text));
                found != *negate
            }
            Condition::HasKey(path) => lookup(document, path).is_some(),
            Condition::KeyMissing(path) => lookup(document, path).is_none(),
            Condition::HasValue(path) => lookup(document, path).is_some_and(|v| !is_empty_value(v)),
            Condition::ValueMissing(path) => lookup(document, path).is_none_or(is_empty_value),
            Condition::CreatedFrom(bound) => created_ms >= *bound,
            Condition::CreatedTo(bound) => created_ms <= to_bound(*bound),
            Condition::ModifiedFrom(bound) => modified_ms >= *bound,
            Condition::ModifiedTo(bound) => modified_ms <= to_bound(*bound),
        })
    }
}

/// A filter value: a JSON array means any of its members.
fn wanted(value: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(value) {
        Ok(Value::Array(items)) => items.iter().filter_map(as_text).collect(),
        _ => vec![value.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn filters(pairs: &[(&str, &str)]) -> Filters {
        let request = ApiRequest {
            headers: Default::default(),
            query: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
            envelope: None,
        };
        Filters::from_request(&request).expect("valid filters")
    }

    fn device() -> Value {
        json!({
            "name": "Alice",
            "device_type": "softphone",
            "enabled": true,
            "sip": {"method": "password", "username": "alice", "expire_seconds": 300},
            "mac_address": "",
            "flags": [],
            "custom": {"tier": "gold"}
        })
    }

    #[test]
    fn equality_negation_and_membership() {
        let doc = device();
        assert!(filters(&[("filter_device_type", "softphone")]).matches(&doc, 0, 0));
        assert!(!filters(&[("filter_device_type", "sip_device")]).matches(&doc, 0, 0));
        assert!(filters(&[("filter_not_device_type", "sip_device")]).matches(&doc, 0, 0));
        assert!(filters(&[("filter_enabled", "true")]).matches(&doc, 0, 0));
        assert!(filters(&[("filter_sip.expire_seconds", "300")]).matches(&doc, 0, 0));
        assert!(filters(&[("filter_custom.tier", "[\"silver\",\"gold\"]")]).matches(&doc, 0, 0));
        assert!(!filters(&[("filter_not_custom.tier", "[\"gold\"]")]).matches(&doc, 0, 0));
        // A missing key never equals anything, so filter_not_ keeps it.
        assert!(!filters(&[("filter_owner_id", "x")]).matches(&doc, 0, 0));
        assert!(filters(&[("filter_not_owner_id", "x")]).matches(&doc, 0, 0));
        // Filters are AND-ed.
        assert!(
            !filters(&[
                ("filter_device_type", "softphone"),
                ("filter_enabled", "false")
            ])
            .matches(&doc, 0, 0)
        );
    }

    #[test]
    fn keys_and_values() {
        let doc = device();
        assert!(filters(&[("has_key", "sip.username")]).matches(&doc, 0, 0));
        assert!(!filters(&[("has_key", "owner_id")]).matches(&doc, 0, 0));
        assert!(filters(&[("key_missing", "owner_id")]).matches(&doc, 0, 0));
        assert!(filters(&[("has_key", "mac_address")]).matches(&doc, 0, 0));
        assert!(
            !filters(&[("has_value", "mac_address")]).matches(&doc, 0, 0),
            "empty string"
        );
        assert!(
            filters(&[("value_missing", "flags")]).matches(&doc, 0, 0),
            "empty list"
        );
        assert!(filters(&[("value_missing", "owner_id")]).matches(&doc, 0, 0));
        assert!(filters(&[("has_value", "custom")]).matches(&doc, 0, 0));
    }

    #[test]
    fn dates_are_gregorian_seconds_inclusive() {
        let doc = device();
        let created_ms = 1_700_000_000_000;
        let gregorian = (created_ms / 1000 + GREGORIAN_UNIX_OFFSET).to_string();
        let before = (created_ms / 1000 + GREGORIAN_UNIX_OFFSET - 1).to_string();
        assert!(filters(&[("created_from", &gregorian)]).matches(&doc, created_ms, 0));
        assert!(filters(&[("created_to", &gregorian)]).matches(&doc, created_ms + 500, 0));
        assert!(!filters(&[("created_to", &before)]).matches(&doc, created_ms, 0));
        assert!(filters(&[("modified_from", &before)]).matches(&doc, 0, created_ms));
        assert!(!filters(&[("modified_from", &gregorian)]).matches(&doc, 0, created_ms - 1));
    }

    #[test]
    fn extreme_dates_saturate_instead_of_overflowing() {
        // Regressions from the `api_json` fuzz target: both overflowed (a panic in a debug
        // build, a wrapped bound in release).
        let doc = device();
        let now = 1_700_000_000_000;
        assert!(filters(&[("created_to", &i64::MAX.to_string())]).matches(&doc, now, now));
        assert!(!filters(&[("created_from", &i64::MAX.to_string())]).matches(&doc, now, now));
        assert!(filters(&[("modified_from", &i64::MIN.to_string())]).matches(&doc, now, now));
        assert!(!filters(&[("modified_to", &i64::MIN.to_string())]).matches(&doc, now, now));
    }

    #[test]
    fn bad_dates_are_errors_and_unrelated_parameters_are_ignored() {
        let request = ApiRequest {
            headers: Default::default(),
            query: [("created_from".to_owned(), "yesterday".to_owned())].into(),
            envelope: None,
        };
        assert!(Filters::from_request(&request).is_err());
        assert!(filters(&[("page_size", "5"), ("paginate", "true")]).is_empty());
    }
}
