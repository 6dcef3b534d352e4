//! Webhooks end to end (issue #4): subscriptions in the seed's and Kazoo's shapes with their
//! validation and tenancy; a digest REGISTER (a raw UDP phone, so no sipp is needed) arriving
//! at a receiver as a signed `device.registered` callback, retried after failures with the
//! same event id and visible in the attempts; a hook that always fails disabled with a reason;
//! and a pending delivery that survives `kill -9`.
//!
//! The receiver is a tiny HTTP server on a std `TcpListener`, answering from a script of
//! statuses. Every wait is bounded.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::receiver::{Received, Receiver};
use common::{REALM, Switchboard};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use sha2::Sha256;

// ---- a phone -----------------------------------------------------------------------------

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

fn header<'m>(message: &'m str, name: &str) -> Vec<&'m str> {
    message
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
        .collect()
}

fn parameter(challenge: &str, name: &str) -> Option<String> {
    challenge.split(',').find_map(|part| {
        let (key, value) = part.trim().trim_start_matches("Digest ").split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// A UDP phone of `user` that registers with digest authentication.
struct Phone {
    socket: UdpSocket,
    user: String,
    password: String,
    cseq: u32,
}

impl Phone {
    fn new(board: &Switchboard, user: &str, password: &str) -> Phone {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind phone");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        socket
            .connect(("127.0.0.1", board.sip_port))
            .expect("connect");
        Phone {
            socket,
            user: user.to_owned(),
            password: password.to_owned(),
            cseq: 0,
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }

    fn request(&mut self, expires: u32, authorization: Option<&str>) -> String {
        self.cseq += 1;
        let (user, port, cseq) = (&self.user, self.port(), self.cseq);
        let authorization = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{user}-{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{REALM}>;tag=hooks\r\nTo: <sip:{user}@{REALM}>\r\nCall-ID: hooks-{user}-{port}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\nExpires: {expires}\r\n{authorization}User-Agent: HookPhone/1.0\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// Sends and waits (bounded) for the final response to this CSeq.
    fn exchange(&mut self, message: &str) -> String {
        let cseq = format!("{} REGISTER", self.cseq);
        self.socket.send(message.as_bytes()).expect("send");
        let mut buffer = vec![0u8; 65_536];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(length) = self.socket.recv(&mut buffer) {
                let answer = String::from_utf8_lossy(&buffer[..length]).into_owned();
                if answer.starts_with("SIP/2.0 ")
                    && !answer.starts_with("SIP/2.0 1")
                    && header(&answer, "CSeq").first() == Some(&cseq.as_str())
                {
                    return answer;
                }
            }
        }
        panic!("no answer to REGISTER CSeq {cseq}");
    }

    /// REGISTER, answer the challenge, and return the final status line.
    fn register(&mut self, expires: u32) -> String {
        let first = self.request(expires, None);
        let challenge = self.exchange(&first);
        assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
        let offer = header(&challenge, "WWW-Authenticate")
            .into_iter()
            .find(|offer| {
                parameter(offer, "algorithm").is_none_or(|a| a.eq_ignore_ascii_case("MD5"))
            })
            .expect("an MD5 challenge")
            .to_owned();
        let nonce = parameter(&offer, "nonce").expect("nonce");
        let uri = format!("sip:{REALM}");
        let (cnonce, nc) = ("0a4f113b", "00000001");
        let ha1 = md5_hex(&format!("{}:{REALM}:{}", self.user, self.password));
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        let authorization = format!(
            "Digest username=\"{}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
            self.user
        );
        let second = self.request(expires, Some(&authorization));
        let answer = self.exchange(&second);
        answer.lines().next().unwrap_or_default().to_owned()
    }
}

// ---- helpers -----------------------------------------------------------------------------

fn body(data: Value) -> String {
    json!({ "data": data }).to_string()
}

fn signature_ok(secret: &str, received: &Received) -> bool {
    let timestamp = received.header("X-Switchboard-Timestamp");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.{}", received.body).as_bytes());
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    received.header("X-Switchboard-Signature") == expected
}

fn assert_validation(response: &common::HttpResponse, field: &str, code: &str) {
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(
        response.json["message"], "validation error",
        "{}",
        response.text
    );
    assert!(
        response.json["data"][field][code].is_object(),
        "no {field}.{code} in {}",
        response.text
    );
}

/// Creates a hook from `request` (the whole body) with POST; returns (id, secret).
fn create_hook(
    board: &Switchboard,
    token: &str,
    account: &str,
    request: Value,
) -> (String, String) {
    let response = board.api(
        token,
        "POST",
        &format!("/v2/accounts/{account}/webhooks"),
        Some(&request.to_string()),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let data = &response.json["data"];
    (
        data["id"].as_str().expect("id").to_owned(),
        data["secret"].as_str().expect("secret").to_owned(),
    )
}

/// Polls `GET path` until `check` holds on `data` (bounded).
fn wait_for_api(
    board: &Switchboard,
    token: &str,
    path: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let response = board.api(token, "GET", path, None);
        assert_eq!(response.status, 200, "{}", response.text);
        if check(&response.json["data"]) {
            return response.json["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: condition not met within {within:?}: {}\n{}",
            response.text,
            board.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A sub-account of `parent` and a token for it (its own key).
fn tenant(board: &Switchboard, admin_token: &str, parent: &str, name: &str) -> (String, String) {
    let response = board.api(
        admin_token,
        "PUT",
        &format!("/v2/accounts/{parent}"),
        Some(&body(
            json!({"name": name, "realm": format!("{name}.hooks.test")}),
        )),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let id = response.json["data"]["id"].as_str().expect("id").to_owned();
    let key = board.api(
        admin_token,
        "GET",
        &format!("/v2/accounts/{id}/api_key"),
        None,
    );
    let (token, _) = board.login(key.json["data"]["api_key"].as_str().expect("key"));
    (id, token)
}

// ---- the tests ---------------------------------------------------------------------------

#[test]
fn webhook_crud_in_both_shapes_with_validation_and_tenancy() {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    let (admin_token, admin) = board.login(&board.bootstrap_key());
    let (alpha, alpha_token) = tenant(&board, &admin_token, &admin, "alpha");
    let (beta, beta_token) = tenant(&board, &admin_token, &admin, "beta");
    let hooks = format!("/v2/accounts/{alpha}/webhooks");

    // The seed's shape: top level, POST.
    let seed = board.api(
        &alpha_token,
        "POST",
        &hooks,
        Some(
            &json!({"url": "https://example.com/webhooks/devices",
                    "events": ["device.registered", "device.unregistered", "device.offline"]})
            .to_string(),
        ),
    );
    assert_eq!(seed.status, 201, "{}", seed.text);
    let seed_hook = &seed.json["data"];
    let seed_id = seed_hook["id"].as_str().expect("id").to_owned();
    assert_eq!(seed_hook["url"], "https://example.com/webhooks/devices");
    assert_eq!(seed_hook["uri"], seed_hook["url"]);
    assert_eq!(seed_hook["enabled"], true);
    assert_eq!(seed_hook["http_verb"], "post");
    assert_eq!(seed_hook["retries"], 4);
    let secret = seed_hook["secret"]
        .as_str()
        .expect("secret shown on create");
    assert_eq!(secret.len(), 64);
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));

    // Kazoo's shape: `data`, PUT, with its own secret.
    let kazoo = board.api(
        &alpha_token,
        "PUT",
        &hooks,
        Some(&body(json!({
            "name": "ops", "uri": "http://hooks.internal:8080/in", "hook": "all",
            "http_verb": "put", "retries": 2, "custom_data": {"team": "ops"},
            "include_subaccounts": true, "secret": "a-secret-of-our-own",
        }))),
    );
    assert_eq!(kazoo.status, 201, "{}", kazoo.text);
    let kazoo_hook = &kazoo.json["data"];
    let kazoo_id = kazoo_hook["id"].as_str().expect("id").to_owned();
    assert_eq!(kazoo_hook["events"], json!(["*"]));
    assert_eq!(kazoo_hook["url"], "http://hooks.internal:8080/in");
    assert_eq!(kazoo_hook["secret"], "a-secret-of-our-own");
    assert_eq!(kazoo_hook["custom_data"]["team"], "ops");

    // The seed's shape inside `data` works too.
    let wrapped = board.api(
        &alpha_token,
        "POST",
        &hooks,
        Some(&body(
            json!({"url": "https://example.com/x", "events": ["*"]}),
        )),
    );
    assert_eq!(wrapped.status, 201, "{}", wrapped.text);

    // Reads never show the secret.
    let list = board.api(&alpha_token, "GET", &hooks, None);
    assert_eq!(list.status, 200, "{}", list.text);
    let rows = list.json["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|row| row.get("secret").is_none()),
        "{}",
        list.text
    );
    let one = board.api(&alpha_token, "GET", &format!("{hooks}/{seed_id}"), None);
    assert_eq!(one.status, 200, "{}", one.text);
    assert!(one.json["data"].get("secret").is_none());
    assert_eq!(one.json["data"]["events"][0], "device.registered");

    // Validation names the field.
    let bad = board.api(
        &alpha_token,
        "POST",
        &hooks,
        Some(&json!({"url": "ftp://example.com/x", "events": ["device.bogus"]}).to_string()),
    );
    assert_validation(&bad, "url", "format");
    assert_validation(&bad, "events", "enum");
    let bad = board.api(
        &alpha_token,
        "PUT",
        &hooks,
        Some(&body(
            json!({"name": "n", "hook": "all", "retries": 9, "http_verb": "delete"}),
        )),
    );
    assert_validation(&bad, "uri", "required");
    assert_validation(&bad, "retries", "maximum");
    assert_validation(&bad, "http_verb", "enum");
    let bad = board.api(
        &alpha_token,
        "POST",
        &hooks,
        Some(&json!({"events": ["*"]}).to_string()),
    );
    assert_validation(&bad, "url", "required");

    // PATCH merges; the URL may be renamed by either of its names.
    let patched = board.api(
        &alpha_token,
        "PATCH",
        &format!("{hooks}/{kazoo_id}"),
        Some(&body(
            json!({"name": "renamed", "uri": "https://new.example/in"}),
        )),
    );
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["data"]["name"], "renamed");
    assert_eq!(patched.json["data"]["url"], "https://new.example/in");
    assert_eq!(patched.json["data"]["uri"], "https://new.example/in");
    assert_eq!(patched.json["data"]["custom_data"]["team"], "ops");
    assert!(patched.json["data"].get("secret").is_none());
    let bad = board.api(
        &alpha_token,
        "PATCH",
        &format!("{hooks}/{kazoo_id}"),
        Some(&body(json!({"retries": -1}))),
    );
    assert_validation(&bad, "retries", "minimum");
    // POST replaces.
    let replaced = board.api(
        &alpha_token,
        "POST",
        &format!("{hooks}/{seed_id}"),
        Some(
            &json!({"url": "https://example.com/replaced", "events": ["device.expired"]})
                .to_string(),
        ),
    );
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.json["data"]["events"], json!(["device.expired"]));
    assert_eq!(replaced.json["data"]["url"], "https://example.com/replaced");

    // Tenancy: another account's token is refused; a hook of another account is not found.
    let foreign = board.api(&beta_token, "GET", &hooks, None);
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    let foreign = board.api(&beta_token, "GET", &format!("{hooks}/{seed_id}"), None);
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    for (method, suffix) in [
        ("GET", ""),
        ("PATCH", ""),
        ("POST", ""),
        ("DELETE", ""),
        ("GET", "/attempts"),
    ] {
        let path = format!("/v2/accounts/{beta}/webhooks/{seed_id}{suffix}");
        let response = board.api(
            &beta_token,
            method,
            &path,
            (method == "PATCH" || method == "POST")
                .then(|| body(json!({"url": "https://evil.example/"})))
                .as_deref(),
        );
        assert_eq!(response.status, 404, "{method} {path}: {}", response.text);
        assert_eq!(response.json["message"], "bad_identifier");
    }
    // The parent (admin) reaches the child's hooks.
    let from_parent = board.api(&admin_token, "GET", &hooks, None);
    assert_eq!(from_parent.status, 200, "{}", from_parent.text);

    // Attempts: none yet.
    let attempts = board.api(&alpha_token, "GET", &format!("{hooks}/attempts"), None);
    assert_eq!(attempts.status, 200, "{}", attempts.text);
    assert_eq!(attempts.json["data"], json!([]));
    let bad_limit = board.api(
        &alpha_token,
        "GET",
        &format!("{hooks}/attempts?limit=0"),
        None,
    );
    assert_eq!(bad_limit.status, 400, "{}", bad_limit.text);

    // DELETE.
    let deleted = board.api(&alpha_token, "DELETE", &format!("{hooks}/{seed_id}"), None);
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let gone = board.api(&alpha_token, "GET", &format!("{hooks}/{seed_id}"), None);
    assert_eq!(gone.status, 404, "{}", gone.text);
    assert!(board.terminate(), "clean shutdown:\n{}", board.log());
}

#[test]
fn a_registration_is_delivered_signed_and_retried_with_the_same_event_id() {
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_WEBHOOKS_RETRY_BASE_MS", "100"),
        ("SWITCHBOARD_WEBHOOKS_POLL_INTERVAL_MS", "50"),
    ]);
    let device_id = board.device("hookdesk", "hookdesk-secret");
    board.start();
    let (token, _) = board.login(&board.bootstrap_key());
    let account = board.account_id.clone();
    let receiver = Receiver::start(2);
    let (hook_id, secret) = create_hook(
        &board,
        &token,
        &account,
        json!({"url": receiver.url(), "events": ["device.registered"]}),
    );
    let (unregistered_hook, _) = create_hook(
        &board,
        &token,
        &account,
        json!({"url": receiver.url(), "events": ["device.unregistered"]}),
    );

    let mut phone = Phone::new(&board, "hookdesk", "hookdesk-secret");
    let status = phone.register(600);
    assert!(
        status.starts_with("SIP/2.0 200"),
        "{status}\n{}",
        board.log()
    );

    // Two failures, then the delivery: three requests, one event id.
    let seen = receiver.wait(Duration::from_secs(15), "three attempts", |seen| {
        seen.len() >= 3
    });
    let answered: Vec<u16> = seen.iter().map(|request| request.answered).collect();
    assert_eq!(answered[..3], [500, 500, 200]);
    let event_id = seen[0].header("X-Switchboard-Event-Id").to_owned();
    assert!(event_id.starts_with("evt_"), "{event_id}");
    for request in &seen[..3] {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("X-Switchboard-Event"), "device.registered");
        assert_eq!(request.header("X-Switchboard-Event-Id"), event_id);
        assert_eq!(request.header("X-Hook-ID"), hook_id);
        assert_eq!(request.header("X-Account-ID"), account);
        assert_eq!(request.header("Content-Type"), "application/json");
        assert!(
            signature_ok(&secret, request),
            "bad signature on {request:#?}"
        );
        assert!(!signature_ok("another secret", request));
        assert_eq!(request.body, seen[0].body, "the same body on every attempt");
    }
    let payload = seen[2].json();
    assert_eq!(payload["event"], "device.registered");
    assert_eq!(payload["eventId"], event_id);
    assert_eq!(payload["accountId"], account);
    assert!(
        payload["timestamp"]
            .as_str()
            .expect("timestamp")
            .ends_with('Z')
    );
    let data = &payload["data"];
    assert_eq!(data["deviceId"], device_id);
    assert_eq!(data["status"], "registered");
    assert_eq!(data["ipAddress"], "127.0.0.1");
    assert_eq!(data["port"], phone.port());
    assert_eq!(data["transportProtocol"], "UDP");
    assert_eq!(data["userAgent"], "HookPhone/1.0");
    assert!(data["registeredAt"].is_string(), "{payload}");

    // The attempts, newest first, per hook and for the account.
    let attempts = wait_for_api(
        &board,
        &token,
        &format!("/v2/accounts/{account}/webhooks/{hook_id}/attempts"),
        Duration::from_secs(5),
        |data| data.as_array().is_some_and(|rows| rows.len() == 3),
    );
    let results: Vec<&str> = attempts
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["result"].as_str().expect("result"))
        .collect();
    assert_eq!(results, ["success", "failure", "failure"]);
    assert_eq!(attempts[0]["http_status"], 200);
    assert_eq!(attempts[1]["http_status"], 500);
    assert_eq!(attempts[1]["reason"], "HTTP 500");
    assert_eq!(attempts[0]["event_id"], event_id);
    assert_eq!(attempts[0]["event"], "device.registered");
    let limited = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{account}/webhooks/{hook_id}/attempts?limit=1"),
        None,
    );
    assert_eq!(limited.json["data"].as_array().map(Vec::len), Some(1));
    let all = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{account}/webhooks/attempts"),
        None,
    );
    assert_eq!(
        all.json["data"].as_array().map(Vec::len),
        Some(3),
        "{}",
        all.text
    );
    let hook = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{account}/webhooks/{hook_id}"),
        None,
    );
    assert_eq!(hook.json["data"]["enabled"], true);

    // The other hook only wanted `device.unregistered`: it gets the un-REGISTER, nothing else.
    assert!(
        receiver
            .seen()
            .iter()
            .all(|request| request.header("X-Hook-ID") != unregistered_hook),
        "{:#?}",
        receiver.seen()
    );
    let status = phone.register(0);
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
    let seen = receiver.wait(Duration::from_secs(10), "the unregistered event", |seen| {
        seen.iter()
            .any(|request| request.header("X-Hook-ID") == unregistered_hook)
    });
    let unregistered = seen
        .iter()
        .find(|request| request.header("X-Hook-ID") == unregistered_hook)
        .expect("found");
    assert_eq!(
        unregistered.header("X-Switchboard-Event"),
        "device.unregistered"
    );
    assert_eq!(unregistered.json()["data"]["status"], "unregistered");
    assert!(
        seen.iter()
            .filter(|request| request.header("X-Hook-ID") == hook_id)
            .count()
            == 3,
        "the registered-only hook got nothing more"
    );
    // Prometheus counts the outcomes (the two 500s and the deliveries); the worker records an
    // attempt a moment after the receiver has seen it.
    let value = |metrics: &str, series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, metrics) = board.http_get("/metrics").expect("metrics");
        assert_eq!(status, 200);
        let failed = value(
            &metrics,
            "switchboard_webhook_deliveries_total{outcome=\"failed_attempt\"}",
        );
        let delivered = value(
            &metrics,
            "switchboard_webhook_deliveries_total{outcome=\"delivered\"}",
        );
        let lag = value(&metrics, "switchboard_webhook_delivery_lag_seconds_sum");
        if failed >= 2.0 && delivered >= 2.0 && lag > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook metrics did not count:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(board.terminate(), "clean shutdown:\n{}", board.log());
}

#[test]
fn a_hook_that_always_fails_is_disabled_with_a_reason() {
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_WEBHOOKS_RETRY_BASE_MS", "20"),
        ("SWITCHBOARD_WEBHOOKS_POLL_INTERVAL_MS", "50"),
    ]);
    board.device("faildesk", "faildesk-secret");
    board.start();
    let (token, _) = board.login(&board.bootstrap_key());
    let account = board.account_id.clone();
    let receiver = Receiver::start(usize::MAX);
    let (hook_id, _) = create_hook(&board, &token, &account, json!({"url": receiver.url()}));

    // Two events of five attempts each (retries 4): the sixth failure in a row disables it.
    let mut phone = Phone::new(&board, "faildesk", "faildesk-secret");
    assert!(phone.register(600).starts_with("SIP/2.0 200"));
    assert!(phone.register(0).starts_with("SIP/2.0 200"));
    let path = format!("/v2/accounts/{account}/webhooks/{hook_id}");
    let hook = wait_for_api(&board, &token, &path, Duration::from_secs(20), |hook| {
        hook["enabled"] == false
    });
    let reason = hook["disable_reason"].as_str().expect("disable_reason");
    assert!(
        reason.contains("6 consecutive failed attempts") && reason.contains("HTTP 500"),
        "{reason}"
    );
    // Its deliveries stop (at most the few already in flight finish).
    std::thread::sleep(Duration::from_millis(500));
    let count = receiver.seen().len();
    assert!((6..=9).contains(&count), "{count} requests");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.seen().len(), count, "nothing more once disabled");
    assert!(
        receiver
            .seen()
            .iter()
            .all(|request| request.answered == 500)
    );

    // Kazoo's re-enable brings it back, without the reason.
    let enabled = board.api(
        &token,
        "PATCH",
        &path,
        Some(&json!({"re-enable": true}).to_string()),
    );
    assert_eq!(enabled.status, 200, "{}", enabled.text);
    assert_eq!(enabled.json["data"]["enabled"], true);
    assert!(enabled.json["data"].get("disable_reason").is_none());
    assert!(board.terminate(), "clean shutdown:\n{}", board.log());
}

#[test]
fn a_pending_delivery_survives_kill_9() {
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_WEBHOOKS_POLL_INTERVAL_MS", "50")]);
    board.device("crashdesk", "crashdesk-secret");
    board.start();
    let (token, _) = board.login(&board.bootstrap_key());
    let account = board.account_id.clone();
    // Nobody listens there yet: every attempt is refused.
    let port = common::free_port();
    let (hook_id, secret) = create_hook(
        &board,
        &token,
        &account,
        json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["device.registered"]}),
    );
    let mut phone = Phone::new(&board, "crashdesk", "crashdesk-secret");
    assert!(phone.register(600).starts_with("SIP/2.0 200"));
    let attempts = wait_for_api(
        &board,
        &token,
        &format!("/v2/accounts/{account}/webhooks/{hook_id}/attempts"),
        Duration::from_secs(10),
        |data| data.as_array().is_some_and(|rows| !rows.is_empty()),
    );
    assert_eq!(attempts[0]["result"], "failure");
    assert!(attempts[0]["http_status"].is_null());
    let event_id = attempts[0]["event_id"]
        .as_str()
        .expect("event id")
        .to_owned();

    board.kill9();
    let receiver = Receiver::on(port, 0);
    board.start();
    let seen = receiver.wait(
        Duration::from_secs(20),
        "the delivery after the restart",
        |seen| !seen.is_empty(),
    );
    assert_eq!(seen[0].header("X-Switchboard-Event-Id"), event_id);
    assert_eq!(seen[0].header("X-Hook-ID"), hook_id);
    assert!(signature_ok(&secret, &seen[0]));
    assert_eq!(seen[0].json()["data"]["status"], "registered");
    // Delivered once: nothing more for it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.seen().len(), 1, "{:#?}", receiver.seen());
    assert!(board.terminate(), "clean shutdown:\n{}", board.log());
}
