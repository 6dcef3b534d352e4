//! The draft-04 interpreter: walks a schema (a `serde_json::Value`) and a document together,
//! writing defaults into the document and collecting every failure, the way jesse does with
//! `use_defaults`, `apply_defaults_to_empty_objects` and `allowed_errors: infinity`.
//!
//! Keywords apply only to the JSON type they are about (`minLength` ignores numbers,
//! `properties` ignores arrays, ...); unknown keywords are ignored. Defaults are written for
//! absent properties of every object that is present, even an empty one, and the written
//! default is then validated itself, which is how `"sip": {}` collects its children's defaults.
//! An absent object is never created unless its own schema has a `default`.

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::Schemas;
use crate::error::ValidationError;

/// Deeper than this (document nesting plus `$ref` hops) is refused rather than risking the stack.
const MAX_DEPTH: usize = 128;

/// One step into a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

impl Segment {
    fn render(&self) -> String {
        match self {
            Segment::Key(key) => key.clone(),
            Segment::Index(index) => index.to_string(),
        }
    }
}

/// What crossbar's `fix_js_types` may turn a mistyped value into before the one retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Coercion {
    Integer,
    Number,
    Boolean,
}

/// An error as found, with where it sits in the document (for the coercion retry).
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) error: ValidationError,
    pub(crate) location: Vec<Segment>,
    pub(crate) coercion: Option<Coercion>,
}

pub(crate) struct Walker<'s> {
    schemas: &'s Schemas,
    path: Vec<Segment>,
    findings: Vec<Finding>,
}

impl<'s> Walker<'s> {
    pub(crate) fn new(schemas: &'s Schemas) -> Self {
        Self {
            schemas,
            path: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub(crate) fn into_findings(self) -> Vec<Finding> {
        self.findings
    }

    /// Validates `value` against `schema`, whose `#/...` references are relative to the schema
    /// document `base`.
    pub(crate) fn check(
        &mut self,
        schema: &'s Value,
        base: &'s str,
        value: &mut Value,
        depth: usize,
    ) {
        let Value::Object(keywords) = schema else {
            return;
        };
        if depth > MAX_DEPTH {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "too_deep",
                    "Document is nested too deeply",
                ),
                None,
            );
            return;
        }
        if let Some(Value::String(reference)) = keywords.get("$ref") {
            match self.schemas.resolve(base, reference) {
                Some((target, target_base)) => self.check(target, target_base, value, depth + 1),
                None => self.fail(
                    ValidationError::new(vec!["schema".to_owned()], "schema", "schema not found")
                        .with_target(Value::String(reference.clone())),
                    None,
                ),
            }
        }
        if let Some(types) = keywords.get("type") {
            self.check_type(types, value);
        }
        if let Some(Value::Array(allowed)) = keywords.get("enum")
            && !allowed.iter().any(|candidate| json_equal(candidate, value))
        {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "enum",
                    "Value not found in enumerated list of values",
                )
                .with_target(Value::Array(allowed.clone()))
                .with_value(value.clone()),
                None,
            );
        }
        match value {
            Value::String(text) => self.check_string(keywords, text),
            Value::Number(_) => self.check_number(keywords, value),
            Value::Object(_) => self.check_object(keywords, base, value, depth),
            Value::Array(_) => self.check_array(keywords, base, value, depth),
            Value::Null | Value::Bool(_) => {}
        }
        self.check_combinators(keywords, base, value, depth);
    }

    fn check_type(&mut self, types: &Value, value: &Value) {
        let (matches, names) = match types {
            Value::String(name) => (type_matches(name, value), name.clone()),
            Value::Array(names) => {
                let matches = names.iter().any(|name| match name {
                    Value::String(name) => type_matches(name, value),
                    // A draft-03 schema inside `type`: not used by Kazoo's schemas; accept.
                    _ => true,
                });
                let names = names
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                (matches, names)
            }
            _ => return,
        };
        if matches {
            return;
        }
        let coercion = match types.as_str() {
            Some("integer") => Some(Coercion::Integer),
            Some("number") => Some(Coercion::Number),
            Some("boolean") => Some(Coercion::Boolean),
            _ => None,
        };
        self.fail(
            ValidationError::new(
                self.rendered_path(),
                "type",
                format!("Value did not match type(s): {names}"),
            )
            .with_target(Value::String(names))
            .with_value(value.clone()),
            coercion,
        );
    }

    fn check_string(&mut self, keywords: &'s Map<String, Value>, text: &str) {
        let length = text.chars().count() as u64;
        if let Some(minimum) = keywords.get("minLength").and_then(limit)
            && length < minimum
        {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "minLength",
                    format!("String must be at least {minimum} characters"),
                )
                .with_target(json!(minimum))
                .with_cause(Value::String(text.to_owned()))
                .with_value(Value::String(text.to_owned())),
                None,
            );
        }
        if let Some(maximum) = keywords.get("maxLength").and_then(limit)
            && length > maximum
        {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "maxLength",
                    format!("String must not be more than {maximum} characters"),
                )
                .with_target(json!(maximum))
                .with_cause(Value::String(text.to_owned()))
                .with_value(Value::String(text.to_owned())),
                None,
            );
        }
        if let Some(Value::String(pattern)) = keywords.get("pattern")
            && !self.schemas.pattern_matches(pattern, text)
        {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "pattern",
                    format!("Failed to match pattern '{pattern}'"),
                )
                .with_target(Value::String(pattern.clone()))
                .with_value(Value::String(text.to_owned())),
                None,
            );
        }
        if let Some(Value::String(format)) = keywords.get("format")
            && !format_matches(format, text)
        {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "wrong_format",
                    "Field is not in the correct format",
                )
                .with_target(Value::String(format.clone()))
                .with_value(Value::String(text.to_owned())),
                None,
            );
        }
    }

    fn check_number(&mut self, keywords: &'s Map<String, Value>, value: &Value) {
        let Some(number) = value.as_f64() else {
            return;
        };
        if let Some(minimum @ Value::Number(bound)) = keywords.get("minimum") {
            let exclusive = keywords.get("exclusiveMinimum") == Some(&Value::Bool(true));
            let bound_f = bound.as_f64().unwrap_or(f64::MIN);
            if number < bound_f || (exclusive && number <= bound_f) {
                self.fail(
                    ValidationError::new(
                        self.rendered_path(),
                        "minimum",
                        format!("Value must be at least {bound}"),
                    )
                    .with_target(minimum.clone())
                    .with_value(value.clone()),
                    None,
                );
            }
        }
        if let Some(maximum @ Value::Number(bound)) = keywords.get("maximum") {
            let exclusive = keywords.get("exclusiveMaximum") == Some(&Value::Bool(true));
            let bound_f = bound.as_f64().unwrap_or(f64::MAX);
            if number > bound_f || (exclusive && number >= bound_f) {
                self.fail(
                    ValidationError::new(
                        self.rendered_path(),
                        "maximum",
                        format!("Value must be at most {bound}"),
                    )
                    .with_target(maximum.clone())
                    .with_value(value.clone()),
                    None,
                );
            }
        }
    }

    fn check_object(
        &mut self,
        keywords: &'s Map<String, Value>,
        base: &'s str,
        value: &mut Value,
        depth: usize,
    ) {
        let Value::Object(object) = value else {
            return;
        };
        let properties = keywords.get("properties").and_then(Value::as_object);
        if let Some(properties) = properties {
            for (name, property_schema) in properties {
                self.path.push(Segment::Key(name.clone()));
                if let Some(present) = object.get_mut(name) {
                    self.check(property_schema, base, present, depth + 1);
                } else if let Some(default) = property_schema.get("default") {
                    let written = object.entry(name.clone()).or_insert(default.clone());
                    self.check(property_schema, base, written, depth + 1);
                } else if property_schema.get("required") == Some(&Value::Bool(true)) {
                    // draft-03 style `"required": true` on the property itself.
                    self.fail(
                        ValidationError::new(
                            self.rendered_path(),
                            "required",
                            "Field is required but missing",
                        ),
                        None,
                    );
                }
                self.path.pop();
            }
        }

        let pattern_properties = keywords.get("patternProperties").and_then(Value::as_object);
        let additional = keywords.get("additionalProperties");
        let keys: Vec<String> = object.keys().cloned().collect();
        for key in keys {
            let mut matched = properties.is_some_and(|properties| properties.contains_key(&key));
            if let Some(pattern_properties) = pattern_properties {
                for (pattern, pattern_schema) in pattern_properties {
                    if self.schemas.pattern_matches(pattern, &key) {
                        matched = true;
                        if let Some(child) = object.get_mut(&key) {
                            self.path.push(Segment::Key(key.clone()));
                            self.check(pattern_schema, base, child, depth + 1);
                            self.path.pop();
                        }
                    }
                }
            }
            if matched {
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    self.path.push(Segment::Key(key.clone()));
                    let child = object.get(&key).cloned().unwrap_or(Value::Null);
                    self.fail(
                        ValidationError::new(
                            self.rendered_path(),
                            "additionalProperties",
                            "Strict checking of data is enabled; only include schema-defined properties",
                        )
                        .with_value(child),
                        None,
                    );
                    self.path.pop();
                }
                Some(extra_schema @ Value::Object(_)) => {
                    if let Some(child) = object.get_mut(&key) {
                        self.path.push(Segment::Key(key.clone()));
                        self.check(extra_schema, base, child, depth + 1);
                        self.path.pop();
                    }
                }
                _ => {}
            }
        }

        if let Some(Value::Array(required)) = keywords.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    self.path.push(Segment::Key(name.to_owned()));
                    self.fail(
                        ValidationError::new(
                            self.rendered_path(),
                            "required",
                            "Field is required but missing",
                        ),
                        None,
                    );
                    self.path.pop();
                }
            }
        }
        let count = object.len() as u64;
        if let Some(minimum) = keywords.get("minProperties").and_then(limit)
            && count < minimum
        {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "minProperties",
                    format!("The object must have at least {minimum} keys"),
                )
                .with_target(json!(minimum))
                .with_value(value.clone()),
                None,
            );
        }
        if let Some(maximum) = keywords.get("maxProperties").and_then(limit)
            && count > maximum
        {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "maxProperties",
                    format!("The object must not have more than {maximum} keys"),
                )
                .with_target(json!(maximum))
                .with_value(value.clone()),
                None,
            );
        }
    }

    fn check_array(
        &mut self,
        keywords: &'s Map<String, Value>,
        base: &'s str,
        value: &mut Value,
        depth: usize,
    ) {
        let Value::Array(items) = value else {
            return;
        };
        match keywords.get("items") {
            Some(item_schema @ Value::Object(_)) => {
                for (index, item) in items.iter_mut().enumerate() {
                    self.path.push(Segment::Index(index));
                    self.check(item_schema, base, item, depth + 1);
                    self.path.pop();
                }
            }
            Some(Value::Array(positional)) => {
                let additional = keywords.get("additionalItems");
                for (index, item) in items.iter_mut().enumerate() {
                    self.path.push(Segment::Index(index));
                    match (positional.get(index), additional) {
                        (Some(item_schema), _) => self.check(item_schema, base, item, depth + 1),
                        (None, Some(Value::Bool(false))) => self.fail(
                            ValidationError::new(
                                self.rendered_path(),
                                "additionalItems",
                                "Strict checking of data is enabled; only include schema-defined items",
                            )
                            .with_value(item.clone()),
                            None,
                        ),
                        (None, Some(extra_schema @ Value::Object(_))) => {
                            self.check(extra_schema, base, item, depth + 1);
                        }
                        (None, _) => {}
                    }
                    self.path.pop();
                }
            }
            _ => {}
        }
        let count = items.len() as u64;
        if let Some(minimum) = keywords.get("minItems").and_then(limit)
            && count < minimum
        {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "minItems",
                    format!("The list must have at least {minimum} items"),
                )
                .with_target(json!(minimum))
                .with_value(value.clone()),
                None,
            );
        }
        if let Some(maximum) = keywords.get("maxItems").and_then(limit)
            && count > maximum
        {
            self.fail(
                ValidationError::new(
                    self.rendered_path(),
                    "maxItems",
                    format!("The list is more than {maximum} items"),
                )
                .with_target(json!(maximum))
                .with_value(value.clone()),
                None,
            );
        }
        if keywords.get("uniqueItems") == Some(&Value::Bool(true))
            && let Value::Array(items) = &*value
        {
            let duplicated = items.iter().enumerate().any(|(index, item)| {
                items[..index]
                    .iter()
                    .any(|earlier| json_equal(earlier, item))
            });
            if duplicated {
                self.fail(
                    ValidationError::new(
                        self.rendered_path(),
                        "uniqueItems",
                        "List of items is not unique",
                    )
                    .with_value(value.clone()),
                    None,
                );
            }
        }
    }

    /// `allOf` applies in place; `anyOf`/`oneOf`/`not` try each branch on a copy (so a failing
    /// branch leaves no defaults behind) and keep the copy of the branch that decided. Errors
    /// inside a failed branch are not reported, only the combinator's own (as jesse does).
    fn check_combinators(
        &mut self,
        keywords: &'s Map<String, Value>,
        base: &'s str,
        value: &mut Value,
        depth: usize,
    ) {
        if let Some(Value::Array(all)) = keywords.get("allOf") {
            for branch in all {
                self.check(branch, base, value, depth + 1);
            }
        }
        if let Some(Value::Array(any)) = keywords.get("anyOf") {
            let mut accepted = None;
            for branch in any {
                if let Some(candidate) = self.trial(branch, base, value, depth) {
                    accepted = Some(candidate);
                    break;
                }
            }
            match accepted {
                Some(candidate) => *value = candidate,
                None => self.combinator_failed("any_schemas_not_valid", value),
            }
        }
        if let Some(Value::Array(one)) = keywords.get("oneOf") {
            let mut accepted = Vec::new();
            for branch in one {
                if let Some(candidate) = self.trial(branch, base, value, depth) {
                    accepted.push(candidate);
                }
            }
            match accepted.len() {
                0 => self.combinator_failed("not_one_schema_valid", value),
                1 => {
                    if let Some(candidate) = accepted.pop() {
                        *value = candidate;
                    }
                }
                _ => self.combinator_failed("more_than_one_schema_valid", value),
            }
        }
        if let Some(negated @ Value::Object(_)) = keywords.get("not")
            && self.trial(negated, base, value, depth).is_some()
        {
            self.combinator_failed("not_schema_valid", value);
        }
    }

    /// Validates a copy of `value` against `branch`; the copy (with its defaults) if it passed.
    fn trial(
        &mut self,
        branch: &'s Value,
        base: &'s str,
        value: &Value,
        depth: usize,
    ) -> Option<Value> {
        let mut candidate = value.clone();
        let mut walker = Walker {
            schemas: self.schemas,
            path: self.path.clone(),
            findings: Vec::new(),
        };
        walker.check(branch, base, &mut candidate, depth + 1);
        walker.findings.is_empty().then_some(candidate)
    }

    /// Kazoo has no dedicated message for these: its catch-all uses jesse's error name as the
    /// code and "failed to validate" as the message.
    fn combinator_failed(&mut self, code: &str, value: &Value) {
        self.fail(
            ValidationError::new(self.rendered_path(), code, "failed to validate")
                .with_value(value.clone()),
            None,
        );
    }

    fn rendered_path(&self) -> Vec<String> {
        self.path.iter().map(Segment::render).collect()
    }

    fn fail(&mut self, error: ValidationError, coercion: Option<Coercion>) {
        self.findings.push(Finding {
            error,
            location: self.path.clone(),
            coercion,
        });
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "string" => value.is_string(),
        // jesse: `1.0` is a float, not an integer.
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        // "any" and names draft-04 does not know.
        _ => true,
    }
}

/// A non-negative integer limit (`minLength`, `maxItems`, ...); anything else is ignored.
fn limit(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// JSON equality where `1` and `1.0` are the same number (as for Erlang's `==`).
pub(crate) fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(l), Value::Number(r)) => {
            if l.is_f64() || r.is_f64() {
                l.as_f64() == r.as_f64()
            } else {
                l == r
            }
        }
        (Value::Array(l), Value::Array(r)) => {
            l.len() == r.len() && l.iter().zip(r).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(l), Value::Object(r)) => {
            l.len() == r.len()
                && l.iter()
                    .all(|(key, a)| r.get(key).is_some_and(|b| json_equal(a, b)))
        }
        _ => left == right,
    }
}

/// Deliberately lenient `format` checks: only shapes that are unambiguous are rejected.
/// `regex` is not checked (Kazoo's are PCRE, which the `regex` crate does not fully accept).
fn format_matches(format: &str, text: &str) -> bool {
    match format {
        "uri" => {
            let Some((scheme, rest)) = text.split_once(':') else {
                return false;
            };
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.is_empty()
                && !text.chars().any(char::is_whitespace)
        }
        "email" => text.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        }),
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

/// Compiles a schema pattern. JSON-Schema patterns are unanchored; `\w`/`\d` are ASCII as in
/// PCRE without `ucp`, falling back to Unicode mode for patterns that need it (such as `.`).
pub(crate) fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .or_else(|_| Regex::new(pattern))
}
