//! An account's own allow/deny lists, end to end: set by the account's admin through
//! `/v2/accounts/{id}/security/access_lists`, enforced by the real binary on REGISTERs from
//! raw UDP phones bound to 127.0.0.x (Linux routes all of 127/8 to loopback), durable across
//! a restart, and out of reach of another account's credentials. Every loop is bounded in
//! count and time.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::phone::{Registration, Step};
use common::{HttpResponse, REALM, Switchboard};
use serde_json::{Value, json};
use switchboard_model::EventKind;
use switchboard_store::{Directory, EventQuery, History};

const ACME_KEY: &str = "acme-own-api-key";
const BETA_KEY: &str = "beta-own-api-key";

fn status_of(message: &str) -> u16 {
    message
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// One registration of alice from `address` over UDP, answering the challenge: the final
/// status (0 when the server stayed silent for 3 s).
fn register_from(board: &Switchboard, address: &str) -> u16 {
    let socket = UdpSocket::bind((address, 0)).expect("bind a loopback address");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    socket
        .connect(("127.0.0.1", board.sip_port))
        .expect("connect");
    let local = socket.local_addr().expect("addr");
    let mut phone = Registration::new(
        "alice",
        "alice-secret",
        REALM,
        "UDP",
        &local.to_string(),
        &format!("<sip:alice@{local}>"),
    );
    socket
        .send(phone.request(None).as_bytes())
        .expect("send REGISTER");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buf[..len]).into_owned();
        match phone.step(&message) {
            Step::Send(next) => {
                socket.send(next.as_bytes()).expect("send");
            }
            Step::Done(_) => return 200,
            Step::Failed(answer) => return status_of(&answer),
            Step::Nothing => {}
        }
    }
    0
}

fn lists_path(account_id: &str) -> String {
    format!("/v2/accounts/{account_id}/security/access_lists")
}

fn put_lists(board: &Switchboard, token: &str, account_id: &str, data: Value) -> HttpResponse {
    let body = json!({ "data": data }).to_string();
    board.api(token, "PUT", &lists_path(account_id), Some(&body))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

fn rejected_events(board: &Switchboard) -> Vec<switchboard_model::Event> {
    let store = board.store();
    let events = store
        .events(&EventQuery {
            kinds: vec![EventKind::Rejected],
            ..EventQuery::default()
        })
        .expect("events");
    store.close();
    events
}

/// The value of one sample line of `/metrics`.
fn metric(board: &Switchboard, line_prefix: &str) -> Option<u64> {
    let (status, text) = board.http_get("/metrics")?;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix(line_prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// A server with alice in Acme (its own key `ACME_KEY`) and a second tenant, Beta (its own
/// key `BETA_KEY`), both below the operator's account.
fn two_tenants(env: &[(&str, &str)]) -> (Switchboard, String) {
    let mut board = Switchboard::prepare(env);
    board.device("alice", "alice-secret");
    let beta = board.cli(&[
        "account",
        "create",
        "--name",
        "Beta",
        "--realm",
        "beta.test",
    ])["id"]
        .as_str()
        .expect("beta id")
        .to_owned();
    {
        let store = board.store();
        store
            .set_account_api_key(&board.account_id, ACME_KEY)
            .expect("acme key");
        store
            .set_account_api_key(&beta, BETA_KEY)
            .expect("beta key");
        store.close();
    }
    board.start();
    (board, beta)
}

#[test]
fn an_accounts_lists_refuse_and_admit_registers_by_source_address() {
    let (mut board, _beta) = two_tenants(&[]);
    let acme = board.account_id.clone();
    let (token, own) = board.login(ACME_KEY);
    assert_eq!(own, acme);

    // Never set: both lists empty, everyone registers.
    let empty = board.api(&token, "GET", &lists_path(&acme), None);
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.json["data"], json!({"allow": [], "deny": []}));
    assert_eq!(register_from(&board, "127.0.0.3"), 200, "{}", board.log());

    // A deny list: 127.0.0.3 is refused with 403 (no challenge first), 127.0.0.2 registers.
    let set = put_lists(&board, &token, &acme, json!({"deny": ["127.0.0.3"]}));
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.json["status"], "success");
    assert_eq!(
        set.json["data"],
        json!({"allow": [], "deny": ["127.0.0.3"]})
    );
    assert_eq!(register_from(&board, "127.0.0.3"), 403, "{}", board.log());
    assert_eq!(register_from(&board, "127.0.0.2"), 200);
    assert_eq!(register_from(&board, "127.0.0.3"), 403);

    // Each refusal is counted and recorded as a rejected event of the account (no device:
    // the request was not authenticated).
    assert_eq!(
        metric(
            &board,
            "switchboard_security_refused_total{reason=\"account_acl\"}"
        ),
        Some(2)
    );
    assert!(eventually(Duration::from_secs(5), || rejected_events(
        &board
    )
    .len()
        == 2));
    let rejected = rejected_events(&board);
    assert!(rejected.iter().all(|event| {
        event.account_id == acme
            && event.device_id.is_none()
            && event
                .address
                .as_deref()
                .is_some_and(|a| a.starts_with("127.0.0.3:"))
            && event
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("deny list") && r.contains("alice"))
    }));

    // An allow list (POST is the same as PUT): only 127.0.0.2 may register.
    let body = json!({"data": {"allow": ["127.0.0.2/32"]}}).to_string();
    let set = board.api(&token, "POST", &lists_path(&acme), Some(&body));
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(
        set.json["data"],
        json!({"allow": ["127.0.0.2/32"], "deny": []})
    );
    assert_eq!(register_from(&board, "127.0.0.4"), 403);
    assert_eq!(register_from(&board, "127.0.0.3"), 403);
    assert_eq!(register_from(&board, "127.0.0.2"), 200);

    // A bad entry is Kazoo's 400 naming it, and nothing changes.
    let bad = put_lists(
        &board,
        &token,
        &acme,
        json!({"allow": ["10.0.0.0/8", "not-a-network"], "deny": ["192.0.2.0/33"]}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.json["error"], "400");
    assert_eq!(bad.json["message"], "validation error");
    assert_eq!(
        bad.json["data"]["allow.1"]["type"]["value"],
        "not-a-network"
    );
    assert_eq!(bad.json["data"]["deny.0"]["type"]["value"], "192.0.2.0/33");
    assert!(bad.json["data"].get("allow.0").is_none(), "{}", bad.text);
    let too_many: Vec<String> = (0..257)
        .map(|i| format!("10.1.{}.{}", i / 256, i % 256))
        .collect();
    let bad = put_lists(&board, &token, &acme, json!({"deny": too_many}));
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.json["data"]["deny"]["maxItems"]["target"], 256);
    let unchanged = board.api(&token, "GET", &lists_path(&acme), None);
    assert_eq!(
        unchanged.json["data"],
        json!({"allow": ["127.0.0.2/32"], "deny": []})
    );
    assert_eq!(register_from(&board, "127.0.0.4"), 403);

    // Cleared: both addresses register again.
    let cleared = board.api(&token, "DELETE", &lists_path(&acme), None);
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    assert_eq!(cleared.json["data"], json!({"allow": [], "deny": []}));
    assert_eq!(register_from(&board, "127.0.0.4"), 200);
    assert_eq!(register_from(&board, "127.0.0.3"), 200);

    // The lists survive a restart and bite from the first REGISTER after it.
    let set = put_lists(&board, &token, &acme, json!({"deny": ["127.0.0.3/32"]}));
    assert_eq!(set.status, 200, "{}", set.text);
    assert!(board.terminate(), "clean shutdown:\n{}", board.log());
    board.start();
    let (token, _) = board.login(ACME_KEY);
    let kept = board.api(&token, "GET", &lists_path(&acme), None);
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(
        kept.json["data"],
        json!({"allow": [], "deny": ["127.0.0.3/32"]})
    );
    assert_eq!(register_from(&board, "127.0.0.3"), 403);
    assert_eq!(register_from(&board, "127.0.0.2"), 200);
}

#[test]
fn another_accounts_credentials_never_reach_the_lists_and_scopes_apply() {
    let (board, beta) = two_tenants(&[]);
    let acme = board.account_id.clone();
    let (acme_token, _) = board.login(ACME_KEY);
    let (beta_token, own) = board.login(BETA_KEY);
    assert_eq!(own, beta);
    let set = put_lists(&board, &acme_token, &acme, json!({"deny": ["127.0.0.3"]}));
    assert_eq!(set.status, 200, "{}", set.text);

    // Beta's admin cannot read, replace or clear Acme's lists.
    let read = board.api(&beta_token, "GET", &lists_path(&acme), None);
    assert_eq!(read.status, 403, "{}", read.text);
    let write = put_lists(&board, &beta_token, &acme, json!({"deny": []}));
    assert_eq!(write.status, 403, "{}", write.text);
    let clear = board.api(&beta_token, "DELETE", &lists_path(&acme), None);
    assert_eq!(clear.status, 403, "{}", clear.text);
    // Nor can Acme's admin touch Beta's; an unknown account is 404.
    let across = put_lists(&board, &acme_token, &beta, json!({"deny": ["127.0.0.2"]}));
    assert_eq!(across.status, 403, "{}", across.text);
    let unknown = board.api(&acme_token, "GET", &lists_path(&"0".repeat(32)), None);
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    // Beta's own lists are its own, and never touched Acme's.
    let own = put_lists(
        &board,
        &beta_token,
        &beta,
        json!({"allow": ["192.0.2.0/24"]}),
    );
    assert_eq!(own.status, 200, "{}", own.text);
    let acme_lists = board.api(&acme_token, "GET", &lists_path(&acme), None);
    assert_eq!(
        acme_lists.json["data"],
        json!({"allow": [], "deny": ["127.0.0.3"]})
    );
    assert_eq!(register_from(&board, "127.0.0.3"), 403);
    assert_eq!(register_from(&board, "127.0.0.2"), 200);

    // The operator (above both) reaches them.
    let (operator, _) = board.login(&board.bootstrap_key());
    let read = board.api(&operator, "GET", &lists_path(&acme), None);
    assert_eq!(read.status, 200, "{}", read.text);

    // Scopes: security:read reads, only security:write writes.
    let body = json!({"data": {"name": "auditor", "scopes": ["security:read"]}}).to_string();
    let issued = board.api(
        &acme_token,
        "POST",
        &format!("/v2/accounts/{acme}/api_keys"),
        Some(&body),
    );
    assert_eq!(issued.status, 201, "{}", issued.text);
    let reader = format!(
        "Bearer {}",
        issued.json["data"]["key"].as_str().expect("key")
    );
    let auth = [("Authorization", reader.as_str())];
    let read = board.http("GET", &lists_path(&acme), &auth, None);
    assert_eq!(read.status, 200, "{}", read.text);
    let write = board.http(
        "PUT",
        &lists_path(&acme),
        &auth,
        Some(r#"{"data":{"deny":[]}}"#),
    );
    assert_eq!(write.status, 403, "{}", write.text);
    assert_eq!(write.json["data"]["scope"], "security:write");
    let body = json!({"data": {"name": "devices only", "scopes": ["devices:read"]}}).to_string();
    let issued = board.api(
        &acme_token,
        "POST",
        &format!("/v2/accounts/{acme}/api_keys"),
        Some(&body),
    );
    let other = format!(
        "Bearer {}",
        issued.json["data"]["key"].as_str().expect("key")
    );
    let read = board.http(
        "GET",
        &lists_path(&acme),
        &[("Authorization", other.as_str())],
        None,
    );
    assert_eq!(read.status, 403, "{}", read.text);
    assert_eq!(read.json["data"]["scope"], "security:read");
    // Still in force after all of that.
    assert_eq!(register_from(&board, "127.0.0.3"), 403);
}

#[test]
fn lists_written_elsewhere_bite_within_the_refresh_and_global_lists_come_first() {
    // 127.0.0.5 is denied globally: refused before parsing, whatever the account says.
    let (board, _beta) = two_tenants(&[("SWITCHBOARD_SECURITY_DENY", "127.0.0.5")]);
    let acme = board.account_id.clone();
    assert_eq!(register_from(&board, "127.0.0.4"), 200, "{}", board.log());
    // Another node (or process) writes the lists straight into the shared store: the
    // directory refresh (2 s) picks them up without any API call on this node.
    {
        let store = board.store();
        store
            .set_access_lists(
                &acme,
                &["127.0.0.5".to_owned(), "127.0.0.2".to_owned()],
                &["127.0.0.4".to_owned()],
                now_ms(),
            )
            .expect("write the lists");
        store.close();
    }
    assert!(
        eventually(Duration::from_secs(6), || register_from(
            &board,
            "127.0.0.4"
        ) == 403),
        "the refresh never picked the lists up:\n{}",
        board.log()
    );
    assert_eq!(register_from(&board, "127.0.0.2"), 200);
    // Globally denied: 403 from the global list (not the account's), though the account's
    // allow list names it.
    let before = metric(
        &board,
        "switchboard_security_refused_total{reason=\"account_acl\"}",
    )
    .unwrap_or(0);
    assert_eq!(register_from(&board, "127.0.0.5"), 403);
    assert!(
        metric(
            &board,
            "switchboard_security_refused_total{reason=\"banned\"}"
        )
        .is_some_and(|n| n >= 1)
    );
    assert_eq!(
        metric(
            &board,
            "switchboard_security_refused_total{reason=\"account_acl\"}"
        ),
        Some(before)
    );
}
