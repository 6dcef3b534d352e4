//! RFC 5626 (SIP Outbound) end to end (issue #5), with raw sockets as phones:
//! - an outbound REGISTER (`Supported: outbound`, `+sip.instance`, `reg-id`) over TCP gets
//!   `Require: outbound` and `Flow-Timer`; a CRLFCRLF ping gets its CRLF pong;
//! - the phone "reboots" (new connection, new port, new Call-ID, same instance and reg-id) and
//!   still has exactly one binding, even with room for five;
//! - its connection closes: `offline` at once, and the flow is removed once the flow timer
//!   passes without the phone coming back;
//! - outbound asked for through a proxy whose Path lacks `ob` gets 439; with `ob` it is kept;
//! - a STUN Binding request on the UDP SIP port is answered with the phone's address
//!   (XOR-MAPPED-ADDRESS), and counted as a keepalive, not as a malformed message;
//! - RFC 5627: with `Supported: gruu` the 200 gives the instance's `pub-gruu` and
//!   `temp-gruu`, and an INVITE to either is redirected to that instance's contact only.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::Switchboard;
use common::phone::{Registration, Step, header, take_message};
use serde_json::json;
use switchboard_model::EventKind;
use switchboard_store::{EventQuery, History, Location};

const REALM: &str = "outbound.acme.test";
const INSTANCE: &str = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";

/// A running server (flow timer 2 s, room for five contacts), a sub-account and one digest
/// device; `(board, token, account, device)`.
fn started(user: &str) -> (Switchboard, String, String, String) {
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_REGISTRAR_FLOW_TIMER", "2"),
        ("SWITCHBOARD_REGISTRAR_MAX_CONTACTS", "5"),
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "0"),
    ]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&json!({"data": {"name": "Outbound", "realm": REALM}}).to_string()),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let account = response.json["data"]["id"].as_str().expect("id").to_owned();
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{account}/devices"),
        Some(
            &json!({"data": {"name": user, "sip": {"username": user, "password": format!("{user}-secret")}}})
                .to_string(),
        ),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let device = response.json["data"]["id"].as_str().expect("id").to_owned();
    (board, token, account, device)
}

/// A phone on one TCP connection.
struct TcpPhone {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl TcpPhone {
    fn connect(port: u16) -> TcpPhone {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        TcpPhone {
            stream,
            buf: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.stream.local_addr().expect("addr").port()
    }

    /// The next message, or `""` for a CRLF keepalive; `None` on timeout.
    fn recv(&mut self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(message) = take_message(&mut self.buf) {
                return Some(message);
            }
            if Instant::now() >= deadline {
                return None;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    /// Registers (challenge and all); the final answer to the REGISTER.
    fn register(&mut self, registration: &mut Registration) -> String {
        self.stream
            .write_all(registration.request(None).as_bytes())
            .expect("send");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Some(message) = self.recv(Duration::from_millis(200)) else {
                continue;
            };
            match registration.step(&message) {
                Step::Send(next) => self.stream.write_all(next.as_bytes()).expect("send"),
                Step::Done(answer) | Step::Failed(answer) => return answer,
                Step::Nothing => {}
            }
        }
        panic!("no final answer to {}'s REGISTER", registration.user);
    }
}

fn outbound_registration(user: &str, port: u16, reg_id: u32) -> Registration {
    let mut registration = Registration::new(
        user,
        &format!("{user}-secret"),
        REALM,
        "TCP",
        &format!("127.0.0.1:{port}"),
        &format!(
            "<sip:{user}@127.0.0.1:{port};transport=tcp>;+sip.instance=\"{INSTANCE}\";reg-id={reg_id}"
        ),
    );
    registration.extra = "Supported: path, outbound\r\n".to_owned();
    registration
}

fn contacts(message: &str) -> Vec<&str> {
    message
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.eq_ignore_ascii_case("Contact") || name == "m").then(|| value.trim())
        })
        .collect()
}

#[test]
fn an_outbound_phone_keeps_one_binding_across_reboots_and_its_flow_is_removed_after_the_flow_timer()
{
    let (board, token, account, device) = started("obdesk");
    let path = format!("/v2/accounts/{account}/devices/{device}/registration");

    let mut phone = TcpPhone::connect(board.sip_port);
    let mut registration = outbound_registration("obdesk", phone.port(), 1);
    let ok = phone.register(&mut registration);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    assert_eq!(header(&ok, "Require"), Some("outbound"), "{ok}");
    assert_eq!(header(&ok, "Flow-Timer"), Some("2"), "{ok}");
    assert_eq!(contacts(&ok).len(), 1, "{ok}");

    // RFC 5626 §4.4.1 keepalive on the flow: CRLFCRLF is answered with CRLF.
    phone.stream.write_all(b"\r\n\r\n").expect("ping");
    assert_eq!(phone.recv(Duration::from_secs(2)).as_deref(), Some(""));

    // A plain (non-outbound) REGISTER from a second contact adds a binding: the device has
    // room for five, so one binding per instance below is the instance key, not eviction.
    let mut other = TcpPhone::connect(board.sip_port);
    let port = other.port();
    let mut plain = Registration::new(
        "obdesk",
        "obdesk-secret",
        REALM,
        "TCP",
        &format!("127.0.0.1:{port}"),
        &format!("<sip:obdesk@127.0.0.1:{port};transport=tcp>"),
    );
    let ok = other.register(&mut plain);
    assert_eq!(contacts(&ok).len(), 2, "{ok}");
    assert_eq!(header(&ok, "Require"), None, "{ok}");

    // Reboot: a new connection from a new port with a new Call-ID, same instance and reg-id.
    drop(phone);
    let mut phone = TcpPhone::connect(board.sip_port);
    let mut rebooted = outbound_registration("obdesk", phone.port(), 1);
    assert_ne!(rebooted.call_id, registration.call_id);
    let ok = phone.register(&mut rebooted);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let listed = contacts(&ok);
    assert_eq!(
        listed.len(),
        2,
        "one outbound flow and the plain contact: {ok}"
    );
    assert_eq!(
        listed
            .iter()
            .filter(|contact| contact.contains("+sip.instance"))
            .count(),
        1,
        "{ok}"
    );
    assert!(
        listed
            .iter()
            .any(|contact| contact.contains(&format!("127.0.0.1:{};transport=tcp", phone.port()))),
        "the flow moved to the new connection: {ok}"
    );
    let response = board.api(&token, "GET", &path, None);
    assert_eq!(response.json["bindings"], 2, "{}", response.text);

    // The rebooted phone's connection closes and it never comes back: offline at once, and
    // the flow is removed after the flow timer (2 s); the plain contact stays.
    drop(other);
    drop(phone);
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let store = board.store();
        let removed = store
            .events(&EventQuery {
                device_id: Some(device.clone()),
                kinds: vec![EventKind::Expired],
                ..Default::default()
            })
            .expect("events");
        let bindings = store.device_bindings(&device).expect("bindings");
        store.close();
        if let Some(event) = removed.first() {
            assert!(
                event
                    .reason
                    .as_deref()
                    .is_some_and(|reason| reason.contains("Flow-Timer")),
                "{event:?}"
            );
            assert_eq!(
                bindings.len(),
                1,
                "only the plain contact is left: {bindings:?}"
            );
            assert!(bindings[0].instance.is_none());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flow not removed:\n{}",
            board.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let offline = board.store().events(&EventQuery {
        device_id: Some(device.clone()),
        kinds: vec![EventKind::Offline],
        ..Default::default()
    });
    assert!(offline.expect("events").len() >= 2);
}

/// A REGISTER relayed by a proxy at our socket (top Via) for a phone behind it.
fn relayed(socket: &UdpSocket, path: Option<&str>) -> Registration {
    let port = socket.local_addr().expect("addr").port();
    let mut registration = Registration::new(
        "proxied",
        "proxied-secret",
        REALM,
        "UDP",
        &format!("127.0.0.1:{port}"),
        &format!("<sip:proxied@10.0.0.9:5060>;+sip.instance=\"{INSTANCE}\";reg-id=1"),
    );
    registration.extra = format!(
        "Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKphone1\r\nRequire: outbound\r\n{}",
        path.map(|p| format!("Path: {p}\r\n")).unwrap_or_default()
    );
    registration
}

fn register_udp(socket: &UdpSocket, registration: &mut Registration) -> String {
    socket
        .send(registration.request(None).as_bytes())
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buf[..len]).into_owned();
        match registration.step(&message) {
            Step::Send(next) => {
                socket.send(next.as_bytes()).expect("send");
            }
            Step::Done(answer) | Step::Failed(answer) => return answer,
            Step::Nothing => {}
        }
    }
    panic!("no final answer");
}

#[test]
fn outbound_through_a_proxy_needs_ob_in_the_first_path_else_439() {
    let (board, _token, _account, _device) = started("proxied");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    socket
        .connect(("127.0.0.1", board.sip_port))
        .expect("connect");

    let mut registration = relayed(&socket, None);
    let answer = register_udp(&socket, &mut registration);
    assert!(
        answer.starts_with("SIP/2.0 439 First Hop Lacks Outbound Support"),
        "{answer}"
    );
    let mut registration = relayed(&socket, Some("<sip:127.0.0.1;lr>"));
    let answer = register_udp(&socket, &mut registration);
    assert!(answer.starts_with("SIP/2.0 439 "), "{answer}");

    let mut registration = relayed(&socket, Some("<sip:127.0.0.1;lr;ob>"));
    let answer = register_udp(&socket, &mut registration);
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert_eq!(header(&answer, "Require"), Some("outbound"), "{answer}");
}

#[test]
fn a_stun_binding_request_on_the_sip_port_is_answered_with_the_mapped_address() {
    let (board, _token, _account, _device) = started("stunner");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    socket
        .connect(("127.0.0.1", board.sip_port))
        .expect("connect");
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    request.extend_from_slice(b"keepalive-01");
    socket.send(&request).expect("send");
    let mut buf = [0u8; 1500];
    let len = socket.recv(&mut buf).expect("a STUN answer");
    let answer = &buf[..len];
    assert_eq!(&answer[..2], &[0x01, 0x01], "Binding success");
    assert_eq!(&answer[8..20], b"keepalive-01");
    // XOR-MAPPED-ADDRESS, decoded by hand: family IPv4, port and address XOR the cookie.
    assert_eq!(&answer[20..24], &[0x00, 0x20, 0x00, 0x08]);
    assert_eq!(answer[25], 0x01);
    let port = u16::from_be_bytes([answer[26], answer[27]]) ^ 0x2112;
    let ip = [
        answer[28] ^ 0x21,
        answer[29] ^ 0x12,
        answer[30] ^ 0xA4,
        answer[31] ^ 0x42,
    ];
    let mapped = SocketAddr::from((ip, port));
    assert_eq!(mapped, socket.local_addr().expect("addr"));

    let (status, metrics) = board.http_get("/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("switchboard_stun_keepalives_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_sip_malformed_total 0"),
        "{metrics}"
    );
}

/// The quoted value of a Contact parameter (`pub-gruu="…"`).
fn quoted_param(contact: &str, name: &str) -> Option<String> {
    let start = contact.find(&format!(";{name}=\""))? + name.len() + 3;
    Some(contact[start..].split('"').next()?.to_owned())
}

/// An INVITE to `uri` over UDP; the final answer.
fn invite(board: &Switchboard, uri: &str) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    let request = format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKgr{port};rport\r\nMax-Forwards: 70\r\nFrom: <sip:caller@{REALM}>;tag=c\r\nTo: <{uri}>\r\nCall-ID: gruu-{port}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
    );
    socket
        .send_to(request.as_bytes(), ("127.0.0.1", board.sip_port))
        .expect("send");
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, _) = socket.recv_from(&mut buf).expect("answer");
        let answer = String::from_utf8_lossy(&buf[..len]).into_owned();
        if !answer.starts_with("SIP/2.0 1") {
            return answer;
        }
    }
}

#[test]
fn a_gruu_client_gets_public_and_temporary_gruus_that_route_to_its_instance_only() {
    let (board, _token, _account, _device) = started("gdesk");
    let mut phone = TcpPhone::connect(board.sip_port);
    let mut registration = outbound_registration("gdesk", phone.port(), 1);
    registration.extra = "Supported: outbound, gruu\r\n".to_owned();
    let ok = phone.register(&mut registration);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let contact = contacts(&ok)[0].to_owned();
    let public = quoted_param(&contact, "pub-gruu").expect("pub-gruu");
    assert_eq!(
        public,
        format!("sip:gdesk@{REALM};gr=urn:uuid:00000000-0000-1000-8000-000A95A0E128")
    );
    let temporary = quoted_param(&contact, "temp-gruu").expect("temp-gruu");
    assert!(temporary.starts_with("sip:tgruu."), "{temporary}");
    assert!(temporary.ends_with(&format!("@{REALM};gr")), "{temporary}");
    assert!(!temporary.contains("gdesk"), "{temporary}");

    // A second, plain contact of the same device: no GRUU for it, and not reached by one.
    let mut other = TcpPhone::connect(board.sip_port);
    let port = other.port();
    let mut plain = Registration::new(
        "gdesk",
        "gdesk-secret",
        REALM,
        "TCP",
        &format!("127.0.0.1:{port}"),
        &format!("<sip:gdesk@127.0.0.1:{port};transport=tcp>"),
    );
    let ok = other.register(&mut plain);
    assert_eq!(contacts(&ok).len(), 2, "{ok}");
    assert!(!ok.contains("pub-gruu"), "not asked for: {ok}");

    let flow_contact = format!("<sip:gdesk@127.0.0.1:{};transport=tcp>;q=1.0", phone.port());
    for gruu in [&public, &temporary] {
        let answer = invite(&board, gruu);
        assert!(answer.starts_with("SIP/2.0 302 "), "{gruu}: {answer}");
        assert_eq!(
            contacts(&answer),
            [flow_contact.as_str()],
            "{gruu}: {answer}"
        );
    }
    // The device's AOR reaches both contacts; an unknown temporary GRUU nothing.
    let answer = invite(&board, &format!("sip:gdesk@{REALM}"));
    assert_eq!(contacts(&answer).len(), 2, "{answer}");
    let answer = invite(
        &board,
        &format!("sip:tgruu.00112233445566778899aabbccddeeff@{REALM};gr"),
    );
    assert!(answer.starts_with("SIP/2.0 404 "), "{answer}");
}
