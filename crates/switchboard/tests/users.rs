//! End to end: Kazoo users over the real binary's HTTP API — CRUD with revisions and
//! validation, unique usernames, `user_auth` with md5 and sha1 credentials, token
//! introspection, a user's devices, device `owner_id` checks, and tenant isolation.

mod common;

use common::{HttpResponse, Switchboard};
use serde_json::{Value, json};

// md5 / sha1 of "alice:wonderland-1" and of "alice:wrong-pass".
const ALICE_MD5: &str = "ef44358bbf940e9b710beb11da3f7fc8";
const ALICE_SHA1: &str = "17e8b9e6358512014d0643aded3e951e3677285a";
const WRONG_MD5: &str = "6d145b3da69d8d351607034f9d63157a";
const WRONG_SHA1: &str = "32b7b33780e9959db26601bba351a98dab26705d";

fn started() -> (Switchboard, String, String) {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    (board, token, admin)
}

fn body(data: Value) -> String {
    json!({ "data": data }).to_string()
}

fn sub_account(board: &Switchboard, token: &str, parent: &str, name: &str, realm: &str) -> String {
    let response = board.api(
        token,
        "PUT",
        &format!("/v2/accounts/{parent}"),
        Some(&body(json!({"name": name, "realm": realm}))),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    response.json["data"]["id"].as_str().expect("id").to_owned()
}

fn create_user(board: &Switchboard, token: &str, account: &str, data: Value) -> String {
    let response = board.api(
        token,
        "PUT",
        &format!("/v2/accounts/{account}/users"),
        Some(&body(data)),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let id = response.json["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 32);
    id
}

fn assert_error(response: &HttpResponse, status: u16, message: &str) {
    assert_eq!(response.status, status, "{}", response.text);
    assert_eq!(response.json["status"], "error", "{}", response.text);
    assert_eq!(
        response.json["error"],
        status.to_string(),
        "{}",
        response.text
    );
    assert_eq!(response.json["message"], message, "{}", response.text);
}

fn etag(response: &HttpResponse) -> String {
    response
        .header("etag")
        .expect("ETag")
        .trim_matches('"')
        .to_owned()
}

fn user_auth(board: &Switchboard, data: Value) -> HttpResponse {
    board.http("PUT", "/v2/user_auth", &[], Some(&body(data)))
}

#[test]
fn users_crud_validation_unique_usernames_and_revisions() {
    let (board, token, admin) = started();
    let acme = sub_account(&board, &token, &admin, "Acme", "acme.example.com");
    let users = format!("/v2/accounts/{acme}/users");

    // Create: 201, password never echoed nor stored, username lower-cased, defaults written.
    let response = board.api(
        &token,
        "PUT",
        &users,
        Some(&body(json!({
            "first_name": "Alice", "last_name": "Liddell", "username": "Alice",
            "password": "wonderland-1", "email": "alice@acme.example.com",
            "hotdesk": {"enabled": true}, "custom": {"kept": 1}
        }))),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let data = &response.json["data"];
    let alice = data["id"].as_str().expect("id").to_owned();
    assert_eq!(data["username"], "alice");
    assert!(data.get("password").is_none(), "{data}");
    assert_eq!(data["priv_level"], "user");
    assert_eq!(data["enabled"], true);
    assert_eq!(data["custom"]["kept"], 1);
    for entry in std::fs::read_dir(board.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            assert!(
                !String::from_utf8_lossy(&bytes).contains("wonderland-1"),
                "the password is in {}",
                path.display()
            );
        }
    }

    // Validation: every error at once, Kazoo's shape.
    let response = board.api(
        &token,
        "PUT",
        &users,
        Some(&body(
            json!({"username": "bad name!", "priv_level": "root"}),
        )),
    );
    assert_error(&response, 400, "validation error");
    let errors = &response.json["data"];
    assert!(errors["first_name"]["required"].is_object(), "{errors}");
    assert!(errors["last_name"]["required"].is_object(), "{errors}");
    assert!(errors["username"]["pattern"].is_object(), "{errors}");
    assert!(errors["priv_level"]["enum"].is_object(), "{errors}");

    // Unique usernames, case-insensitive.
    let response = board.api(
        &token,
        "PUT",
        &users,
        Some(&body(
            json!({"first_name": "A", "last_name": "Two", "username": "ALICE"}),
        )),
    );
    assert_error(&response, 400, "validation error");
    assert_eq!(
        response.json["data"]["username"]["unique"]["cause"], "alice",
        "{}",
        response.text
    );
    let bob = create_user(
        &board,
        &token,
        &acme,
        json!({"first_name": "Bob", "last_name": "Builder", "username": "bob"}),
    );

    // List rows.
    let response = board.api(&token, "GET", &users, None);
    assert_eq!(response.status, 200, "{}", response.text);
    let rows = response.json["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    let row = rows
        .iter()
        .find(|row| row["id"] == alice.as_str())
        .expect("alice row");
    assert_eq!(row["username"], "alice");
    assert_eq!(row["first_name"], "Alice");
    assert_eq!(row["last_name"], "Liddell");
    assert_eq!(row["email"], "alice@acme.example.com");
    assert_eq!(row["priv_level"], "user");
    // vm_to_email: `vm_to_email_enabled` defaults to true and the user has an email.
    assert_eq!(row["features"], json!(["hotdesk", "vm_to_email"]));
    assert!(row.get("custom").is_none(), "rows are summaries");
    let response = board.api(&token, "GET", &format!("{users}?page_size=1"), None);
    assert_eq!(response.json["data"].as_array().map(Vec::len), Some(1));
    assert!(
        response.json["next_start_key"].is_string(),
        "{}",
        response.text
    );

    // Fetch with ETag; a stale If-Match is 412 and changes nothing.
    let item = format!("{users}/{alice}");
    let response = board.api(&token, "GET", &item, None);
    assert_eq!(response.status, 200, "{}", response.text);
    let first_etag = etag(&response);
    assert_eq!(response.json["revision"], first_etag.as_str());
    let response = board.http(
        "PATCH",
        &item,
        &[
            ("X-Auth-Token", &token),
            ("If-Match", &format!("\"{first_etag}\"")),
        ],
        Some(&body(json!({"custom": null, "timezone": "Europe/London"}))),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(
        response.json["data"].get("custom").is_none(),
        "null deletes"
    );
    assert_eq!(response.json["data"]["timezone"], "Europe/London");
    assert_eq!(response.json["data"]["first_name"], "Alice", "merge keeps");
    let second_etag = etag(&response);
    assert_ne!(first_etag, second_etag);
    let response = board.http(
        "PATCH",
        &item,
        &[("X-Auth-Token", &token), ("If-Match", &first_etag)],
        Some(&body(json!({"first_name": "Stale"}))),
    );
    assert_error(&response, 412, "precondition_failed");
    let response = board.api(&token, "GET", &item, None);
    assert_eq!(response.json["data"]["first_name"], "Alice");

    // PATCH validates the merged document; renaming onto another's username is refused.
    let response = board.api(
        &token,
        "PATCH",
        &item,
        Some(&body(json!({"first_name": null}))),
    );
    assert_error(&response, 400, "validation error");
    assert!(response.json["data"]["first_name"]["required"].is_object());
    let response = board.api(
        &token,
        "PATCH",
        &format!("{users}/{bob}"),
        Some(&body(json!({"username": "Alice", "password": "x-pass-1"}))),
    );
    assert_error(&response, 400, "validation error");
    assert!(response.json["data"]["username"]["unique"].is_object());

    // POST replaces: omitted public fields are gone.
    let response = board.api(
        &token,
        "POST",
        &item,
        Some(&body(
            json!({"first_name": "Alice", "last_name": "L.", "username": "alice"}),
        )),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(response.json["data"].get("timezone").is_none());
    assert!(response.json["data"].get("email").is_none());
    assert_eq!(response.json["data"]["id"], alice.as_str());

    // Delete, then it is gone.
    let response = board.api(&token, "DELETE", &item, None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"]["id"], alice.as_str());
    let response = board.api(&token, "GET", &item, None);
    assert_error(&response, 404, "bad_identifier");
    let response = board.api(&token, "DELETE", &item, None);
    assert_error(&response, 404, "bad_identifier");
    let response = board.api(&token, "GET", &format!("{users}/{}", "0".repeat(32)), None);
    assert_error(&response, 404, "bad_identifier");
}

#[test]
fn user_auth_with_md5_and_sha1_and_token_introspection() {
    let (board, token, admin) = started();
    let acme = sub_account(&board, &token, &admin, "Acme Corp", "acme.example.com");
    let alice = create_user(
        &board,
        &token,
        &acme,
        json!({"first_name": "Alice", "last_name": "Liddell", "username": "alice",
               "password": "wonderland-1", "language": "fr-fr"}),
    );

    // md5 with the account name (case-insensitive), right and wrong.
    let response = user_auth(
        &board,
        json!({"credentials": ALICE_MD5, "account_name": "acme corp"}),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let user_token = response.json["auth_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let data = &response.json["data"];
    assert_eq!(data["account_id"], acme.as_str());
    assert_eq!(data["owner_id"], alice.as_str());
    assert_eq!(data["reseller_id"], admin.as_str());
    assert_eq!(data["is_reseller"], false);
    assert_eq!(data["language"], "fr-fr");
    assert_eq!(data["apps"], json!([]));
    let response = user_auth(
        &board,
        json!({"credentials": WRONG_MD5, "account_name": "Acme Corp"}),
    );
    assert_error(&response, 401, "invalid_credentials");
    // The right hash under the wrong method is wrong.
    let response = user_auth(
        &board,
        json!({"credentials": ALICE_MD5, "account_name": "Acme Corp", "method": "sha"}),
    );
    assert_error(&response, 401, "invalid_credentials");
    let response = user_auth(
        &board,
        json!({"credentials": ALICE_MD5, "account_name": "Another Corp"}),
    );
    assert_error(&response, 401, "invalid_credentials");

    // sha1 with the account realm, right and wrong.
    let response = user_auth(
        &board,
        json!({"credentials": ALICE_SHA1, "account_realm": "ACME.example.com", "method": "sha"}),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.json["data"]["owner_id"], alice.as_str());
    let response = user_auth(
        &board,
        json!({"credentials": WRONG_SHA1, "account_realm": "acme.example.com", "method": "sha"}),
    );
    assert_error(&response, 401, "invalid_credentials");

    // Bad requests.
    let response = user_auth(&board, json!({"credentials": ALICE_MD5}));
    assert_error(&response, 400, "validation error");
    let response = user_auth(
        &board,
        json!({"account_name": "Acme Corp", "method": "rot13"}),
    );
    assert_error(&response, 400, "validation error");
    assert!(response.json["data"]["credentials"]["required"].is_object());
    assert!(response.json["data"]["method"]["enum"].is_object());

    // The user's token works on its account, not above it.
    let response = board.api(&user_token, "GET", &format!("/v2/accounts/{acme}"), None);
    assert_eq!(response.status, 200, "{}", response.text);
    let response = board.api(&user_token, "GET", &format!("/v2/accounts/{admin}"), None);
    assert_error(&response, 403, "forbidden");

    // Introspection, by the token itself or by an operator above it.
    let path = format!("/v2/user_auth/{user_token}");
    let response = board.http("GET", &path, &[], None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"]["account_id"], acme.as_str());
    assert_eq!(response.json["data"]["owner_id"], alice.as_str());
    assert_eq!(response.json["data"]["method"], "user_auth");
    assert!(response.json["data"]["exp"].as_u64().is_some());
    let response = board.api(&token, "GET", &path, None);
    assert_eq!(response.status, 200, "{}", response.text);
    // The admin's own (api_key) token: no owner.
    let response = board.api(&token, "GET", &format!("/v2/user_auth/{token}"), None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"]["owner_id"], Value::Null);
    // ... which the user's token may not inspect (it is above it).
    let response = board.api(&user_token, "GET", &format!("/v2/user_auth/{token}"), None);
    assert_error(&response, 403, "forbidden");
    let response = board.http("GET", "/v2/user_auth/not.a.token", &[], None);
    assert_error(&response, 401, "invalid_credentials");

    // A new username needs the password; with it, the new credentials log in.
    let item = format!("/v2/accounts/{acme}/users/{alice}");
    let response = board.api(
        &token,
        "PATCH",
        &item,
        Some(&body(json!({"username": "alice.new"}))),
    );
    assert_error(&response, 400, "validation error");
    assert!(response.json["data"]["password"]["required"].is_object());
    let response = board.api(
        &token,
        "PATCH",
        &item,
        Some(&body(
            json!({"username": "alice.new", "password": "rabbit-hole"}),
        )),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let response = user_auth(
        &board,
        json!({"credentials": ALICE_MD5, "account_name": "Acme Corp"}),
    );
    assert_error(&response, 401, "invalid_credentials");
    let response = user_auth(
        &board,
        // md5("alice.new:rabbit-hole")
        json!({"credentials": "5555d861aa991bf3f451c98e8d8e8e9d", "account_name": "Acme Corp"}),
    );
    assert_eq!(response.status, 201, "{}", response.text);

    // A disabled user cannot log in.
    let response = board.api(
        &token,
        "PATCH",
        &item,
        Some(&body(json!({"enabled": false}))),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let response = user_auth(
        &board,
        json!({"credentials": "5555d861aa991bf3f451c98e8d8e8e9d", "account_name": "Acme Corp"}),
    );
    assert_error(&response, 401, "invalid_credentials");
}

#[test]
fn user_devices_and_device_owner_checks() {
    let (board, token, admin) = started();
    let acme = sub_account(&board, &token, &admin, "Acme", "acme.example.com");
    let other = sub_account(&board, &token, &admin, "Other", "other.example.com");
    let alice = create_user(
        &board,
        &token,
        &acme,
        json!({"first_name": "Alice", "last_name": "L", "username": "alice"}),
    );
    let stranger = create_user(
        &board,
        &token,
        &other,
        json!({"first_name": "Sam", "last_name": "S", "username": "sam"}),
    );
    let devices = format!("/v2/accounts/{acme}/devices");

    // owner_id must name a user of the same account.
    for owner in [stranger.clone(), "f".repeat(32)] {
        let response = board.api(
            &token,
            "PUT",
            &devices,
            Some(&body(json!({"name": "desk", "owner_id": owner,
                               "sip": {"username": "desk1", "password": "secret-1"}}))),
        );
        assert_error(&response, 400, "validation error");
        assert_eq!(
            response.json["data"]["owner_id"]["invalid"]["cause"],
            owner.as_str()
        );
    }
    let response = board.api(
        &token,
        "PUT",
        &devices,
        Some(&body(
            json!({"name": "desk", "owner_id": alice, "mac_address": "00:11:22:33:44:55",
                           "sip": {"username": "desk1", "password": "secret-1"}}),
        )),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let owned = response.json["data"]["id"].as_str().expect("id").to_owned();
    // ... also on update.
    let response = board.api(
        &token,
        "PATCH",
        &format!("{devices}/{owned}"),
        Some(&body(json!({"owner_id": stranger}))),
    );
    assert_error(&response, 400, "validation error");
    assert!(response.json["data"]["owner_id"]["invalid"].is_object());

    let response = board.api(
        &token,
        "PUT",
        &devices,
        Some(&body(
            json!({"name": "hotdesk phone", "hotdesk": {"users": {alice.clone(): {}}},
                           "sip": {"username": "desk2", "password": "secret-2"}}),
        )),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let hotdesked = response.json["data"]["id"].as_str().expect("id").to_owned();
    let response = board.api(
        &token,
        "PUT",
        &devices,
        Some(&body(
            json!({"name": "nobody's", "sip": {"username": "desk3", "password": "secret-3"}}),
        )),
    );
    assert_eq!(response.status, 201, "{}", response.text);

    let response = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{acme}/users/{alice}/devices"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let rows = response.json["data"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), 2, "{}", response.text);
    let row = |id: &str| {
        rows.iter()
            .find(|row| row["id"] == id)
            .expect("row")
            .clone()
    };
    let owned_row = row(&owned);
    assert_eq!(owned_row["name"], "desk");
    assert_eq!(owned_row["owner_id"], alice.as_str());
    assert_eq!(owned_row["mac_address"], "00:11:22:33:44:55");
    assert_eq!(owned_row["enabled"], true);
    assert_eq!(owned_row["device_type"], "sip_device");
    assert_eq!(owned_row["hotdesked"], false);
    let hotdesk_row = row(&hotdesked);
    assert_eq!(hotdesk_row["hotdesked"], true);
    assert_eq!(hotdesk_row["mac_address"], "");

    // A deleted owner does not lock its devices: they stay editable.
    let response = board.api(
        &token,
        "DELETE",
        &format!("/v2/accounts/{acme}/users/{alice}"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let response = board.api(
        &token,
        "PATCH",
        &format!("{devices}/{owned}"),
        Some(&body(json!({"name": "desk renamed"}))),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let response = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{acme}/users/{alice}/devices"),
        None,
    );
    assert_error(&response, 404, "bad_identifier");
}

#[test]
fn users_routes_keep_tenants_apart() {
    let (board, token, admin) = started();
    let acme = sub_account(&board, &token, &admin, "Acme", "acme.example.com");
    let rival = sub_account(&board, &token, &admin, "Rival", "rival.example.com");
    let alice = create_user(
        &board,
        &token,
        &acme,
        json!({"first_name": "Alice", "last_name": "L", "username": "alice",
               "password": "wonderland-1"}),
    );
    let rival_user = create_user(
        &board,
        &token,
        &rival,
        json!({"first_name": "Eve", "last_name": "R", "username": "eve"}),
    );
    let response = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{rival}/api_key"),
        None,
    );
    let rival_key = response.json["data"]["api_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let (rival_token, rival_id) = board.login(&rival_key);
    assert_eq!(rival_id, rival);

    let users = format!("/v2/accounts/{acme}/users");
    let item = format!("{users}/{alice}");
    let patch = body(json!({"first_name": "Mallory"}));
    let full = body(json!({"first_name": "M", "last_name": "M", "username": "m"}));
    let attempts: Vec<(&str, String, Option<&str>)> = vec![
        ("GET", users.clone(), None),
        ("PUT", users.clone(), Some(full.as_str())),
        ("GET", item.clone(), None),
        ("POST", item.clone(), Some(full.as_str())),
        ("PATCH", item.clone(), Some(patch.as_str())),
        ("DELETE", item.clone(), None),
        ("GET", format!("{item}/devices"), None),
    ];
    for (method, path, request) in &attempts {
        let response = board.api(&rival_token, method, path, *request);
        assert_error(&response, 403, "forbidden");
        assert!(
            !response.text.contains("alice"),
            "{method} {path}: {}",
            response.text
        );
        // No token at all: 401.
        let response = board.http(method, path, &[], *request);
        assert_error(&response, 401, "invalid_credentials");
    }

    // Acme's user through the rival's own account path: not found, never data.
    let smuggled = format!("/v2/accounts/{rival}/users/{alice}");
    for (method, request) in [
        ("GET", None),
        ("POST", Some(full.as_str())),
        ("PATCH", Some(patch.as_str())),
        ("DELETE", None),
    ] {
        let response = board.api(&rival_token, method, &smuggled, request);
        assert_error(&response, 404, "bad_identifier");
    }
    let response = board.api(&rival_token, "GET", &format!("{smuggled}/devices"), None);
    assert_error(&response, 404, "bad_identifier");
    let response = board.api(
        &rival_token,
        "GET",
        &format!("/v2/accounts/{rival}/users"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let rows = response.json["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], rival_user.as_str());
    // The same username may exist in another account.
    create_user(
        &board,
        &rival_token,
        &rival,
        json!({"first_name": "Other", "last_name": "Alice", "username": "alice"}),
    );

    // Acme's user token is not valid on the rival, and rival cannot inspect it.
    let response = user_auth(
        &board,
        json!({"credentials": ALICE_MD5, "account_name": "Acme"}),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let alice_token = response.json["auth_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let response = board.api(
        &alice_token,
        "GET",
        &format!("/v2/accounts/{rival}/users"),
        None,
    );
    assert_error(&response, 403, "forbidden");
    let response = board.api(
        &rival_token,
        "GET",
        &format!("/v2/user_auth/{alice_token}"),
        None,
    );
    assert_error(&response, 403, "forbidden");
    assert!(!response.text.contains(&alice), "{}", response.text);

    // Nothing changed in Acme.
    let response = board.api(&token, "GET", &item, None);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"]["first_name"], "Alice");
}
