//! crossbar's `schema_strict_validation = false` fallback: values that failed only because a
//! client sent `"600"` for an integer or `"true"` for a boolean are converted, and the document
//! is validated once more.

use serde_json::{Number, Value};

use crate::validator::{Coercion, Finding, Segment};

/// Applies every possible conversion to `document`; whether anything changed.
pub(crate) fn apply(document: &mut Value, findings: &[Finding]) -> bool {
    let mut changed = false;
    for finding in findings {
        let Some(coercion) = finding.coercion else {
            continue;
        };
        let Some(slot) = locate(document, &finding.location) else {
            continue;
        };
        if let Some(converted) = convert(slot, coercion) {
            *slot = converted;
            changed = true;
        }
    }
    changed
}

fn locate<'d>(document: &'d mut Value, location: &[Segment]) -> Option<&'d mut Value> {
    location
        .iter()
        .try_fold(document, |node, segment| match (node, segment) {
            (Value::Object(object), Segment::Key(key)) => object.get_mut(key),
            (Value::Array(items), Segment::Index(index)) => items.get_mut(*index),
            _ => None,
        })
}

fn convert(value: &Value, coercion: Coercion) -> Option<Value> {
    match (coercion, value) {
        (Coercion::Integer, Value::String(text)) => text.parse::<i64>().ok().map(Value::from),
        // kz_term:to_integer on a float rounds; only whole floats are taken here, since turning
        // 1.5 into 2 silently is worse than a 400.
        (Coercion::Integer, Value::Number(number)) => number
            .as_f64()
            .filter(|float| float.fract() == 0.0 && float.abs() < 9.0e15)
            .map(|float| Value::from(float as i64)),
        (Coercion::Number, Value::String(text)) => {
            text.parse::<i64>().ok().map(Value::from).or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
        }
        (Coercion::Boolean, Value::String(text)) => match text.as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}
