//! Arbitrary bytes as an API request body, through the code every handler runs before the
//! store (`switchboard_api::fuzzing`): the envelope, `data`, the device (create and seed 000's
//! `settings.registrationExpiry` PATCH), account (create, PATCH), user, `user_auth`, API key,
//! webhook and NOTIFY bodies, and the list filters (the envelope's members as the query).
//! Properties: nothing panics; a body that is not a JSON object is a parse error; every other
//! refusal is a validation error naming the field(s), each with a message (or, for filters, a
//! bad request naming the parameter); a document accepted by validation, serialised and sent
//! again in an envelope, is accepted again unchanged.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use switchboard_api::fuzzing::{body, Body, Document};
use switchboard_api::ApiError;

const NOW: i64 = 1_700_000_000_000;

/// A refusal must say what was wrong: invalid JSON, or which field and why.
fn check_refusal(error: &ApiError) {
    match error {
        ApiError::Parse(cause) => assert!(!cause.is_empty(), "a parse error without a cause"),
        ApiError::Validation(Value::Object(fields)) => {
            assert!(!fields.is_empty(), "a validation error naming no field");
            for (field, codes) in fields {
                assert!(
                    !field.is_empty(),
                    "a validation error without a field: {fields:?}"
                );
                let Value::Object(codes) = codes else {
                    panic!("{field}: codes must be an object: {codes}");
                };
                assert!(!codes.is_empty(), "{field}: no error code");
                for (code, detail) in codes {
                    assert!(
                        detail
                            .get("message")
                            .and_then(Value::as_str)
                            .is_some_and(|m| !m.is_empty()),
                        "{field}.{code}: no message: {detail}"
                    );
                }
            }
        }
        other => panic!("unexpected refusal of a body: {other:?}"),
    }
}

/// The body `{"data": document}` (as a client re-sending what it got back would).
fn again(document: &Document) -> Body {
    let text = serde_json::to_vec(&json!({ "data": document })).expect("a map serialises");
    body(&text)
        .expect("a serialised document parses")
        .expect("not blank")
}

fn object(value: Value) -> Document {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn stored_device() -> &'static Document {
    static STORED: OnceLock<Document> = OnceLock::new();
    STORED.get_or_init(|| {
        let body =
            body(br#"{"data":{"name":"Desk","sip":{"username":"alice","password":"secret1"}}}"#)
                .expect("valid")
                .expect("not blank");
        body.device_create().expect("the stored device is valid")
    })
}

fn exercise(body: &Body) {
    let _ = body.token();
    let _ = body.param("page_size");
    let _ = body.param("paginate");
    if let Err(error) = body.data() {
        check_refusal(&error);
        // Every resource reads `data` first: the same refusal everywhere.
        return;
    }

    match body.device_create() {
        Ok(document) => {
            let twice = again(&document)
                .device_create()
                .expect("an accepted device is accepted again");
            assert_eq!(twice, document, "device validation is not idempotent");
        }
        Err(error) => check_refusal(&error),
    }
    match body.device_patch(stored_device()) {
        Ok(document) => {
            let twice = again(&document)
                .device_create()
                .expect("a patched device is accepted again");
            assert_eq!(
                twice, document,
                "a patched device changes when validated again"
            );
        }
        Err(error) => check_refusal(&error),
    }
    match body.account_create() {
        Ok((name, realm, stored)) => {
            let mut document = object(stored);
            document.insert("name".into(), name.clone().into());
            document.insert("realm".into(), realm.clone().into());
            let (name2, realm2, _) = again(&document)
                .account_create()
                .expect("an accepted account, as stored, is accepted again");
            assert_eq!((name2, realm2), (name, realm));
        }
        Err(error) => check_refusal(&error),
    }
    let stored_account = object(
        json!({"id": "a1", "name": "Acme", "realm": "acme.example", "created": 1, "modified": 2}),
    );
    match body.account_patch(&stored_account) {
        Ok(_) => {}
        Err(error) => check_refusal(&error),
    }
    match body.user_create() {
        Ok(mut document) => {
            document.remove("id");
            let mut twice = again(&document)
                .user_create()
                .expect("an accepted user is accepted again");
            twice.remove("id");
            assert_eq!(twice, document, "user validation is not idempotent");
        }
        Err(error) => check_refusal(&error),
    }
    match body.user_auth() {
        Ok(document) => {
            let twice = again(&document)
                .user_auth()
                .expect("accepted user_auth is accepted again");
            assert_eq!(twice, document);
        }
        Err(error) => check_refusal(&error),
    }
    match body.api_key() {
        Ok((name, scopes)) => {
            let document = object(json!({"name": name, "scopes": scopes}));
            let twice = again(&document)
                .api_key()
                .expect("an accepted API key is accepted again");
            assert_eq!(twice, (name, scopes));
        }
        Err(error) => check_refusal(&error),
    }
    match body.webhook() {
        Ok((document, _, _)) => {
            let (twice, secret, _) = again(&document)
                .webhook()
                .expect("an accepted webhook is accepted again");
            assert_eq!(secret, None, "the secret is kept out of the document");
            assert_eq!(twice, document, "webhook normalisation is not idempotent");
        }
        Err(error) => check_refusal(&error),
    }
    if let Err(error) = body.notify() {
        check_refusal(&error);
    }
    let data = Value::Object(body.data().unwrap_or_default());
    match body.filter(&data, NOW, NOW) {
        Ok(_) => {}
        Err(ApiError::BadRequest(message)) => assert!(!message.is_empty()),
        Err(error) => panic!("unexpected refusal of a filter: {error:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    match body(data) {
        Ok(Some(body)) => exercise(&body),
        Ok(None) => {}
        Err(error) => check_refusal(&error),
    }
});
