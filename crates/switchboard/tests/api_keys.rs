//! End to end: scoped API keys on the real binary over real HTTP — created through the API,
//! used directly as `Authorization: Bearer <key>` and exchanged for tokens, limited to their
//! scopes (403 naming the missing one), isolated between tenants, revoked at once, never
//! shown again after creation, and kept across a `kill -9`.

mod common;

use common::{HttpResponse, Switchboard};
use serde_json::{Value, json};

/// A running server and the admin's token and account.
fn started() -> (Switchboard, String, String) {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    (board, token, admin)
}

fn body(data: Value) -> String {
    json!({ "data": data }).to_string()
}

/// A request with `Authorization: Bearer <credential>`.
fn bearer(
    board: &Switchboard,
    credential: &str,
    method: &str,
    path: &str,
    data: Option<Value>,
) -> HttpResponse {
    let authorization = format!("Bearer {credential}");
    let text = data.map(body);
    board.http(
        method,
        path,
        &[("Authorization", &authorization)],
        text.as_deref(),
    )
}

fn sub_account(board: &Switchboard, token: &str, parent: &str, name: &str, realm: &str) -> String {
    let response = board.api(
        token,
        "PUT",
        &format!("/v2/accounts/{parent}"),
        Some(&body(json!({"name": name, "realm": realm}))),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    response.json["data"]["id"]
        .as_str()
        .expect("account id")
        .to_owned()
}

fn create_device(board: &Switchboard, token: &str, account: &str, name: &str) -> String {
    let response = board.api(
        token,
        "PUT",
        &format!("/v2/accounts/{account}/devices"),
        Some(&body(
            json!({"name": name, "sip": {"username": name, "password": "device-pass-1"}}),
        )),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    response.json["data"]["id"]
        .as_str()
        .expect("device id")
        .to_owned()
}

/// Creates a key with `scopes` in `account` as `caller` (a token or a key); returns (key id,
/// secret).
fn create_key(
    board: &Switchboard,
    caller: &str,
    account: &str,
    name: &str,
    scopes: &[&str],
) -> (String, String) {
    let response = bearer(
        board,
        caller,
        "POST",
        &format!("/v2/accounts/{account}/api_keys"),
        Some(json!({"name": name, "scopes": scopes})),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let data = &response.json["data"];
    let id = data["id"].as_str().expect("id").to_owned();
    let secret = data["key"].as_str().expect("the secret, once").to_owned();
    assert_eq!(id.len(), 32, "{data}");
    assert_eq!(data["name"], name);
    assert_eq!(data["scopes"], json!(scopes));
    assert!(secret.starts_with("sbk_") && secret.len() == 44, "{secret}");
    let prefix = data["prefix"].as_str().expect("prefix");
    assert!(secret.starts_with(prefix) && prefix.len() < 16, "{prefix}");
    let created = data["created"].as_str().expect("created");
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    (id, secret)
}

fn assert_missing_scope(response: &HttpResponse, scope: &str) {
    assert_eq!(response.status, 403, "{}", response.text);
    assert_eq!(response.json["status"], "error", "{}", response.text);
    assert_eq!(response.json["error"], "403", "{}", response.text);
    assert_eq!(response.json["message"], "forbidden", "{}", response.text);
    assert_eq!(response.json["data"]["scope"], scope, "{}", response.text);
    assert_eq!(
        response.json["data"]["message"],
        format!("missing scope {scope}"),
        "{}",
        response.text
    );
}

fn assert_unauthorized(response: &HttpResponse) {
    assert_eq!(response.status, 401, "{}", response.text);
    assert_eq!(
        response.json["message"], "invalid_credentials",
        "{}",
        response.text
    );
}

#[test]
fn a_key_does_what_its_scopes_allow_and_nothing_more() {
    let (board, admin_token, admin) = started();
    let tenant = sub_account(&board, &admin_token, &admin, "Tenant", "tenant.test");
    let device = create_device(&board, &admin_token, &tenant, "desk");
    let devices = format!("/v2/accounts/{tenant}/devices");

    let (_, reader) = create_key(&board, &admin_token, &tenant, "reader", &["devices:read"]);

    // Used directly: reads devices, and the secret is never echoed back.
    let response = bearer(&board, &reader, "GET", &devices, None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"][0]["id"], device.as_str());
    assert!(
        !response.text.contains(&reader),
        "key echoed: {}",
        response.text
    );
    let response = bearer(&board, &reader, "GET", &format!("{devices}/{device}"), None);
    assert_eq!(response.status, 200, "{}", response.text);

    // Writes need devices:write; the error names it and echoes no secret.
    let response = bearer(
        &board,
        &reader,
        "PUT",
        &devices,
        Some(json!({"name": "new", "sip": {"username": "new", "password": "new-pass-1"}})),
    );
    assert_missing_scope(&response, "devices:write");
    assert!(
        !response.text.contains(&reader),
        "key echoed: {}",
        response.text
    );
    let response = bearer(
        &board,
        &reader,
        "POST",
        &format!("{devices}/{device}"),
        Some(json!({"name": "renamed"})),
    );
    assert_missing_scope(&response, "devices:write");
    for (path, scope) in [
        ("/v1/pbx/phones".to_owned(), "pbx:phones:read"),
        (format!("/v2/accounts/{tenant}"), "accounts:read"),
        (format!("/v2/accounts/{tenant}/users"), "users:read"),
        (
            format!("/v2/accounts/{tenant}/registrations"),
            "registrations:read",
        ),
        (format!("/v2/accounts/{tenant}/api_keys"), "api_keys:write"),
    ] {
        let response = bearer(&board, &reader, "GET", &path, None);
        assert_missing_scope(&response, scope);
    }

    // Exchanged for a token at api_auth: the token carries the same scopes.
    let (reader_token, account) = board.login(&reader);
    assert_eq!(account, tenant);
    let response = board.api(&reader_token, "GET", &devices, None);
    assert_eq!(response.status, 200, "{}", response.text);
    let response = board.api(
        &reader_token,
        "DELETE",
        &format!("{devices}/{device}"),
        None,
    );
    assert_missing_scope(&response, "devices:write");

    // A key can hand out only the scopes it holds itself.
    let (_, manager) = create_key(
        &board,
        &admin_token,
        &tenant,
        "manager",
        &["api_keys:write", "devices:read", "pbx:phones:read"],
    );
    create_key(&board, &manager, &tenant, "delegated", &["pbx:phones:read"]);
    let response = bearer(
        &board,
        &manager,
        "POST",
        &format!("/v2/accounts/{tenant}/api_keys"),
        Some(json!({"name": "escalate", "scopes": ["devices:read", "devices:write"]})),
    );
    assert_missing_scope(&response, "devices:write");

    // The pbx:phones:read key reads the phones view.
    let response = bearer(&board, &manager, "GET", "/v1/pbx/phones", None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        response.json["phones"][0]["id"],
        device.as_str(),
        "{}",
        response.text
    );

    // Bodies are validated in Kazoo's shape, naming the field.
    let keys = format!("/v2/accounts/{tenant}/api_keys");
    let response = bearer(&board, &admin_token, "POST", &keys, Some(json!({})));
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.json["message"], "validation error");
    assert!(
        response.json["data"]["name"]["required"].is_object(),
        "{}",
        response.text
    );
    assert!(
        response.json["data"]["scopes"]["required"].is_object(),
        "{}",
        response.text
    );
    let response = bearer(
        &board,
        &admin_token,
        "POST",
        &keys,
        Some(json!({"name": "x".repeat(129), "scopes": ["devices:read", "root"]})),
    );
    assert_eq!(response.status, 400, "{}", response.text);
    assert!(
        response.json["data"]["name"]["maxLength"].is_object(),
        "{}",
        response.text
    );
    assert_eq!(
        response.json["data"]["scopes.1"]["enum"]["value"], "root",
        "{}",
        response.text
    );
    let response = bearer(
        &board,
        &admin_token,
        "POST",
        &keys,
        Some(json!({"name": "none", "scopes": []})),
    );
    assert!(
        response.json["data"]["scopes"]["minItems"].is_object(),
        "{}",
        response.text
    );

    // Garbage in place of a key: 401, like a bad token.
    assert_unauthorized(&bearer(&board, "sbk_not-a-key", "GET", &devices, None));

    // No key in the log.
    let log = board.log();
    for secret in [&reader, &manager] {
        assert!(!log.contains(secret.as_str()), "api key in the log");
    }
}

#[test]
fn keys_are_listed_without_secrets_revoked_at_once_and_survive_a_restart() {
    let (mut board, admin_token, admin) = started();
    let tenant = sub_account(&board, &admin_token, &admin, "Tenant", "tenant.test");
    let devices = format!("/v2/accounts/{tenant}/devices");
    let keys = format!("/v2/accounts/{tenant}/api_keys");
    let (doomed_id, doomed) =
        create_key(&board, &admin_token, &tenant, "doomed", &["devices:read"]);
    let (kept_id, kept) = create_key(
        &board,
        &admin_token,
        &tenant,
        "kept",
        &["devices:read", "pbx:phones:read"],
    );

    // Listed and fetched without secrets (nor hashes).
    let response = board.api(&admin_token, "GET", &keys, None);
    assert_eq!(response.status, 200, "{}", response.text);
    let listed = response.json["data"].as_array().expect("list");
    let mut ids: Vec<&str> = listed.iter().filter_map(|key| key["id"].as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![doomed_id.as_str(), kept_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    for key in listed {
        let fields: Vec<&String> = key.as_object().expect("object").keys().collect();
        assert_eq!(
            fields,
            ["created", "id", "name", "prefix", "scopes"],
            "{key}"
        );
    }
    let response = board.api(&admin_token, "GET", &format!("{keys}/{kept_id}"), None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        response.json["data"]["scopes"],
        json!(["devices:read", "pbx:phones:read"])
    );
    assert!(response.json["data"].get("key").is_none());
    for secret in [&doomed, &kept] {
        assert!(!response.text.contains(secret.as_str()));
    }

    // Revoked: the key and the tokens issued for it stop working at once.
    let (doomed_token, _) = board.login(&doomed);
    assert_eq!(board.api(&doomed_token, "GET", &devices, None).status, 200);
    let response = board.api(&admin_token, "DELETE", &format!("{keys}/{doomed_id}"), None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"]["id"], doomed_id.as_str());
    assert_unauthorized(&bearer(&board, &doomed, "GET", &devices, None));
    assert_unauthorized(&board.api(&doomed_token, "GET", &devices, None));
    let response = board.http(
        "PUT",
        "/v2/api_auth",
        &[],
        Some(&body(json!({"api_key": doomed}))),
    );
    assert_unauthorized(&response);
    let response = board.api(&admin_token, "GET", &format!("{keys}/{doomed_id}"), None);
    assert_eq!(response.status, 404, "{}", response.text);
    let response = board.api(&admin_token, "DELETE", &format!("{keys}/{doomed_id}"), None);
    assert_eq!(response.status, 404, "{}", response.text);

    // The other key, and the bootstrap key, survive a kill -9.
    board.kill9();
    board.start();
    let response = bearer(&board, &kept, "GET", &devices, None);
    assert_eq!(response.status, 200, "{}", response.text);
    let response = bearer(&board, &kept, "GET", "/v1/pbx/phones", None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_unauthorized(&bearer(&board, &doomed, "GET", &devices, None));
    // The bootstrap key holds every scope, used directly or through a token.
    let response = bearer(&board, &board.bootstrap_key(), "GET", &keys, None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"].as_array().map(Vec::len), Some(1));
    let (token, _) = board.login(&board.bootstrap_key());
    assert_eq!(board.api(&token, "GET", &devices, None).status, 200);
}

#[test]
fn a_key_reaches_its_account_and_those_below_it_only() {
    let (board, admin_token, admin) = started();
    let alpha = sub_account(&board, &admin_token, &admin, "Alpha", "alpha.test");
    let beta = sub_account(&board, &admin_token, &admin, "Beta", "beta.test");
    let alpha_child = sub_account(
        &board,
        &admin_token,
        &alpha,
        "Alpha child",
        "child.alpha.test",
    );
    let beta_device = create_device(&board, &admin_token, &beta, "beta-desk");
    let child_device = create_device(&board, &admin_token, &alpha_child, "child-desk");
    let scopes = [
        "accounts:read",
        "devices:read",
        "pbx:phones:read",
        "api_keys:write",
    ];
    let (_, alpha_key) = create_key(&board, &admin_token, &alpha, "alpha", &scopes);
    let (beta_key_id, _) = create_key(&board, &admin_token, &beta, "beta", &scopes);

    // Below: reachable.
    let response = bearer(
        &board,
        &alpha_key,
        "GET",
        &format!("/v2/accounts/{alpha_child}/devices"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"][0]["id"], child_device.as_str());
    let response = bearer(
        &board,
        &alpha_key,
        "GET",
        &format!("/v1/pbx/phones?account_id={alpha_child}"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["phones"][0]["id"], child_device.as_str());
    create_key(
        &board,
        &alpha_key,
        &alpha_child,
        "for the child",
        &["devices:read"],
    );

    // The sibling and the parent: forbidden, and the sibling's keys are invisible.
    for path in [
        format!("/v2/accounts/{beta}"),
        format!("/v2/accounts/{beta}/devices"),
        format!("/v2/accounts/{beta}/devices/{beta_device}"),
        format!("/v2/accounts/{beta}/api_keys"),
        format!("/v2/accounts/{beta}/api_keys/{beta_key_id}"),
        format!("/v2/accounts/{admin}/api_keys"),
        format!("/v1/pbx/phones?account_id={beta}"),
        format!("/v1/pbx/phones/stats?account_id={admin}"),
    ] {
        let response = bearer(&board, &alpha_key, "GET", &path, None);
        assert_eq!(response.status, 403, "{path}: {}", response.text);
        assert_eq!(response.json["message"], "forbidden", "{path}");
    }
    let response = bearer(
        &board,
        &alpha_key,
        "GET",
        &format!("/v2/accounts/{alpha}/api_keys/{beta_key_id}"),
        None,
    );
    assert_eq!(response.status, 404, "{}", response.text);
    let response = bearer(
        &board,
        &alpha_key,
        "DELETE",
        &format!("/v2/accounts/{alpha}/api_keys/{beta_key_id}"),
        None,
    );
    assert_eq!(response.status, 404, "{}", response.text);
    let response = bearer(
        &board,
        &alpha_key,
        "GET",
        &format!("/v2/accounts/{alpha}/api_keys"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(!response.text.contains(&beta_key_id));
    let response = bearer(
        &board,
        &alpha_key,
        "POST",
        &format!("/v2/accounts/{beta}/api_keys"),
        Some(json!({"name": "intruder", "scopes": ["devices:read"]})),
    );
    assert_eq!(response.status, 403, "{}", response.text);
}
