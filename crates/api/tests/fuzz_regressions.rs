//! Inputs that once broke a property of the `api_json` fuzz target (fuzz/README.md), replayed
//! through the same entry points (`switchboard_api::fuzzing`) on stable.

use serde_json::json;
use switchboard_api::ApiError;
use switchboard_api::fuzzing::body;

const NOW: i64 = 1_700_000_000_000;

#[test]
fn list_filters_with_extreme_dates_do_not_overflow() {
    // `created_to` at i64::MAX overflowed the inclusive bound (`+ 999`); `modified_from` at
    // i64::MIN overflowed the Gregorian offset subtraction. Both panicked in debug builds.
    for text in [
        r#"{"created_to":9223372036854775807}"#,
        r#"{"modified_to":"9223372036854775807"}"#,
        r#"{"modified_from":"-9223372036854775808"}"#,
        r#"{"created_from":-9223372036854775808}"#,
    ] {
        let body = body(text.as_bytes()).expect("JSON").expect("not blank");
        body.filter(&json!({}), NOW, NOW).expect("valid filters");
    }
}

#[test]
fn an_accepted_account_is_stored_as_it_was_validated() {
    // A blank name was accepted and stored trimmed (empty); an upper-case non-ASCII realm was
    // accepted and stored lower-cased into one that no longer matched the realm pattern.
    for text in [
        r#"{"data":{"name":"   ","realm":"abcd"}}"#,
        r#"{"data":{"name":"x","realm":"İİİİ"}}"#,
    ] {
        let body = body(text.as_bytes()).expect("JSON").expect("not blank");
        match body.account_create() {
            Err(ApiError::Validation(_)) => {}
            other => panic!("{text}: expected a validation error, got {other:?}"),
        }
    }
    let body = body(br#"{"data":{"name":" Acme ","realm":"Acme.Example"}}"#)
        .expect("JSON")
        .expect("not blank");
    let (name, realm, _) = body.account_create().expect("valid");
    assert_eq!((name.as_str(), realm.as_str()), ("Acme", "acme.example"));
}

#[test]
fn a_long_number_survives_being_stored_and_read_again() {
    // A 60-digit integer was parsed to a float one unit in the last place off the nearest
    // (serde_json's fast path), so a stored document changed when it was read and saved
    // again. serde_json's `float_roundtrip` parses exactly.
    let text = format!(
        r#"{{"data":{{"name":"reg","retries":2{}7,"custom_data":{{"a":"b"}}}}}}"#,
        "7".repeat(58)
    );
    let body = body(text.as_bytes()).expect("JSON").expect("not blank");
    let document = body.device_create().expect("valid");
    let again = serde_json::to_vec(&json!({ "data": document })).expect("serialise");
    let twice = switchboard_api::fuzzing::body(&again)
        .expect("JSON")
        .expect("not blank")
        .device_create()
        .expect("accepted again");
    assert_eq!(twice, document);
}
