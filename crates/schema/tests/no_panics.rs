//! Arbitrary JSON against every schema: an answer, never a panic.

use proptest::prelude::*;
use serde_json::{Map, Value};
use switchboard_schema::Schemas;

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("name".to_owned()),
        Just("sip".to_owned()),
        Just("username".to_owned()),
        Just("media".to_owned()),
        Just("audio".to_owned()),
        Just("codecs".to_owned()),
        Just("call_recording".to_owned()),
        Just("provision".to_owned()),
        Just("combo_keys".to_owned()),
        Just("metaflows".to_owned()),
        Just("numbers".to_owned()),
        Just("children".to_owned()),
        Just("module".to_owned()),
        Just("outbound_flags".to_owned()),
        Just("expire_seconds".to_owned()),
        "[a-z0-9._]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        "[0-9]{1,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn devices_never_panics(document in arbitrary_json()) {
        let mut document = document;
        let outcome = Schemas::kazoo().validate("devices", &mut document);
        if let Err(errors) = outcome {
            prop_assert!(!errors.is_empty());
            prop_assert!(errors.to_kazoo_data().is_object());
        }
    }

    #[test]
    fn every_schema_never_panics(document in arbitrary_json(), pick in 0usize..64) {
        let names = Schemas::kazoo().names();
        let name = names[pick % names.len()];
        let mut document = document;
        let _ = Schemas::kazoo().validate(name, &mut document);
    }
}

#[test]
fn very_deep_documents_are_refused_not_overflowed() {
    let mut node = Value::Object(Map::new());
    for _ in 0..400 {
        let mut children = Map::new();
        children.insert("_".to_owned(), node);
        let mut flow = Map::new();
        flow.insert("module".to_owned(), Value::String("m".to_owned()));
        flow.insert("children".to_owned(), Value::Object(children));
        node = Value::Object(flow);
    }
    let mut numbers = Map::new();
    numbers.insert("1".to_owned(), node);
    let mut document =
        serde_json::json!({"name": "x", "metaflows": {"numbers": Value::Object(numbers)}});
    let errors = Schemas::kazoo()
        .validate("devices", &mut document)
        .expect_err("too deep");
    assert!(errors.errors.iter().any(|error| error.code == "too_deep"));
}
