//! End to end: the real binary serves its OpenAPI 3.1 document at `GET /v2/openapi.json`
//! (and `/v1`) without a token, and it is the committed snapshot, `crates/api/openapi.json`.

mod common;

use common::Switchboard;
use serde_json::Value;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/openapi.json");

#[test]
fn the_openapi_document_is_served_without_a_token_and_matches_the_snapshot() {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    let snapshot: Value =
        serde_json::from_str(&std::fs::read_to_string(SNAPSHOT).expect("crates/api/openapi.json"))
            .expect("the snapshot is JSON");
    for prefix in ["/v2", "/v1"] {
        let response = board.http("GET", &format!("{prefix}/openapi.json"), &[], None);
        assert_eq!(response.status, 200, "{prefix}: {}", response.text);
        assert!(
            response
                .header("content-type")
                .is_some_and(|value| value.starts_with("application/json")),
            "{prefix}: {:?}",
            response.headers
        );
        assert_eq!(response.json["openapi"], "3.1.0");
        assert!(
            response.json == snapshot,
            "{prefix}/openapi.json differs from crates/api/openapi.json \
             (rewrite it with `UPDATE_OPENAPI=1 cargo test -p switchboard-api openapi`)"
        );
    }
    // Another method on it is Kazoo's 405, like any known path.
    let response = board.http("POST", "/v2/openapi.json", &[], Some("{}"));
    assert_eq!(response.status, 405, "{}", response.text);
}
