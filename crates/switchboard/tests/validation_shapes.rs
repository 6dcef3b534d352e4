//! Every kind of schema constraint the devices schema uses, over real HTTP against the real
//! binary: a device that breaks it gets Kazoo's 400 "validation error" with the offending
//! dotted path and the constraint's code, and nothing is stored.

mod common;

use common::Switchboard;
use serde_json::{Value, json};

#[test]
fn each_constraint_kind_answers_in_kazoos_shape() {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    let devices = format!("/v2/accounts/{admin}/devices");
    let long = "9".repeat(40);
    // (document, dotted path, code)
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "name", "required"),
        (
            json!({"name": "x", "sip": {"username": "a"}}),
            "sip.username",
            "minLength",
        ),
        (
            json!({"name": "x", "call_forward": {"number": long}}),
            "call_forward.number",
            "maxLength",
        ),
        (
            json!({"name": "x", "sip": {"method": "digest"}}),
            "sip.method",
            "enum",
        ),
        (json!({"name": 5}), "name", "type"),
        (
            json!({"name": "x", "sip": {"expire_seconds": 1.5}}),
            "sip.expire_seconds",
            "type",
        ),
        (
            json!({"name": "x", "sip": {"realm": "bad realm"}}),
            "sip.realm",
            "pattern",
        ),
        (
            json!({"name": "x", "call_recording": {"sideways": {}}}),
            "call_recording.sideways",
            "additionalProperties",
        ),
        (
            json!({"name": "x", "media": {"audio": {"codecs": ["PCMU", "PCMU"]}}}),
            "media.audio.codecs",
            "uniqueItems",
        ),
        (json!({"name": "x", "flags": ["ok", 7]}), "flags.1", "type"),
        (
            json!({"name": "x", "outbound_flags": "a"}),
            "outbound_flags",
            "not_one_schema_valid",
        ),
        (
            json!({"name": "x", "sip": {"custom_sip_headers": {"in": 5}}}),
            "sip.custom_sip_headers",
            "any_schemas_not_valid",
        ),
        (
            json!({"name": "x", "call_recording": {"any": {"any": {"url": "not a uri"}}}}),
            "call_recording.any.any.url",
            "wrong_format",
        ),
        (
            json!({"name": "x", "sip": {"method": "ip", "ip": "300.1.1.1"}}),
            "sip.ip",
            "type",
        ),
    ];
    for (document, path, code) in &cases {
        let response = board.api(
            &token,
            "PUT",
            &devices,
            Some(&json!({"data": document}).to_string()),
        );
        assert_eq!(response.status, 400, "{document}: {}", response.text);
        assert_eq!(response.json["status"], "error", "{}", response.text);
        assert_eq!(response.json["error"], "400", "{}", response.text);
        assert_eq!(
            response.json["message"], "validation error",
            "{}",
            response.text
        );
        let detail = &response.json["data"][*path][*code];
        assert!(
            detail.is_object() && detail.get("message").is_some(),
            "{document}: expected data.{path}.{code}, got {}",
            response.json["data"]
        );
    }
    // Two faults at once: both are reported.
    let response = board.api(
        &token,
        "PUT",
        &devices,
        Some(&json!({"data": {"sip": {"username": "a"}}}).to_string()),
    );
    assert!(
        response.json["data"]["name"]["required"].is_object(),
        "{}",
        response.text
    );
    assert!(
        response.json["data"]["sip.username"]["minLength"].is_object(),
        "{}",
        response.text
    );
    // Limits are named: target and the offending value.
    assert_eq!(
        response.json["data"]["sip.username"]["minLength"]["target"],
        2
    );
    // Nothing was stored by any of it.
    let listed = board.api(&token, "GET", &devices, None);
    assert_eq!(listed.json["data"], json!([]), "{}", listed.text);
}
