//! The `devices` schema: one failing document per constraint kind, with the exact 400 `data`
//! Kazoo would send, plus defaults, unknown keys and the coercion retry.

use serde_json::{Value, json};
use switchboard_schema::{Schemas, ValidationError, ValidationErrors};

fn validate(document: Value) -> Result<Value, ValidationErrors> {
    let mut document = document;
    Schemas::kazoo()
        .validate("devices", &mut document)
        .map(|()| document)
}

/// The `data` of the 400 for `document`; panics (test only) if it validates.
fn kazoo_data(document: Value) -> Value {
    match validate(document) {
        Ok(stored) => panic!("expected a validation error, document passed as {stored}"),
        Err(errors) => errors.to_kazoo_data(),
    }
}

#[test]
fn defaults_of_a_new_device_are_exactly_kazoos() {
    let stored = validate(json!({"name": "x"})).expect("valid");
    assert_eq!(
        stored,
        json!({
            "name": "x",
            "enabled": true,
            "call_restriction": {},
            "contact_list": {},
            "music_on_hold": {},
            "ringtones": {},
            "exclude_from_queues": false,
            "mwi_unsolicited_updates": true,
            "register_overwrite_notify": false,
            "suppress_unregister_notifications": false,
            "sip": {"method": "password", "invite_format": "contact", "expire_seconds": 300}
        })
    );
}

#[test]
fn given_values_beat_defaults_and_present_sub_objects_get_their_defaults() {
    let stored = validate(json!({
        "name": "x",
        "enabled": false,
        "sip": {"method": "ip", "ip": "10.0.0.1"},
        "media": {},
        "call_forward": {"enabled": true}
    }))
    .expect("valid");
    assert_eq!(stored["enabled"], json!(false));
    assert_eq!(
        stored["sip"],
        json!({"method": "ip", "ip": "10.0.0.1", "invite_format": "contact", "expire_seconds": 300})
    );
    // endpoint.media via $ref: present-but-empty objects get their children's defaults.
    assert_eq!(
        stored["media"],
        json!({
            "audio": {},
            "encryption": {"enforce_security": false, "methods": []},
            "video": {"codecs": []}
        })
    );
    assert_eq!(
        stored["call_forward"],
        json!({
            "enabled": true,
            "direct_calls_only": false,
            "failover": false,
            "ignore_early_media": true,
            "keep_caller_id": true,
            "require_keypress": true,
            "substitute": true
        })
    );
}

#[test]
fn absent_objects_without_their_own_default_are_not_created() {
    let stored = validate(json!({"name": "x"})).expect("valid");
    for absent in [
        "media",
        "call_forward",
        "caller_id",
        "provision",
        "metaflows",
    ] {
        assert!(stored.get(absent).is_none(), "{absent} was created");
    }
}

#[test]
fn unknown_keys_are_kept() {
    let stored =
        validate(json!({"name": "x", "custom_thing": {"a": [1, 2]}, "sip": {"x_extra": 1}}))
            .expect("valid");
    assert_eq!(stored["custom_thing"], json!({"a": [1, 2]}));
    assert_eq!(stored["sip"]["x_extra"], json!(1));
}

#[test]
fn a_failed_document_is_left_untouched() {
    let mut document = json!({"sip": {}});
    let before = document.clone();
    assert!(Schemas::kazoo().validate("devices", &mut document).is_err());
    assert_eq!(document, before);
}

#[test]
fn required() {
    assert_eq!(
        kazoo_data(json!({})),
        json!({"name": {"required": {"message": "Field is required but missing"}}})
    );
}

#[test]
fn min_length_counts_characters() {
    assert_eq!(
        kazoo_data(json!({"name": "x", "sip": {"username": "a"}})),
        json!({"sip.username": {"minLength": {
            "message": "String must be at least 2 characters", "target": 2, "cause": "a", "value": "a"
        }}})
    );
    // Two characters, four bytes: long enough.
    validate(json!({"name": "x", "sip": {"username": "éé"}})).expect("two characters pass");
}

#[test]
fn max_length_counts_characters() {
    let name = "é".repeat(128);
    validate(json!({"name": name})).expect("128 characters (256 bytes) pass");
    let long = "a".repeat(16);
    assert_eq!(
        kazoo_data(json!({"name": "x", "call_forward": {"number": long}})),
        json!({"call_forward.number": {"maxLength": {
            "message": "String must not be more than 15 characters", "target": 15, "cause": long, "value": long
        }}})
    );
}

#[test]
fn enumeration() {
    assert_eq!(
        kazoo_data(json!({"name": "x", "sip": {"method": "digest"}})),
        json!({"sip.method": {"enum": {
            "message": "Value not found in enumerated list of values",
            "target": ["password", "ip"],
            "value": "digest"
        }}})
    );
}

#[test]
fn type_single_and_list() {
    assert_eq!(
        kazoo_data(json!({"name": 5})),
        json!({"name": {"type": {
            "message": "Value did not match type(s): string", "target": "string", "value": 5
        }}})
    );
    assert_eq!(
        kazoo_data(json!({"name": "x", "provision": {"endpoint_model": true}})),
        json!({"provision.endpoint_model": {"type": {
            "message": "Value did not match type(s): string, integer",
            "target": "string, integer",
            "value": true
        }}})
    );
    // integer is not number: 1.5 fails "integer"
    assert_eq!(
        kazoo_data(json!({"name": "x", "sip": {"expire_seconds": 1.5}})),
        json!({"sip.expire_seconds": {"type": {
            "message": "Value did not match type(s): integer", "target": "integer", "value": 1.5
        }}})
    );
}

#[test]
fn pattern_is_unanchored_json_schema_regex() {
    assert_eq!(
        kazoo_data(json!({"name": "x", "sip": {"realm": "bad realm"}})),
        json!({"sip.realm": {"pattern": {
            "message": "Failed to match pattern '^[.\\w_-]+$'",
            "target": "^[.\\w_-]+$",
            "value": "bad realm"
        }}})
    );
    validate(json!({"name": "x", "sip": {"realm": "sip.example-1.com"}})).expect("valid realm");
}

#[test]
fn minimum_and_maximum_through_refs() {
    let data = kazoo_data(json!({"name": "x", "call_recording": {
        "inbound": {"onnet": {"time_limit": 4}},
        "outbound": {"offnet": {"time_limit": 10801}}
    }}));
    assert_eq!(
        data,
        json!({
            "call_recording.inbound.onnet.time_limit": {"minimum": {
                "message": "Value must be at least 5", "target": 5, "value": 4
            }},
            "call_recording.outbound.offnet.time_limit": {"maximum": {
                "message": "Value must be at most 10800", "target": 10800, "value": 10801
            }}
        })
    );
}

#[test]
fn additional_properties_false() {
    assert_eq!(
        kazoo_data(json!({"name": "x", "call_recording": {"sideways": {}}})),
        json!({"call_recording.sideways": {"additionalProperties": {
            "message": "Strict checking of data is enabled; only include schema-defined properties",
            "value": {}
        }}})
    );
}

#[test]
fn additional_properties_schema() {
    assert_eq!(
        kazoo_data(
            json!({"name": "x", "call_restriction": {"international": {"action": "maybe"}}})
        ),
        json!({"call_restriction.international.action": {"enum": {
            "message": "Value not found in enumerated list of values",
            "target": ["inherit", "deny"],
            "value": "maybe"
        }}})
    );
}

#[test]
fn unique_items_and_items() {
    assert_eq!(
        kazoo_data(json!({"name": "x", "media": {"audio": {"codecs": ["PCMU", "PCMU"]}}})),
        json!({"media.audio.codecs": {"uniqueItems": {
            "message": "List of items is not unique", "value": ["PCMU", "PCMU"]
        }}})
    );
    assert_eq!(
        kazoo_data(json!({"name": "x", "flags": ["ok", 7]})),
        json!({"flags.1": {"type": {
            "message": "Value did not match type(s): string", "target": "string", "value": 7
        }}})
    );
}

#[test]
fn pattern_properties() {
    let user = "0123456789abcdef0123456789abcdef";
    validate(json!({"name": "x", "hotdesk": {"users": {user: {}}}})).expect("object per user");
    assert_eq!(
        kazoo_data(json!({"name": "x", "hotdesk": {"users": {user: "yes"}}})),
        json!({format!("hotdesk.users.{user}"): {"type": {
            "message": "Value did not match type(s): object", "target": "object", "value": "yes"
        }}})
    );
}

#[test]
fn one_of() {
    validate(json!({"name": "x", "outbound_flags": ["a"]})).expect("list form");
    validate(json!({"name": "x", "outbound_flags": {"static": ["a"]}})).expect("object form");
    assert_eq!(
        kazoo_data(json!({"name": "x", "outbound_flags": "a"})),
        json!({"outbound_flags": {"not_one_schema_valid": {"message": "failed to validate", "value": "a"}}})
    );
    validate(
        json!({"name": "x", "provision": {"combo_keys": {"1": {"type": "parking", "value": 3}}}}),
    )
    .expect("parking key");
    assert_eq!(
        kazoo_data(
            json!({"name": "x", "provision": {"combo_keys": {"1": {"type": "parking", "value": 11}}}})
        ),
        json!({"provision.combo_keys.1": {"not_one_schema_valid": {
            "message": "failed to validate", "value": {"type": "parking", "value": 11}
        }}})
    );
}

#[test]
fn any_of() {
    validate(json!({"name": "x", "sip": {"custom_sip_headers": {"X-Foo": "bar"}}})).expect("flat");
    validate(json!({"name": "x", "sip": {"custom_sip_headers": {"in": {"X-Foo": "bar"}}}}))
        .expect("in/out");
    assert_eq!(
        kazoo_data(json!({"name": "x", "sip": {"custom_sip_headers": {"in": 5}}})),
        json!({"sip.custom_sip_headers": {"any_schemas_not_valid": {
            "message": "failed to validate", "value": {"in": 5}
        }}})
    );
}

#[test]
fn format_uri() {
    assert_eq!(
        kazoo_data(json!({"name": "x", "call_recording": {"any": {"any": {"url": "not a uri"}}}})),
        json!({"call_recording.any.any.url": {"wrong_format": {
            "message": "Field is not in the correct format", "target": "uri", "value": "not a uri"
        }}})
    );
    validate(
        json!({"name": "x", "call_recording": {"any": {"any": {"url": "https://rec.example/x"}}}}),
    )
    .expect("valid uri");
}

#[test]
fn recursive_ref_and_required_inside_it() {
    assert_eq!(
        kazoo_data(
            json!({"name": "x", "metaflows": {"numbers": {"1": {"children": {"_": {}}, "module": "m"}}}})
        ),
        json!({"metaflows.numbers.1.children._.module": {"required": {"message": "Field is required but missing"}}})
    );
}

#[test]
fn all_errors_at_once() {
    let data =
        kazoo_data(json!({"sip": {"username": "a", "password": "abc"}, "owner_id": "short"}));
    let keys: Vec<&String> = data.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["name", "owner_id", "sip.password", "sip.username"]);
}

#[test]
fn two_codes_on_one_field_are_both_reported() {
    assert_eq!(
        kazoo_data(json!({"name": "x", "sip": {"method": 3}})),
        json!({"sip.method": {
            "type": {"message": "Value did not match type(s): string", "target": "string", "value": 3},
            "enum": {"message": "Value not found in enumerated list of values", "target": ["password", "ip"], "value": 3}
        }})
    );
}

#[test]
fn dots_in_keys_are_escaped() {
    assert_eq!(
        kazoo_data(json!({"name": "x", "call_restriction": {"a.b": {"action": "no"}}})),
        json!({"call_restriction.a%2Eb.action": {"enum": {
            "message": "Value not found in enumerated list of values",
            "target": ["inherit", "deny"],
            "value": "no"
        }}})
    );
}

#[test]
fn strings_are_coerced_to_integers_and_booleans_then_revalidated() {
    let stored =
        validate(json!({"name": "x", "sip": {"expire_seconds": "600"}, "enabled": "false"}))
            .expect("coerced");
    assert_eq!(stored["sip"]["expire_seconds"], json!(600));
    assert_eq!(stored["enabled"], json!(false));
    assert_eq!(
        stored["sip"]["method"],
        json!("password"),
        "defaults still written"
    );
}

#[test]
fn coercion_is_tried_once_and_other_errors_remain() {
    assert_eq!(
        kazoo_data(json!({"sip": {"expire_seconds": "600"}})),
        json!({"name": {"required": {"message": "Field is required but missing"}}})
    );
    assert_eq!(
        kazoo_data(json!({"name": "x", "sip": {"expire_seconds": "soon"}})),
        json!({"sip.expire_seconds": {"type": {
            "message": "Value did not match type(s): integer", "target": "integer", "value": "soon"
        }}})
    );
}

#[test]
fn non_object_documents_are_rejected_without_panicking() {
    for document in [json!(null), json!([]), json!("device"), json!(3)] {
        let data = kazoo_data(document);
        assert_eq!(data[""]["type"]["target"], json!("object"));
    }
}

#[test]
fn errors_pushed_by_the_api_render_alongside() {
    let mut errors = validate(json!({"sip": {"username": "user1"}})).expect_err("name missing");
    errors.push(
        ValidationError::new(
            vec!["sip".into(), "username".into()],
            "unique",
            "SIP credentials already in use",
        )
        .with_cause(json!("user1")),
    );
    assert_eq!(
        errors.to_kazoo_data(),
        json!({
            "name": {"required": {"message": "Field is required but missing"}},
            "sip.username": {"unique": {"message": "SIP credentials already in use", "cause": "user1"}}
        })
    );
    assert!(!errors.is_empty());
    assert!(ValidationErrors::default().is_empty());
}
