//! Validation errors and their rendering as the `data` of Kazoo's 400 "validation error".

use std::fmt;

use serde_json::{Map, Value};

/// One failed constraint, located by the path of the offending field.
///
/// `code` is Kazoo's error key (`required`, `minLength`, `enum`, `type`, `unique`, ...);
/// `target` is the limit the value was checked against, `value` (and, for string lengths,
/// `cause`) the offending value, as Kazoo reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    pub path: Vec<String>,
    pub code: String,
    pub message: String,
    pub target: Option<Value>,
    pub cause: Option<Value>,
    pub value: Option<Value>,
}

impl ValidationError {
    /// An error with only a message; add the optional parts with the `with_*` methods.
    pub fn new(path: Vec<String>, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path,
            code: code.into(),
            message: message.into(),
            target: None,
            cause: None,
            value: None,
        }
    }

    #[must_use]
    pub fn with_target(mut self, target: Value) -> Self {
        self.target = Some(target);
        self
    }

    #[must_use]
    pub fn with_cause(mut self, cause: Value) -> Self {
        self.cause = Some(cause);
        self
    }

    #[must_use]
    pub fn with_value(mut self, value: Value) -> Self {
        self.value = Some(value);
        self
    }

    /// The key Kazoo uses in `data`: path segments joined with `.`, dots inside a segment
    /// escaped as `%2E` so that `{"a.b": ..}` and `{"a": {"b": ..}}` stay distinguishable.
    pub fn dotted_path(&self) -> String {
        self.path
            .iter()
            .map(|segment| segment.replace('.', "%2E"))
            .collect::<Vec<_>>()
            .join(".")
    }

    fn detail(&self) -> Value {
        let mut detail = Map::new();
        detail.insert("message".to_owned(), Value::String(self.message.clone()));
        for (key, part) in [
            ("target", &self.target),
            ("cause", &self.cause),
            ("value", &self.value),
        ] {
            if let Some(part) = part {
                detail.insert(key.to_owned(), part.clone());
            }
        }
        Value::Object(detail)
    }
}

/// Every error found in one document; validation never stops at the first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidationErrors {
    pub errors: Vec<ValidationError>,
}

impl ValidationErrors {
    pub fn push(&mut self, error: ValidationError) {
        self.errors.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Kazoo's 400 `data`:
    /// `{"sip.username": {"minLength": {"message": "String must be at least 2 characters", "target": 2, ...}}}`.
    /// Two errors with the same path and code: the later one wins, as in crossbar.
    pub fn to_kazoo_data(&self) -> Value {
        let mut data = Map::new();
        for error in &self.errors {
            let entry = data
                .entry(error.dotted_path())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(codes) = entry {
                codes.insert(error.code.clone(), error.detail());
            }
        }
        Value::Object(data)
    }
}

impl From<Vec<ValidationError>> for ValidationErrors {
    fn from(errors: Vec<ValidationError>) -> Self {
        Self { errors }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "validation error ({} field error(s)",
            self.errors.len()
        )?;
        for error in self.errors.iter().take(3) {
            write!(formatter, "; {}: {}", error.dotted_path(), error.code)?;
        }
        write!(formatter, ")")
    }
}

impl std::error::Error for ValidationErrors {}
