//! End to end: NOTIFY to registered devices. A device created through the API registers with
//! `sipp` over UDP; `POST …/sync`, `PUT …/notify` and `PUT …/{id}` with `action: notify` make
//! the server send a NOTIFY to the binding's address, which a `sipp` UAS on the phone's port
//! answers, as it answers the check-sync a password change sends to the bindings it
//! flushes; a phone that never answers gets retransmissions and the API reports the timeout;
//! a device that is not registered gets a clear error.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Switchboard;
use serde_json::{Value, json};

const REALM: &str = "notify.api.test";

/// A running server (NOTIFY timeout 2 s), a sub-account with one registrable device, the
/// admin token; `(board, token, account, device, csv)`.
fn started(username: &str) -> (Switchboard, String, String, String, std::path::PathBuf) {
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_REGISTRAR_NOTIFY_TIMEOUT_MS", "2000")]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&json!({"data": {"name": "Phones", "realm": REALM}}).to_string()),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let account = response.json["data"]["id"].as_str().expect("id").to_owned();
    let password = format!("{username}-pass");
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{account}/devices"),
        Some(
            &json!({"data": {"name": username, "sip": {"username": username, "password": password}}})
                .to_string(),
        ),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let device = response.json["data"]["id"].as_str().expect("id").to_owned();
    let csv = board.users_csv(&format!("{username}.csv"), &[(username, &password)], REALM);
    (board, token, account, device, csv)
}

/// A `sipp` UAS answering one NOTIFY on `port` (UDP), started and bound before returning.
fn uas_notify(board: &Switchboard, port: u16) -> Child {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/uas_notify.xml");
    let child = Command::new("timeout")
        .arg("20")
        .arg("sipp")
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "u1", "-m", "1", "-nostdin"])
        .args(["-timeout", "15s", "-timeout_error"])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(board.data_dir().join("uas_notify-errors.log"))
        .current_dir(board.data_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sipp");
    // Bound once the port is taken (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(5);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "sipp UAS did not bind port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn finished_ok(board: &Switchboard, child: Child) {
    let output = child.wait_with_output().expect("sipp ran");
    assert!(
        output.status.success(),
        "sipp UAS failed ({}): {}\n--- sipp errors ---\n{}\n--- server log ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(board.data_dir().join("uas_notify-errors.log")).unwrap_or_default(),
        board.log()
    );
}

fn assert_accepted(response: &common::HttpResponse, data: &str) {
    assert_eq!(response.status, 202, "{}", response.text);
    assert_eq!(response.json["status"], "success", "{}", response.text);
    assert_eq!(response.json["data"], data, "{}", response.text);
}

#[test]
fn sync_and_notify_reach_a_phone_registered_over_udp() {
    if !common::sipp_available() {
        return;
    }
    let (board, token, account, device, csv) = started("nora");
    let phone_port = common::free_port();
    board
        .sipp_from(phone_port, "register_ok_300", &csv, "u1", 1)
        .expect("registers");
    let base = format!("/v2/accounts/{account}/devices/{device}");

    // POST …/sync: Event check-sync, answered 200 by the phone → 202.
    let uas = uas_notify(&board, phone_port);
    let response = board.api(&token, "POST", &format!("{base}/sync"), None);
    assert_accepted(&response, "sync request sent");
    finished_ok(&board, uas);

    // ?reboot=true adds the parameter (the UAS's regexp allows exactly that).
    let uas = uas_notify(&board, phone_port);
    let response = board.api(&token, "POST", &format!("{base}/sync?reboot=true"), None);
    assert_accepted(&response, "sync request sent");
    finished_ok(&board, uas);

    // PUT …/notify with Kazoo's devices_notify body, and a content body.
    let uas = uas_notify(&board, phone_port);
    let body = json!({"data": {"data": {"event": "check-sync", "body": {"content_type": "text/plain", "data": "hello"}}}});
    let response = board.api(
        &token,
        "PUT",
        &format!("{base}/notify"),
        Some(&body.to_string()),
    );
    assert_accepted(&response, "NOTIFY sent");
    finished_ok(&board, uas);

    // PUT …/{id} with the action tunnel.
    let uas = uas_notify(&board, phone_port);
    let body = json!({"action": "notify", "data": {"event": "check-sync"}});
    let response = board.api(&token, "PUT", &base, Some(&body.to_string()));
    assert_accepted(&response, "NOTIFY sent");
    finished_ok(&board, uas);

    // Bad bodies are refused before anything is sent.
    let response = board.api(&token, "PUT", &base, Some(&json!({"data": {}}).to_string()));
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.json["message"], "action required");
    let body = json!({"data": {"data": {"body": {"data": "x"}}}});
    let response = board.api(
        &token,
        "PUT",
        &format!("{base}/notify"),
        Some(&body.to_string()),
    );
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.json["message"], "validation error");

    // A password change flushes the binding and sends check-sync to it (best effort: the
    // API does not wait for the phone, but the phone gets it).
    let uas = uas_notify(&board, phone_port);
    let body = json!({"data": {"sip": {"password": "nora-new-pass"}}});
    let response = board.api(&token, "PATCH", &base, Some(&body.to_string()));
    assert_eq!(response.status, 200, "{}", response.text);
    finished_ok(&board, uas);
    let response = board.api(&token, "POST", &format!("{base}/sync"), None);
    assert_eq!(response.status, 404, "flushed: {}", response.text);
}

#[test]
fn a_phone_that_never_answers_gets_retransmissions_and_the_api_reports_the_timeout() {
    if !common::sipp_available() {
        return;
    }
    let (board, token, account, device, csv) = started("tess");
    let phone_port = common::free_port();
    board
        .sipp_from(phone_port, "register_ok_300", &csv, "u1", 1)
        .expect("registers");
    // The "phone" now listens on its registered port and never answers.
    let phone = UdpSocket::bind(("127.0.0.1", phone_port)).expect("bind phone port");
    phone
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let path = format!("/v2/accounts/{account}/devices/{device}/sync");
    let started_at = Instant::now();
    let request = std::thread::scope(|scope| {
        let request = scope.spawn(|| board.api(&token, "POST", &path, None));
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.is_finished() || received.is_empty() {
            if let Ok((len, _)) = phone.recv_from(&mut buf) {
                received.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            assert!(started_at.elapsed() < Duration::from_secs(15), "no end");
        }
        (request.join().expect("request thread"), received)
    });
    let (response, received) = request;
    let elapsed = started_at.elapsed();
    assert_eq!(response.status, 504, "{}", response.text);
    assert_eq!(response.json["status"], "error");
    assert_eq!(response.json["error"], "504");
    assert_eq!(response.json["data"]["cause"], device.as_str());
    assert_eq!(response.json["data"]["bindings"][0]["result"], "timeout");
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    // Timer E: sent at 0, 500 and 1500 ms before Timer F (2 s): the same request each time.
    assert!(received.len() >= 2, "{received:?}");
    assert!(received.iter().all(|message| message == &received[0]));
    let first = &received[0];
    assert!(first.starts_with("NOTIFY sip:tess@127.0.0.1:"), "{first}");
    assert!(first.contains("\r\nEvent: check-sync\r\n"), "{first}");
    assert!(
        first.contains(&format!("\r\nTo: <sip:tess@{REALM}>\r\n")),
        "{first}"
    );
    assert!(first.contains("SIP/2.0/UDP 127.0.0.1:"), "{first}");
    assert!(first.contains(";branch=z9hG4bK"), "{first}");
}

#[test]
fn a_device_that_is_not_registered_gets_a_clear_error() {
    let (board, token, account, device, _csv) = started("ida");
    let response = board.api(
        &token,
        "POST",
        &format!("/v2/accounts/{account}/devices/{device}/sync"),
        None,
    );
    assert_eq!(response.status, 404, "{}", response.text);
    assert_eq!(response.json["message"], "device not registered");
    assert_eq!(response.json["data"]["cause"], device.as_str());
    // An unknown device is Kazoo's bad_identifier.
    let response = board.api(
        &token,
        "POST",
        &format!("/v2/accounts/{account}/devices/{}/sync", "0".repeat(32)),
        None,
    );
    assert_eq!(response.status, 404, "{}", response.text);
    assert_eq!(response.json["message"], "bad_identifier");
    // GET on sync is not a method Kazoo serves.
    let response = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{account}/devices/{device}/sync"),
        None,
    );
    assert_eq!(response.status, 405, "{}", response.text);
    let _: Value = response.json;
}
