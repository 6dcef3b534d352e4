//! The embedded schema set as a whole, and the other resources' schemas.

use serde_json::{Value, json};
use switchboard_schema::Schemas;

fn references(schema: &Value, found: &mut Vec<String>) {
    match schema {
        Value::Object(keywords) => {
            if let Some(Value::String(reference)) = keywords.get("$ref") {
                found.push(reference.clone());
            }
            keywords.values().for_each(|child| references(child, found));
        }
        Value::Array(items) => items.iter().for_each(|child| references(child, found)),
        _ => {}
    }
}

#[test]
fn every_embedded_schema_parses_and_compiles() {
    let schemas = Schemas::kazoo();
    assert_eq!(schemas.defects(), &[] as &[String]);
    for required in [
        "devices",
        "users",
        "profile",
        "notify.callback",
        "devices_notify",
        "webhooks",
        "api_auth",
        "user_auth",
        "token_restrictions",
    ] {
        assert!(schemas.schema(required).is_some(), "{required} missing");
    }
    for name in schemas.names() {
        let schema = schemas.schema(name).expect("listed");
        assert_eq!(schema["_id"], json!(name), "file name and _id disagree");
    }
}

#[test]
fn every_reference_resolves() {
    let schemas = Schemas::kazoo();
    for name in schemas.names() {
        let mut found = Vec::new();
        references(schemas.schema(name).expect("listed"), &mut found);
        for reference in found {
            let (document, fragment) = reference.split_once('#').unwrap_or((&reference, ""));
            let target = if document.is_empty() { name } else { document };
            let resolved = schemas.schema(target).and_then(|schema| {
                if fragment.is_empty() {
                    Some(schema)
                } else {
                    schema.pointer(fragment)
                }
            });
            assert!(
                resolved.is_some(),
                "{name}: $ref {reference:?} does not resolve"
            );
        }
    }
}

#[test]
fn unknown_schema_is_a_schema_error() {
    let mut document = json!({});
    let errors = Schemas::kazoo()
        .validate("nope", &mut document)
        .expect_err("unknown");
    assert_eq!(
        errors.to_kazoo_data(),
        json!({"schema": {"schema": {"message": "schema not found", "target": "nope"}}})
    );
}

#[test]
fn users_smoke() {
    let mut user =
        json!({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"});
    Schemas::kazoo()
        .validate("users", &mut user)
        .expect("valid user");
    assert_eq!(user["enabled"], json!(true));
    assert_eq!(user["priv_level"], json!("user"));
    assert_eq!(
        user["hotdesk"],
        json!({"enabled": false, "keep_logged_in_elsewhere": false, "require_pin": false})
    );

    let mut bad = json!({"first_name": "", "email": "nobody", "hotdesk": {"pin": "1"}});
    let data = Schemas::kazoo()
        .validate("users", &mut bad)
        .expect_err("invalid")
        .to_kazoo_data();
    assert_eq!(
        data["last_name"]["required"]["message"],
        json!("Field is required but missing")
    );
    assert_eq!(data["first_name"]["minLength"]["target"], json!(1));
    assert_eq!(data["email"]["wrong_format"]["target"], json!("email"));
    assert_eq!(data["hotdesk.pin"]["minLength"]["target"], json!(4));
}

#[test]
fn devices_notify_smoke() {
    let mut body = json!({"data": {"event": "check-sync"}});
    Schemas::kazoo()
        .validate("devices_notify", &mut body)
        .expect("valid");
    let mut bad = json!({"data": {"body": {"data": 1}}});
    let data = Schemas::kazoo()
        .validate("devices_notify", &mut bad)
        .expect_err("invalid")
        .to_kazoo_data();
    assert_eq!(
        data,
        json!({
            "data.event": {"required": {"message": "Field is required but missing"}},
            "data.body.content_type": {"required": {"message": "Field is required but missing"}},
            "data.body.data": {"type": {"message": "Value did not match type(s): string", "target": "string", "value": 1}}
        })
    );
}

#[test]
fn webhooks_and_auth_smoke() {
    let mut hook = json!({"name": "h", "uri": "https://example.com/hook", "hook": "notifications"});
    Schemas::kazoo()
        .validate("webhooks", &mut hook)
        .expect("valid");
    assert_eq!(hook["retries"], json!(2));
    assert_eq!(hook["format"], json!("form-data"));
    let mut bad =
        json!({"name": "h", "uri": "https://example.com/hook", "hook": "x", "retries": "9"});
    let data = Schemas::kazoo()
        .validate("webhooks", &mut bad)
        .expect_err("too many")
        .to_kazoo_data();
    // "9" is coerced to 9 on the retry, which then fails maximum.
    assert_eq!(data["retries"]["maximum"]["value"], json!(9));

    let mut auth =
        json!({"credentials": "0123456789abcdef0123456789abcdef", "account_name": "acme"});
    Schemas::kazoo()
        .validate("user_auth", &mut auth)
        .expect("valid");
    assert_eq!(auth["method"], json!("md5"));
    let mut missing = json!({});
    assert!(Schemas::kazoo().validate("api_auth", &mut missing).is_err());
}
