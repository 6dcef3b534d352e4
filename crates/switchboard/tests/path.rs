//! RFC 3327 Path end to end (issue #5): a phone behind an edge proxy registers through it
//! (two Vias, `Supported: path`, `Path: <sip:127.0.0.1:HOP;lr>`). The 200 returns the Path;
//! the NOTIFY of `POST …/sync` goes to the first Path hop (not to the address the REGISTER
//! came from, nor to the phone's private Contact) with the Path as its Route, and its answer
//! through that hop completes the request.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::Switchboard;
use common::phone::{Registration, Step, header, ok_for};
use serde_json::json;

const REALM: &str = "path.acme.test";

#[test]
fn requests_to_a_phone_behind_a_proxy_follow_its_path() {
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "0")]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&json!({"data": {"name": "Edge", "realm": REALM}}).to_string()),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let account = response.json["data"]["id"].as_str().expect("id").to_owned();
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{account}/devices"),
        Some(
            &json!({"data": {"name": "behind", "sip": {"username": "behind", "password": "behind-secret"}}})
                .to_string(),
        ),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let device = response.json["data"]["id"].as_str().expect("id").to_owned();

    // The proxy relays from one socket and asks for requests on another (its Path URI).
    let relay = UdpSocket::bind("127.0.0.1:0").expect("bind");
    relay
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    relay
        .connect(("127.0.0.1", board.sip_port))
        .expect("connect");
    let hop = UdpSocket::bind("127.0.0.1:0").expect("bind");
    hop.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let relay_port = relay.local_addr().expect("addr").port();
    let hop_port = hop.local_addr().expect("addr").port();
    let path = format!("<sip:127.0.0.1:{hop_port};lr>");
    let mut registration = Registration::new(
        "behind",
        "behind-secret",
        REALM,
        "UDP",
        &format!("127.0.0.1:{relay_port}"),
        "<sip:behind@10.0.0.9:5060>",
    );
    registration.extra = format!(
        "Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKphone\r\nSupported: path\r\nPath: {path}\r\n"
    );
    relay
        .send(registration.request(None).as_bytes())
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65_536];
    let ok = loop {
        assert!(Instant::now() < deadline, "no 200:\n{}", board.log());
        let Ok(len) = relay.recv(&mut buf) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buf[..len]).into_owned();
        match registration.step(&message) {
            Step::Send(next) => {
                relay.send(next.as_bytes()).expect("send");
            }
            Step::Done(ok) => break ok,
            Step::Failed(answer) => panic!("{answer}"),
            Step::Nothing => {}
        }
    };
    assert_eq!(header(&ok, "Path"), Some(path.as_str()), "{ok}");

    // The NOTIFY comes to the Path hop, routed by the Path, for the phone's Contact.
    let sync = format!("/v2/accounts/{account}/devices/{device}/sync");
    let notify = std::thread::scope(|scope| {
        let request = scope.spawn(|| board.api(&token, "POST", &sync, None));
        let deadline = Instant::now() + Duration::from_secs(10);
        let notify = loop {
            assert!(Instant::now() < deadline, "no NOTIFY at the Path hop");
            let Ok((len, from)) = hop.recv_from(&mut buf) else {
                continue;
            };
            let message = String::from_utf8_lossy(&buf[..len]).into_owned();
            if message.starts_with("NOTIFY ") {
                hop.send_to(ok_for(&message).as_bytes(), from)
                    .expect("answer");
                break message;
            }
        };
        let response = request.join().expect("request thread");
        assert_eq!(response.status, 202, "{}", response.text);
        notify
    });
    assert!(
        notify.starts_with("NOTIFY sip:behind@10.0.0.9:5060 SIP/2.0\r\n"),
        "{notify}"
    );
    assert_eq!(header(&notify, "Route"), Some(path.as_str()), "{notify}");
    // Nothing went to the relay's own address.
    assert!(relay.recv(&mut buf).is_err(), "the relay got a request");
}
