//! End to end: the Kazoo-compatible API of the real binary over real HTTP — envelope and
//! errors, tokens, tenancy between two accounts, device CRUD with revisions, pagination and
//! validation, and a device created through the API registering with `sipp` and refused
//! once the API disables it.

mod common;

use std::time::{Duration, Instant};

use common::Switchboard;
use serde_json::{Value, json};
use switchboard_model::EventKind;
use switchboard_store::{EventQuery, History, Location};

/// A running server and the admin's token.
fn started() -> (Switchboard, String, String) {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    (board, token, admin)
}

fn body(data: Value) -> String {
    json!({ "data": data }).to_string()
}

/// Creates a sub-account of `parent` and returns its id.
fn sub_account(board: &Switchboard, token: &str, parent: &str, name: &str, realm: &str) -> String {
    let response = board.api(
        token,
        "PUT",
        &format!("/v2/accounts/{parent}"),
        Some(&body(json!({"name": name, "realm": realm}))),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.json["data"]["parent_id"], parent);
    response.json["data"]["id"]
        .as_str()
        .expect("account id")
        .to_owned()
}

fn create_device(board: &Switchboard, token: &str, account: &str, data: Value) -> String {
    let response = board.api(
        token,
        "PUT",
        &format!("/v2/accounts/{account}/devices"),
        Some(&body(data)),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let id = response.json["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 32);
    id
}

fn assert_error(response: &common::HttpResponse, status: u16, message: &str) {
    assert_eq!(response.status, status, "{}", response.text);
    assert_eq!(response.json["status"], "error", "{}", response.text);
    assert_eq!(
        response.json["error"],
        status.to_string(),
        "{}",
        response.text
    );
    assert_eq!(response.json["message"], message, "{}", response.text);
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{}",
        response.text
    );
}

#[test]
fn api_auth_envelope_and_errors() {
    let (board, token, admin) = started();

    // The success envelope.
    let response = board.api(&token, "GET", &format!("/v2/accounts/{admin}"), None);
    assert_eq!(response.status, 200, "{}", response.text);
    for key in [
        "auth_token",
        "request_id",
        "node",
        "version",
        "timestamp",
        "revision",
    ] {
        assert!(response.json[key].is_string(), "{key} in {}", response.text);
    }
    assert_eq!(response.json["status"], "success");
    assert_eq!(response.json["auth_token"], token.as_str());
    assert_eq!(response.json["data"]["id"], admin.as_str());

    // The token is accepted as a Bearer, and in the body; /v1 is an alias.
    let bearer = format!("Bearer {token}");
    let response = board.http(
        "GET",
        &format!("/v1/accounts/{admin}"),
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let in_body = json!({"auth_token": token, "data": {"name": "Body", "realm": "body.test"}});
    let response = board.http(
        "PUT",
        &format!("/v2/accounts/{admin}"),
        &[],
        Some(&in_body.to_string()),
    );
    assert_eq!(response.status, 201, "{}", response.text);

    // Failed logins and missing or forged tokens: 401 invalid_credentials.
    let response = board.http(
        "PUT",
        "/v2/api_auth",
        &[],
        Some(&body(json!({"api_key": "0".repeat(64)}))),
    );
    assert_error(&response, 401, "invalid_credentials");
    assert_eq!(response.json["data"]["message"], "invalid credentials");
    let response = board.http("GET", &format!("/v2/accounts/{admin}"), &[], None);
    assert_error(&response, 401, "invalid_credentials");
    let forged = format!("{}x", &token[..token.len() - 1]);
    let response = board.api(&forged, "GET", &format!("/v2/accounts/{admin}"), None);
    assert_error(&response, 401, "invalid_credentials");

    // Bad JSON, wrong content type, oversized bodies: the error envelope, nothing changed.
    let devices = format!("/v2/accounts/{admin}/devices");
    let response = board.api(&token, "PUT", &devices, Some("{\"data\":"));
    assert_error(&response, 400, "parse_error");
    assert_eq!(
        response.json["data"]["message"],
        "failed to parse request body"
    );
    assert_eq!(
        response.json["auth_token"],
        token.as_str(),
        "echoed on errors"
    );
    let response = board.http(
        "PUT",
        &devices,
        &[("X-Auth-Token", &token), ("Content-Type", "text/xml")],
        Some("<device/>"),
    );
    assert_error(&response, 415, "unsupported_media_type");
    let huge = body(json!({"name": "x".repeat(1024 * 1024)}));
    let response = board.api(&token, "PUT", &devices, Some(&huge));
    assert_error(&response, 413, "request_too_large");
    let response = board.api(&token, "GET", &devices, None);
    assert_eq!(response.json["data"], json!([]), "nothing was created");

    // Unknown methods on known paths, unknown paths, unknown ids.
    let response = board.api(&token, "DELETE", "/v2/api_auth", None);
    assert_error(&response, 405, "invalid_method");
    let response = board.api(&token, "POST", &devices, Some("{}"));
    assert_error(&response, 405, "invalid_method");
    let response = board.api(&token, "GET", "/v2/no_such_resource", None);
    assert_eq!(response.status, 404, "{}", response.text);
    let ghost = "0123456789abcdef0123456789abcdef";
    let response = board.api(&token, "GET", &format!("{devices}/{ghost}"), None);
    assert_error(&response, 404, "bad_identifier");
    assert_eq!(
        response.json["data"],
        json!({"message": "bad identifier", "cause": ghost})
    );
    let response = board.api(&token, "GET", &format!("/v2/accounts/{ghost}"), None);
    assert_error(&response, 404, "bad_identifier");

    // The realm is unique.
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&body(json!({"name": "Again", "realm": "BODY.test"}))),
    );
    assert_error(&response, 400, "validation error");
    assert_eq!(
        response.json["data"]["realm"]["unique"]["cause"],
        "body.test"
    );
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&body(json!({"realm": "x"}))),
    );
    assert_error(&response, 400, "validation error");
    assert!(response.json["data"]["name"]["required"].is_object());
    assert!(response.json["data"]["realm"]["minLength"].is_object());

    // No secret in the log.
    let log = board.log();
    assert!(!log.contains(&token), "token in the log");
    assert!(!log.contains(&board.bootstrap_key()), "api key in the log");
}

#[test]
fn tenants_are_isolated_on_every_route() {
    let (board, admin_token, admin) = started();
    let alpha = sub_account(&board, &admin_token, &admin, "Alpha", "alpha.test");
    let beta = sub_account(&board, &admin_token, &admin, "Beta", "beta.test");

    // Each account's own key, readable by its parent and itself, logs in to that account only.
    let key_of = |token: &str, account: &str| {
        let response = board.api(
            token,
            "GET",
            &format!("/v2/accounts/{account}/api_key"),
            None,
        );
        assert_eq!(response.status, 200, "{}", response.text);
        let key = response.json["data"]["api_key"]
            .as_str()
            .expect("key")
            .to_owned();
        assert_eq!(key.len(), 64);
        key
    };
    let (alpha_token, alpha_id) = board.login(&key_of(&admin_token, &alpha));
    assert_eq!(alpha_id, alpha);
    let (beta_token, _) = board.login(&key_of(&admin_token, &beta));
    let alpha_child = sub_account(
        &board,
        &alpha_token,
        &alpha,
        "Alpha child",
        "child.alpha.test",
    );

    let alpha_device = create_device(
        &board,
        &alpha_token,
        &alpha,
        json!({"name": "alpha desk", "sip": {"username": "desk", "password": "alpha-pass"}}),
    );
    let beta_device = create_device(
        &board,
        &beta_token,
        &beta,
        json!({"name": "beta desk", "sip": {"username": "desk", "password": "beta-pass"}}),
    );

    // Every route, for an account the caller may reach or not.
    let routes = |account: &str, device: &str| -> Vec<(&'static str, String, Option<String>)> {
        let patch = Some(body(json!({"name": "renamed"})));
        vec![
            ("GET", format!("/v2/accounts/{account}"), None),
            (
                "PUT",
                format!("/v2/accounts/{account}"),
                Some(body(
                    json!({"name": "n", "realm": format!("n{}.test", &device[..8])}),
                )),
            ),
            (
                "POST",
                format!("/v2/accounts/{account}"),
                Some(body(json!({"name": "n", "realm": "other.test"}))),
            ),
            ("PATCH", format!("/v2/accounts/{account}"), patch.clone()),
            ("DELETE", format!("/v2/accounts/{account}"), None),
            ("GET", format!("/v2/accounts/{account}/api_key"), None),
            ("GET", format!("/v2/accounts/{account}/devices"), None),
            (
                "PUT",
                format!("/v2/accounts/{account}/devices"),
                Some(body(json!({"name": "intruder"}))),
            ),
            (
                "GET",
                format!("/v2/accounts/{account}/devices/{device}"),
                None,
            ),
            (
                "POST",
                format!("/v2/accounts/{account}/devices/{device}"),
                Some(body(json!({"name": "intruder"}))),
            ),
            (
                "PATCH",
                format!("/v2/accounts/{account}/devices/{device}"),
                patch,
            ),
            (
                "DELETE",
                format!("/v2/accounts/{account}/devices/{device}"),
                None,
            ),
            (
                "GET",
                format!("/v2/accounts/{account}/devices/status"),
                None,
            ),
            ("GET", format!("/v2/accounts/{account}/registrations"), None),
            (
                "GET",
                format!("/v2/accounts/{account}/registrations/count"),
                None,
            ),
            (
                "DELETE",
                format!("/v2/accounts/{account}/registrations/desk"),
                None,
            ),
            (
                "DELETE",
                format!("/v2/accounts/{account}/registrations"),
                None,
            ),
            // Routes added later: filters, per-device status, NOTIFY, users.
            (
                "GET",
                format!("/v2/accounts/{account}/devices?filter_device_type=softphone"),
                None,
            ),
            (
                "GET",
                format!("/v2/accounts/{account}/devices/{device}/status"),
                None,
            ),
            (
                "POST",
                format!("/v2/accounts/{account}/devices/{device}/sync"),
                None,
            ),
            (
                "PUT",
                format!("/v2/accounts/{account}/devices/{device}/notify"),
                Some(body(json!({"event": "check-sync"}))),
            ),
            ("GET", format!("/v2/accounts/{account}/users"), None),
            (
                "PUT",
                format!("/v2/accounts/{account}/users"),
                Some(body(json!({"first_name": "Mallory", "last_name": "X"}))),
            ),
        ]
    };
    for (token, other, other_device) in [
        (&alpha_token, &beta, &beta_device),
        (&beta_token, &alpha, &alpha_device),
        (&beta_token, &alpha_child, &alpha_device),
    ] {
        // A parent is as foreign as a sibling.
        for (method, path, payload) in routes(other, other_device)
            .into_iter()
            .chain(routes(&admin, other_device))
        {
            let response = board.api(token, method, &path, payload.as_deref());
            assert_error(&response, 403, "forbidden");
            assert!(
                !response.text.contains("pass"),
                "{method} {path} leaked: {}",
                response.text
            );
        }
        // Unknown accounts are 404, whoever asks.
        let ghost = "0123456789abcdef0123456789abcdef";
        for (method, path, payload) in routes(ghost, other_device) {
            let response = board.api(token, method, &path, payload.as_deref());
            assert_error(&response, 404, "bad_identifier");
        }
    }
    // Another tenant's device through one's own account is unknown, not readable.
    for (method, path, payload) in routes(&alpha, &beta_device).into_iter().skip(8).take(4) {
        let response = board.api(&alpha_token, method, &path, payload.as_deref());
        assert_error(&response, 404, "bad_identifier");
        assert_eq!(response.json["data"]["cause"], beta_device.as_str());
    }
    // Lists hold only the tenant's own devices.
    let response = board.api(
        &alpha_token,
        "GET",
        &format!("/v2/accounts/{alpha}/devices"),
        None,
    );
    let ids: Vec<&str> = response.json["data"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["id"].as_str())
        .collect();
    assert_eq!(ids, vec![alpha_device.as_str()]);

    // Nothing of beta changed; the parent reaches both, and its descendants' descendants.
    let response = board.api(
        &admin_token,
        "GET",
        &format!("/v2/accounts/{beta}/devices/{beta_device}"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"]["name"], "beta desk");
    let response = board.api(
        &admin_token,
        "GET",
        &format!("/v2/accounts/{alpha_child}"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    // An account cannot delete itself; its parent can delete it once it has no sub-accounts.
    let response = board.api(
        &alpha_token,
        "DELETE",
        &format!("/v2/accounts/{alpha}"),
        None,
    );
    assert_error(&response, 403, "forbidden");
    let response = board.api(
        &admin_token,
        "DELETE",
        &format!("/v2/accounts/{alpha}"),
        None,
    );
    assert_eq!(response.status, 400, "{}", response.text);
    let response = board.api(
        &alpha_token,
        "DELETE",
        &format!("/v2/accounts/{alpha_child}"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let response = board.api(
        &admin_token,
        "DELETE",
        &format!("/v2/accounts/{alpha}"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let response = board.api(&admin_token, "GET", &format!("/v2/accounts/{alpha}"), None);
    assert_error(&response, 404, "bad_identifier");
}

#[test]
fn devices_crud_revisions_pagination_and_validation() {
    let (board, token, admin) = started();
    let account = sub_account(&board, &token, &admin, "Acme", "acme.api.test");
    let devices = format!("/v2/accounts/{account}/devices");
    // A device's owner_id must name a user of the account.
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{account}/users"),
        Some(&body(json!({"first_name": "Alice", "last_name": "Owner"}))),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let owner = response.json["data"]["id"]
        .as_str()
        .expect("user id")
        .to_owned();

    // Create: defaults written in, unknown keys kept.
    let response = board.api(
        &token,
        "PUT",
        &devices,
        Some(&body(json!({
            "name": "Alice desk",
            "owner_id": owner,
            "sip": {"username": "alice", "password": "alice-pass"},
            "custom_key": {"kept": true},
        }))),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let alice = response.json["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(response.json["data"]["enabled"], true);
    assert_eq!(response.json["data"]["sip"]["method"], "password");
    assert_eq!(response.json["data"]["custom_key"], json!({"kept": true}));

    // Fetch: ETag is the envelope revision.
    let item = format!("{devices}/{alice}");
    let response = board.api(&token, "GET", &item, None);
    assert_eq!(response.status, 200, "{}", response.text);
    let revision = response.json["revision"]
        .as_str()
        .expect("revision")
        .to_owned();
    assert_eq!(
        response.header("etag"),
        Some(format!("\"{revision}\"").as_str())
    );

    // PATCH with the current revision merges; null deletes a key.
    let quoted = format!("\"{revision}\"");
    let response = board.http(
        "PATCH",
        &item,
        &[("X-Auth-Token", &token), ("If-Match", &quoted)],
        Some(&body(json!({"name": "Alice's desk", "custom_key": null}))),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"]["name"], "Alice's desk");
    assert_eq!(response.json["data"]["sip"]["username"], "alice", "merged");
    assert!(
        response.json["data"].get("custom_key").is_none(),
        "null deleted the key"
    );
    assert_ne!(response.json["revision"], revision.as_str());
    // The old revision is now stale: 412, and nothing changes.
    for (method, payload) in [
        ("PATCH", Some(body(json!({"name": "lost update"})))),
        ("POST", Some(body(json!({"name": "lost update"})))),
        ("DELETE", None),
    ] {
        let response = board.http(
            method,
            &item,
            &[("X-Auth-Token", &token), ("If-Match", &quoted)],
            payload.as_deref(),
        );
        assert_eq!(response.status, 412, "{method}: {}", response.text);
        assert_eq!(response.json["status"], "error");
    }
    let response = board.api(&token, "GET", &item, None);
    assert_eq!(response.json["data"]["name"], "Alice's desk");

    // POST replaces: omitted public fields are gone.
    let response = board.api(
        &token,
        "POST",
        &item,
        Some(&body(
            json!({"name": "Replaced", "sip": {"username": "alice", "password": "alice-pass"}}),
        )),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(response.json["data"].get("owner_id").is_none());
    assert_eq!(response.json["data"]["id"], alice.as_str());

    // Validation: every error at once, Kazoo's shape.
    let response = board.api(
        &token,
        "PUT",
        &devices,
        Some(&body(json!({"sip": {"username": "x", "password": "abc"}}))),
    );
    assert_error(&response, 400, "validation error");
    let data = &response.json["data"];
    assert_eq!(
        data["name"]["required"]["message"],
        "Field is required but missing"
    );
    assert_eq!(data["sip.username"]["minLength"]["target"], 2);
    assert_eq!(data["sip.password"]["minLength"]["target"], 5);
    // SIP credentials are unique per account, case-insensitive.
    let response = board.api(
        &token,
        "PUT",
        &devices,
        Some(&body(
            json!({"name": "clash", "sip": {"username": "ALICE", "password": "other-pass"}}),
        )),
    );
    assert_error(&response, 400, "validation error");
    assert_eq!(
        response.json["data"],
        json!({"sip.username": {"unique": {"message": "SIP credentials already in use", "cause": "ALICE"}}})
    );

    // IP-authenticated devices need a unique IPv4 address.
    let trunk = json!({"name": "trunk", "sip": {"method": "ip", "ip": "192.0.2.44"}});
    let response = board.api(&token, "PUT", &devices, Some(&body(trunk.clone())));
    assert_eq!(response.status, 201, "{}", response.text);
    let trunk_id = response.json["data"]["id"].as_str().expect("id").to_owned();
    let response = board.api(&token, "PUT", &devices, Some(&body(trunk)));
    assert_error(&response, 400, "validation error");
    assert_eq!(
        response.json["data"]["sip.ip"]["unique"]["message"],
        "SIP IP already in use"
    );
    let response = board.api(
        &token,
        "PUT",
        &devices,
        Some(&body(
            json!({"name": "bad trunk", "sip": {"method": "ip", "ip": "not-an-ip"}}),
        )),
    );
    assert_error(&response, 400, "validation error");
    assert!(response.json["data"]["sip.ip"]["type"].is_object());
    let response = board.api(&token, "DELETE", &format!("{devices}/{trunk_id}"), None);
    assert_eq!(response.status, 200, "{}", response.text);

    // Pagination across pages, sorted by id; paginate=false gives everything.
    let mut ids = vec![alice.clone()];
    for index in 0..6 {
        ids.push(create_device(
            &board,
            &token,
            &account,
            json!({"name": format!("phone {index}"), "sip": {"username": format!("phone{index}"), "password": "phone-pass"}}),
        ));
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut path = format!("{devices}?page_size=3");
    let mut pages = 0;
    loop {
        let response = board.api(&token, "GET", &path, None);
        assert_eq!(response.status, 200, "{}", response.text);
        let rows = response.json["data"].as_array().expect("rows").clone();
        assert_eq!(response.json["page_size"], rows.len());
        for row in &rows {
            seen.push(row["id"].as_str().expect("id").to_owned());
            for key in [
                "name",
                "mac_address",
                "enabled",
                "device_type",
                "flags",
                "username",
            ] {
                assert!(row.get(key).is_some(), "{key} in {row}");
            }
            assert!(row.get("sip").is_none() && !row.to_string().contains("pass"));
        }
        pages += 1;
        match response.json["next_start_key"].as_str() {
            Some(next) => path = format!("{devices}?page_size=3&start_key={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);
    let response = board.api(&token, "GET", &format!("{devices}?paginate=false"), None);
    assert_eq!(response.json["data"].as_array().expect("rows").len(), 7);
    assert!(response.json.get("next_start_key").is_none());
    assert!(response.json.get("page_size").is_none());

    // Delete: gone afterwards.
    let response = board.api(&token, "DELETE", &item, None);
    assert_eq!(response.status, 200, "{}", response.text);
    let response = board.api(&token, "GET", &item, None);
    assert_error(&response, 404, "bad_identifier");
}

/// Waits (bounded) until `check` holds.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

#[test]
fn a_device_created_through_the_api_registers_and_is_refused_once_disabled() {
    if !common::sipp_available() {
        return;
    }
    let (board, token, admin) = started();
    let realm = "sip.api.test";
    let account = sub_account(&board, &token, &admin, "Phones", realm);
    let device = create_device(
        &board,
        &token,
        &account,
        json!({"name": "Softphone", "device_type": "softphone", "sip": {"username": "erin", "password": "erin-pass"}}),
    );
    let csv = board.users_csv("erin.csv", &[("erin", "erin-pass")], realm);
    // Kazoo's default sip.expire_seconds (300) bounds the registration.
    board
        .sipp("register_ok_300", &csv, "u1", 1)
        .expect("the new device registers at once");
    let store = board.store();
    assert_eq!(store.device_bindings(&device).expect("bindings").len(), 1);
    store.close();

    // The registrations API shows it, from the registrar's table.
    let registrations = format!("/v2/accounts/{account}/registrations");
    let response = board.api(&token, "GET", &registrations, None);
    assert_eq!(response.status, 200, "{}", response.text);
    let rows = response.json["data"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), 1, "{}", response.text);
    assert_eq!(rows[0]["username"], "erin");
    assert_eq!(rows[0]["authorizing_id"], device.as_str());
    assert_eq!(rows[0]["realm"], realm);
    assert_eq!(rows[0]["user_agent"], "SIPp-switchboard-test");
    assert_eq!(rows[0]["network_ip"], "127.0.0.1");
    assert!(
        rows[0]["expires"]
            .as_u64()
            .is_some_and(|secs| secs > 0 && secs <= 300)
    );
    let response = board.api(&token, "GET", &format!("{registrations}/count"), None);
    assert_eq!(response.json["data"], json!({"count": 1}));
    let response = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{account}/devices/status"),
        None,
    );
    assert_eq!(
        response.json["data"],
        json!([{"device_id": device, "registered": true}])
    );
    // Flushing by username removes the binding; an unknown username is 404.
    let response = board.api(&token, "DELETE", &format!("{registrations}/nobody"), None);
    assert_error(&response, 404, "bad_identifier");
    let response = board.api(&token, "DELETE", &format!("{registrations}/ERIN"), None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"], "ok");
    let response = board.api(&token, "GET", &format!("{registrations}/count"), None);
    assert_eq!(response.json["data"], json!({"count": 0}));
    let store = board.store();
    assert!(store.device_bindings(&device).expect("bindings").is_empty());
    store.close();
    board
        .sipp("register_ok_300", &csv, "u1", 1)
        .expect("registers again after the flush");
    let response = board.api(&token, "DELETE", &registrations, None);
    assert_eq!(response.status, 200, "{}", response.text);
    let response = board.api(&token, "GET", &registrations, None);
    assert_eq!(response.json["data"], json!([]));
    board
        .sipp("register_ok_300", &csv, "u1", 1)
        .expect("and after the realm flush");

    // Disabling it through the API flushes its binding at once and refuses the next REGISTER.
    let response = board.api(
        &token,
        "PATCH",
        &format!("/v2/accounts/{account}/devices/{device}"),
        Some(&body(json!({"enabled": false}))),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let store = board.store();
    assert!(store.device_bindings(&device).expect("bindings").is_empty());
    let kinds: Vec<EventKind> = store
        .events(&EventQuery {
            device_id: Some(device.clone()),
            ..EventQuery::default()
        })
        .expect("events")
        .into_iter()
        .map(|event| event.kind)
        .collect();
    store.close();
    assert!(kinds.contains(&EventKind::Unregistered), "{kinds:?}");
    board
        .sipp("register_403", &csv, "u1", 1)
        .expect("the disabled device is refused");

    // A new password bites at once too: re-enabled with another password, the old one fails.
    let response = board.api(
        &token,
        "PATCH",
        &format!("/v2/accounts/{account}/devices/{device}"),
        Some(&body(
            json!({"enabled": true, "sip": {"password": "new-erin-pass"}}),
        )),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    board
        .sipp("register_wrong_password", &csv, "u1", 1)
        .expect("the old password is refused");
    let fresh = board.users_csv("erin-new.csv", &[("erin", "new-erin-pass")], realm);
    board
        .sipp("register_ok_300", &fresh, "u1", 1)
        .expect("the new password registers");

    // Deleting it flushes and refuses too.
    let response = board.api(
        &token,
        "DELETE",
        &format!("/v2/accounts/{account}/devices/{device}"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(eventually(Duration::from_secs(5), || {
        let store = board.store();
        let empty = store.device_bindings(&device).expect("bindings").is_empty();
        store.close();
        empty
    }));
    board
        .sipp("register_wrong_password", &fresh, "u1", 1)
        .expect("the deleted device is unknown: answered as a wrong password");
}

#[test]
fn accounts_keep_every_key_their_clients_send() {
    let (board, token, admin) = started();
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&body(json!({
            "name": "Docs", "realm": "docs.api.test", "timezone": "Europe/Paris",
            "caller_id": {"external": {"number": "+33100000000"}}, "pvt_secret": "dropped"
        }))),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let account = response.json["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(response.json["data"]["timezone"], "Europe/Paris");
    let path = format!("/v2/accounts/{account}");
    let fetched = board.api(&token, "GET", &path, None);
    assert_eq!(
        fetched.json["data"]["timezone"], "Europe/Paris",
        "{}",
        fetched.text
    );
    assert_eq!(
        fetched.json["data"]["caller_id"]["external"]["number"],
        "+33100000000"
    );
    assert!(
        fetched.json["data"].get("pvt_secret").is_none(),
        "private keys are not stored"
    );
    assert_eq!(fetched.json["data"]["parent_id"], admin.as_str());
    // PATCH merges (null deletes), POST replaces.
    let patched = board.api(
        &token,
        "PATCH",
        &path,
        Some(&body(json!({"language": "fr-fr", "timezone": null}))),
    );
    assert_eq!(patched.status, 200, "{}", patched.text);
    let fetched = board.api(&token, "GET", &path, None);
    assert_eq!(fetched.json["data"]["language"], "fr-fr");
    assert!(
        fetched.json["data"].get("timezone").is_none(),
        "{}",
        fetched.text
    );
    assert_eq!(
        fetched.json["data"]["caller_id"]["external"]["number"],
        "+33100000000"
    );
    let replaced = board.api(
        &token,
        "POST",
        &path,
        Some(&body(json!({"name": "Docs", "realm": "docs.api.test"}))),
    );
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    let fetched = board.api(&token, "GET", &path, None);
    assert!(
        fetched.json["data"].get("caller_id").is_none(),
        "{}",
        fetched.text
    );
    assert_eq!(
        fetched.json["data"]["parent_id"],
        admin.as_str(),
        "the tree is kept"
    );
}
