//! Kazoo-compatible validation of API documents.
//!
//! This crate owns the JSON schemas of Kazoo 4.3's crossbar resources (embedded at build time,
//! see `schemas/README.md`) and a JSON-Schema draft-04 validator that behaves like the one
//! crossbar runs (jesse with `use_defaults`, `apply_defaults_to_empty_objects` and
//! `allowed_errors: infinity`, then one retry after coercing `"123"`/`"true"` for type errors,
//! as with `schema_strict_validation = false`):
//!
//! * every error is reported at once, in Kazoo's 400 `data` shape ([`ValidationErrors::to_kazoo_data`]);
//! * defaults are written into the document, for absent properties of objects that are present
//!   (an absent object is created only when it has a `default` of its own);
//! * unknown keys are kept; unknown keywords are ignored.
//!
//! Pure: no I/O, no clock. Bad input never panics; a document nested deeper than the validator
//! is willing to follow gets a `too_deep` error.

#![forbid(unsafe_code)]

mod coerce;
mod embedded;
mod error;
mod validator;

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

pub use error::{ValidationError, ValidationErrors};
use validator::Walker;

/// All embedded schemas, parsed once, with their patterns compiled.
#[derive(Debug)]
pub struct Schemas {
    documents: HashMap<String, Value>,
    patterns: HashMap<String, Regex>,
    /// Embedded files that did not parse or patterns that did not compile (a build-time bug,
    /// reported instead of panicking; a test keeps this empty).
    defects: Vec<String>,
}

impl Schemas {
    /// The schemas compiled into this binary.
    pub fn kazoo() -> &'static Schemas {
        static KAZOO: OnceLock<Schemas> = OnceLock::new();
        KAZOO.get_or_init(|| Schemas::from_sources(embedded::EMBEDDED.iter().copied()))
    }

    /// Builds a set from `(schema id, JSON text)` pairs.
    fn from_sources<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut documents = HashMap::new();
        let mut defects = Vec::new();
        for (name, text) in sources {
            match serde_json::from_str::<Value>(text) {
                Ok(document) => {
                    documents.insert(name.to_owned(), document);
                }
                Err(error) => defects.push(format!("{name}: {error}")),
            }
        }
        let mut patterns = HashMap::new();
        for document in documents.values() {
            collect_patterns(document, &mut patterns, &mut defects);
        }
        Self {
            documents,
            patterns,
            defects,
        }
    }

    /// Validates `document` against schema `name` (e.g. "devices"), writing defaults into it;
    /// on failure returns every error at once and leaves `document` unchanged.
    pub fn validate(&self, name: &str, document: &mut Value) -> Result<(), ValidationErrors> {
        let Some(schema) = self.documents.get_key_value(name) else {
            let mut errors = ValidationErrors::default();
            errors.push(
                ValidationError::new(vec!["schema".to_owned()], "schema", "schema not found")
                    .with_target(Value::String(name.to_owned())),
            );
            return Err(errors);
        };
        let (base, schema) = schema;

        let mut candidate = document.clone();
        let findings = self.run(schema, base, &mut candidate);
        if findings.is_empty() {
            *document = candidate;
            return Ok(());
        }

        let mut coerced = document.clone();
        if !coerce::apply(&mut coerced, &findings) {
            return Err(into_errors(findings));
        }
        let retry_findings = self.run(schema, base, &mut coerced);
        if retry_findings.is_empty() {
            *document = coerced;
            Ok(())
        } else {
            Err(into_errors(retry_findings))
        }
    }

    /// Names of all embedded schemas, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.documents.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The parsed schema `name`, if embedded.
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.documents.get(name)
    }

    /// Problems found while loading the embedded schemas; empty in a correct build.
    pub fn defects(&self) -> &[String] {
        &self.defects
    }

    /// Resolves a `$ref` seen inside schema document `base`: a bare id (`caller_id`), a local
    /// pointer (`#/definitions/x`) or both (`name#/definitions/x`). Returns the target and the
    /// document it lives in.
    pub(crate) fn resolve<'s>(
        &'s self,
        base: &str,
        reference: &str,
    ) -> Option<(&'s Value, &'s str)> {
        let (document_name, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let document_name = if document_name.is_empty() {
            base
        } else {
            document_name
        };
        let document_name = document_name.strip_suffix(".json").unwrap_or(document_name);
        let (name, document) = self.documents.get_key_value(document_name)?;
        let target = if fragment.is_empty() {
            document
        } else {
            document.pointer(fragment)?
        };
        Some((target, name.as_str()))
    }

    pub(crate) fn pattern_matches(&self, pattern: &str, text: &str) -> bool {
        match self.patterns.get(pattern) {
            Some(regex) => regex.is_match(text),
            // Every schema pattern is compiled up front; this is only reached for a pattern
            // that failed to compile (listed in `defects`), which then matches nothing.
            None => false,
        }
    }

    fn run(&self, schema: &Value, base: &str, document: &mut Value) -> Vec<validator::Finding> {
        let mut walker = Walker::new(self);
        walker.check(schema, base, document, 0);
        walker.into_findings()
    }
}

fn into_errors(findings: Vec<validator::Finding>) -> ValidationErrors {
    findings
        .into_iter()
        .map(|finding| finding.error)
        .collect::<Vec<_>>()
        .into()
}

/// Compiles every `pattern` and `patternProperties` key found anywhere in `schema`.
fn collect_patterns(
    schema: &Value,
    patterns: &mut HashMap<String, Regex>,
    defects: &mut Vec<String>,
) {
    let mut add = |pattern: &str| {
        if patterns.contains_key(pattern) {
            return;
        }
        match validator::compile_pattern(pattern) {
            Ok(regex) => {
                patterns.insert(pattern.to_owned(), regex);
            }
            Err(error) => defects.push(format!("pattern {pattern:?}: {error}")),
        }
    };
    match schema {
        Value::Object(keywords) => {
            if let Some(Value::String(pattern)) = keywords.get("pattern") {
                add(pattern);
            }
            if let Some(Value::Object(pattern_properties)) = keywords.get("patternProperties") {
                for pattern in pattern_properties.keys() {
                    add(pattern);
                }
            }
            for child in keywords.values() {
                collect_patterns(child, patterns, defects);
            }
        }
        Value::Array(items) => {
            for child in items {
                collect_patterns(child, patterns, defects);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    //! Keywords the embedded Kazoo schemas do not use, on hand-written schemas.

    use serde_json::json;

    use super::*;

    fn set(sources: &[(&str, Value)]) -> Schemas {
        let texts: Vec<(String, String)> = sources
            .iter()
            .map(|(name, schema)| ((*name).to_owned(), schema.to_string()))
            .collect();
        Schemas::from_sources(
            texts
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_str())),
        )
    }

    fn data(schemas: &Schemas, name: &str, document: Value) -> Value {
        let mut document = document;
        match schemas.validate(name, &mut document) {
            Ok(()) => Value::Null,
            Err(errors) => errors.to_kazoo_data(),
        }
    }

    #[test]
    fn local_and_cross_document_fragment_references() {
        let schemas = set(&[
            (
                "a",
                json!({"definitions": {"short": {"type": "string", "maxLength": 2}},
                       "properties": {"x": {"$ref": "#/definitions/short"}, "y": {"$ref": "b#/definitions/n"}}}),
            ),
            ("b", json!({"definitions": {"n": {"type": "integer"}}})),
        ]);
        assert_eq!(schemas.defects(), &[] as &[String]);
        assert_eq!(data(&schemas, "a", json!({"x": "ok", "y": 1})), Value::Null);
        let failed = data(&schemas, "a", json!({"x": "long", "y": "1.5"}));
        assert_eq!(failed["x"]["maxLength"]["target"], json!(2));
        assert_eq!(failed["y"]["type"]["target"], json!("integer"));
    }

    #[test]
    fn dangling_reference_is_a_schema_error() {
        let schemas = set(&[("a", json!({"properties": {"x": {"$ref": "missing"}}}))]);
        assert_eq!(
            data(&schemas, "a", json!({"x": 1})),
            json!({"schema": {"schema": {"message": "schema not found", "target": "missing"}}})
        );
    }

    #[test]
    fn draft3_required_flag() {
        let schemas = set(&[("a", json!({"properties": {"x": {"required": true}}}))]);
        assert_eq!(
            data(&schemas, "a", json!({})),
            json!({"x": {"required": {"message": "Field is required but missing"}}})
        );
    }

    #[test]
    fn exclusive_bounds() {
        let schemas = set(&[(
            "a",
            json!({"properties": {"x": {"minimum": 1, "exclusiveMinimum": true, "maximum": 3, "exclusiveMaximum": true}}}),
        )]);
        assert_eq!(data(&schemas, "a", json!({"x": 2})), Value::Null);
        assert_eq!(
            data(&schemas, "a", json!({"x": 1}))["x"]["minimum"]["message"],
            json!("Value must be at least 1")
        );
        assert_eq!(
            data(&schemas, "a", json!({"x": 3.0}))["x"]["maximum"]["message"],
            json!("Value must be at most 3")
        );
    }

    #[test]
    fn array_sizes_and_positional_items() {
        let schemas = set(&[(
            "a",
            json!({"minItems": 2, "maxItems": 3, "items": [{"type": "string"}], "additionalItems": false}),
        )]);
        assert_eq!(
            data(&schemas, "a", json!(["a"])),
            json!({"": {"minItems": {"message": "The list must have at least 2 items", "target": 2, "value": ["a"]}}})
        );
        let failed = data(&schemas, "a", json!([1, 2, 3, 4]));
        assert_eq!(
            failed[""]["maxItems"]["message"],
            json!("The list is more than 3 items")
        );
        assert_eq!(failed["0"]["type"]["value"], json!(1));
        assert_eq!(failed["1"]["additionalItems"]["value"], json!(2));
    }

    #[test]
    fn not_all_of_and_ambiguous_one_of() {
        let schemas = set(&[
            ("not", json!({"not": {"type": "string"}})),
            (
                "all",
                json!({"allOf": [{"minLength": 2}, {"maxLength": 3}]}),
            ),
            (
                "one",
                json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
            ),
        ]);
        assert_eq!(
            data(&schemas, "not", json!("s")),
            json!({"": {"not_schema_valid": {"message": "failed to validate", "value": "s"}}})
        );
        assert_eq!(
            data(&schemas, "all", json!("abcd"))[""]["maxLength"]["target"],
            json!(3)
        );
        assert_eq!(data(&schemas, "one", json!(1.5)), Value::Null);
        assert_eq!(
            data(&schemas, "one", json!(1)),
            json!({"": {"more_than_one_schema_valid": {"message": "failed to validate", "value": 1}}})
        );
    }

    #[test]
    fn defaults_chosen_by_a_one_of_branch_are_kept() {
        let schemas = set(&[(
            "a",
            json!({"oneOf": [
                {"type": "object", "properties": {"kind": {"enum": ["x"]}, "d": {"default": 1}}, "required": ["kind"]},
                {"type": "array"}
            ]}),
        )]);
        let mut document = json!({"kind": "x"});
        schemas.validate("a", &mut document).expect("valid");
        assert_eq!(document, json!({"kind": "x", "d": 1}));
    }

    #[test]
    fn broken_embedded_json_is_reported_not_panicked() {
        let schemas = Schemas::from_sources([("bad", "{"), ("re", r#"{"pattern": "("}"#)]);
        assert_eq!(schemas.defects().len(), 2);
        let mut document = json!("x");
        // The uncompilable pattern matches nothing.
        assert!(schemas.validate("re", &mut document).is_err());
    }
}
