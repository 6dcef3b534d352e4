//! A real browser SIP stack (JsSIP 3.13, run headless in Node with jssip-node-websocket)
//! registers over `ws` and `wss` with digest authentication; when it goes away without
//! unregistering (a closed tab) the device is `offline` within a second.
//!
//! Needs `node` and `npm ci` in `tests/jssip/`; without them the test says so and skips,
//! unless REQUIRE_JSSIP=1 (then it fails).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Switchboard;
use serde_json::json;

const REALM: &str = "jssip.acme.test";

fn jssip_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jssip")
}

fn jssip_available() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let installed = jssip_dir().join("node_modules/jssip").is_dir()
        && jssip_dir()
            .join("node_modules/jssip-node-websocket")
            .is_dir();
    if node && installed {
        return true;
    }
    assert!(
        !std::env::var("REQUIRE_JSSIP").is_ok_and(|v| v == "1"),
        "JsSIP is required: install node and run `npm ci` in {}",
        jssip_dir().display()
    );
    eprintln!(
        "SKIPPED: JsSIP not installed (node, and `npm ci` in {})",
        jssip_dir().display()
    );
    false
}

fn jssip_over(secure: bool) {
    if !jssip_available() {
        return;
    }
    // JsSIP 3.13 gives up ("challenge with Digest algorithm different than MD5") when a 401
    // carries an SHA-256 challenge besides the MD5 one: a JsSIP fleet's registrar offers MD5
    // only, as here.
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "0"),
        ("SWITCHBOARD_REGISTRAR_ALGORITHMS", "MD5"),
    ]);
    let port = common::free_port();
    let scheme = if secure { "wss" } else { "ws" };
    let mut args = vec![
        "--sip-listen".to_owned(),
        format!("{scheme}:127.0.0.1:{port}"),
    ];
    if secure {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
        let cert = board.data_dir().join("ws.crt");
        let key = board.data_dir().join("ws.key");
        std::fs::write(&cert, certified.cert.pem()).expect("cert");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
        args.extend([
            "--tls-cert".to_owned(),
            cert.display().to_string(),
            "--tls-key".to_owned(),
            key.display().to_string(),
        ]);
    }
    board.start_with(&args);
    let (token, admin) = board.login(&board.bootstrap_key());
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&json!({"data": {"name": "Browser", "realm": REALM}}).to_string()),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let account = response.json["data"]["id"].as_str().expect("id").to_owned();
    let user = format!("js{scheme}");
    let password = format!("{user}-secret");
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{account}/devices"),
        Some(
            &json!({"data": {"name": user, "device_type": "webrtc", "sip": {"username": user, "password": password}}})
                .to_string(),
        ),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let device = response.json["data"]["id"].as_str().expect("id").to_owned();

    let mut child = Command::new("node")
        .arg(jssip_dir().join("register.js"))
        .arg(format!("{scheme}://127.0.0.1:{port}"))
        .args([user.as_str(), REALM, password.as_str()])
        .current_dir(jssip_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run node");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first = received
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("JsSIP said nothing:\n{}", board.log())
        });
    assert_eq!(first, "registered", "{}", board.log());

    let path = format!("/v2/accounts/{account}/devices/{device}/registration");
    let view = board.api(&token, "GET", &path, None).json;
    assert_eq!(view["status"], "registered", "{view}");
    assert_eq!(view["transportProtocol"], scheme.to_uppercase(), "{view}");
    assert!(
        view["contactUri"]
            .as_str()
            .is_some_and(|contact| contact.contains(".invalid")),
        "{view}"
    );
    assert!(
        view["userAgent"]
            .as_str()
            .is_some_and(|agent| agent.starts_with("JsSIP")),
        "{view}"
    );

    // The tab closes: the process exits without unregistering.
    let _ = child.stdin.as_mut().expect("stdin").write_all(b"close\n");
    let _ = child.wait();
    let closed_at = Instant::now();
    loop {
        let view = board.api(&token, "GET", &path, None).json;
        if view["status"] == "offline" {
            break;
        }
        assert!(
            closed_at.elapsed() < Duration::from_secs(1),
            "not offline within 1 s: {view}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn jssip_registers_over_ws_and_is_offline_when_it_goes_away() {
    jssip_over(false);
}

#[test]
fn jssip_registers_over_wss_and_is_offline_when_it_goes_away() {
    jssip_over(true);
}
