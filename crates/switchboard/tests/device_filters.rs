//! End to end over HTTP: Kazoo's list filters on devices (seed 001's
//! `filter_device_type=softphone` among them), filtered pagination, and the softphone
//! document's per-device status, fed by a real registration.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::Switchboard;
use serde_json::{Value, json};

const GREGORIAN_UNIX_OFFSET: i64 = 62_167_219_200;

fn body(data: Value) -> String {
    json!({ "data": data }).to_string()
}

fn gregorian_now() -> i64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    unix + GREGORIAN_UNIX_OFFSET
}

/// A running server, an account with realm `filters.test`, and a token for it.
fn setup() -> (Switchboard, String, String) {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&body(json!({"name": "Filters", "realm": "filters.test"}))),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let account = response.json["data"]["id"].as_str().expect("id").to_owned();
    (board, token, account)
}

fn create(board: &Switchboard, token: &str, account: &str, data: Value) -> String {
    let response = board.api(
        token,
        "PUT",
        &format!("/v2/accounts/{account}/devices"),
        Some(&body(data)),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    response.json["data"]["id"].as_str().expect("id").to_owned()
}

fn names(response: &common::HttpResponse) -> Vec<String> {
    assert_eq!(response.status, 200, "{}", response.text);
    let mut names: Vec<String> = response.json["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn device_lists_filter_like_kazoo() {
    let (board, token, account) = setup();
    for (name, kind) in [
        ("soft-a", "softphone"),
        ("soft-b", "softphone"),
        ("soft-c", "softphone"),
        ("desk-a", "sip_device"),
        ("desk-b", "sip_device"),
    ] {
        create(
            &board,
            &token,
            &account,
            json!({"name": name, "device_type": kind, "sip": {"username": name, "password": "secret-pass"}}),
        );
    }
    create(
        &board,
        &token,
        &account,
        json!({"name": "gold", "device_type": "sip_device", "custom": {"tier": "gold"},
               "sip": {"username": "gold", "password": "secret-pass"}}),
    );
    let list = |query: &str| {
        board.api(
            &token,
            "GET",
            &format!("/v2/accounts/{account}/devices?{query}"),
            None,
        )
    };

    assert_eq!(
        names(&list("filter_device_type=softphone")),
        ["soft-a", "soft-b", "soft-c"]
    );
    assert_eq!(
        names(&list("filter_not_device_type=softphone")),
        ["desk-a", "desk-b", "gold"]
    );
    assert_eq!(names(&list("has_key=custom")), ["gold"]);
    assert_eq!(names(&list("key_missing=custom")).len(), 5);
    assert_eq!(
        names(&list("filter_custom.tier=%5B%22silver%22%2C%22gold%22%5D")),
        ["gold"],
        "a JSON array means any of its members"
    );
    assert_eq!(
        names(&list("filter_sip.method=password")).len(),
        6,
        "dotted paths"
    );
    assert_eq!(
        names(&list("filter_device_type=softphone&has_key=custom")),
        Vec::<String>::new(),
        "filters are AND-ed"
    );
    let now = gregorian_now();
    assert_eq!(
        names(&list(&format!("created_from={}", now - 3600))).len(),
        6
    );
    assert!(names(&list(&format!("created_to={}", now - 3600))).is_empty());
    assert!(names(&list(&format!("modified_from={}", now + 3600))).is_empty());
    assert_eq!(
        names(&list("filter_device_type=softphone&paginate=false")),
        ["soft-a", "soft-b", "soft-c"]
    );
    let bad = list("created_from=yesterday");
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.json["status"], "error");

    // Filtered pages are full pages: two softphones, then the last one.
    let first = list("filter_device_type=softphone&page_size=2");
    assert_eq!(names(&first).len(), 2);
    let next = first.json["next_start_key"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = list(&format!(
        "filter_device_type=softphone&page_size=2&start_key={next}"
    ));
    assert_eq!(names(&second).len(), 1);
    assert!(
        second.json.get("next_start_key").is_none(),
        "{}",
        second.text
    );
    let mut all = names(&first);
    all.extend(names(&second));
    all.sort();
    assert_eq!(all, ["soft-a", "soft-b", "soft-c"]);
}

#[test]
fn device_status_follows_the_registration() {
    if !common::sipp_available() {
        return;
    }
    let (board, token, account) = setup();
    let device = create(
        &board,
        &token,
        &account,
        json!({"name": "Alice Softphone", "device_type": "softphone",
               "sip": {"username": "alice_softphone", "password": "secure_password"}}),
    );
    let status = |id: &str| {
        board.api(
            &token,
            "GET",
            &format!("/v2/accounts/{account}/devices/{id}/status"),
            None,
        )
    };
    let before = status(&device);
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(before.json["data"]["registered"], false);
    assert_eq!(before.json["data"]["last_registration"], Value::Null);

    let csv = board.users_csv(
        "alice.csv",
        &[("alice_softphone", "secure_password")],
        "filters.test",
    );
    let phone_port = common::free_port();
    board
        .sipp_from(phone_port, "register_ok_300", &csv, "u1", 1)
        .expect("register");
    let registered = status(&device);
    assert_eq!(
        registered.json["data"]["registered"], true,
        "{}",
        registered.text
    );
    assert_eq!(registered.json["data"]["ip"], "127.0.0.1");
    assert_eq!(registered.json["data"]["port"], phone_port);
    let when = registered.json["data"]["last_registration"]
        .as_str()
        .expect("a time")
        .to_owned();
    assert!(when.ends_with('Z') && when.len() == 20, "{when}");

    // Flushed by the operator: not registered, but the last registration is remembered.
    let flushed = board.api(
        &token,
        "DELETE",
        &format!("/v2/accounts/{account}/registrations/alice_softphone"),
        None,
    );
    assert_eq!(flushed.status, 200, "{}", flushed.text);
    let after = status(&device);
    assert_eq!(after.json["data"]["registered"], false, "{}", after.text);
    assert_eq!(after.json["data"]["last_registration"], when.as_str());

    let unknown = status("0123456789abcdef0123456789abcdef");
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert_eq!(unknown.json["error"], "404");
}
