//! Fork-ring location end to end (seed 002, issue #5): a user owns three devices registered
//! (UDP, digest) with q=0.1, 1.0 and 0.5. `GET …/users/{id}/location` lists the three by q,
//! and an INVITE to the user's address-of-record — or to one device's SIP username, which
//! stands for its owner — is answered `302 Moved Temporarily` with the three contacts in q
//! order, each with its `q`. A user with nothing registered, or an unknown name, gets 404.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::Switchboard;
use common::phone::{Registration, Step};
use serde_json::json;

const REALM: &str = "fork.acme.test";

fn created(response: &common::HttpResponse) -> String {
    assert_eq!(response.status, 201, "{}", response.text);
    response.json["data"]["id"].as_str().expect("id").to_owned()
}

/// Registers `user` from its own UDP socket with a Contact carrying `q`; returns the socket
/// (kept open: the phone's port stays taken).
fn register(board: &Switchboard, user: &str, q: &str) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    socket
        .connect(("127.0.0.1", board.sip_port))
        .expect("connect");
    let port = socket.local_addr().expect("addr").port();
    let mut registration = Registration::new(
        user,
        &format!("{user}-secret"),
        REALM,
        "UDP",
        &format!("127.0.0.1:{port}"),
        &format!("<sip:{user}@127.0.0.1:{port}>;q={q}"),
    );
    socket
        .send(registration.request(None).as_bytes())
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65_536];
    loop {
        assert!(Instant::now() < deadline, "{user} did not register");
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buf[..len]).into_owned();
        match registration.step(&message) {
            Step::Send(next) => {
                socket.send(next.as_bytes()).expect("send");
            }
            Step::Done(_) => return socket,
            Step::Failed(answer) => panic!("{user}: {answer}"),
            Step::Nothing => {}
        }
    }
}

/// Sends an INVITE for `user@REALM` and returns the final answer.
fn invite(board: &Switchboard, user: &str) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let request = format!(
        "INVITE sip:{user}@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKinv{user};rport\r\nMax-Forwards: 70\r\nFrom: <sip:caller@{REALM}>;tag=caller\r\nTo: <sip:{user}@{REALM}>\r\nCall-ID: invite-{user}-{port}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    socket
        .send_to(request.as_bytes(), ("127.0.0.1", board.sip_port))
        .expect("send");
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, _) = socket.recv_from(&mut buf).expect("an answer to the INVITE");
        let answer = String::from_utf8_lossy(&buf[..len]).into_owned();
        if !answer.starts_with("SIP/2.0 1") {
            return answer;
        }
    }
}

fn contacts(message: &str) -> Vec<String> {
    message
        .lines()
        .filter_map(|line| line.strip_prefix("Contact:"))
        .map(|value| value.trim().to_owned())
        .collect()
}

#[test]
fn a_user_with_three_devices_is_redirected_to_all_three_by_q() {
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "0")]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    let account = created(&board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&json!({"data": {"name": "Fork", "realm": REALM}}).to_string()),
    ));
    let user = |username: &str| {
        created(&board.api(
            &token,
            "PUT",
            &format!("/v2/accounts/{account}/users"),
            Some(
                &json!({"data": {"first_name": username, "last_name": "Test", "username": username}})
                    .to_string(),
            ),
        ))
    };
    let alice = user("alice");
    let bob = user("bob");
    let device = |name: &str, owner: &str| {
        created(&board.api(
            &token,
            "PUT",
            &format!("/v2/accounts/{account}/devices"),
            Some(
                &json!({"data": {"name": name, "owner_id": owner, "sip": {"username": name, "password": format!("{name}-secret")}}})
                    .to_string(),
            ),
        ))
    };
    device("alice-desk", &alice);
    device("alice-soft", &alice);
    device("alice-cell", &alice);
    device("bob-desk", &bob);

    // Registered out of q order: the answer is in q order regardless.
    let _cell = register(&board, "alice-cell", "0.1");
    let _desk = register(&board, "alice-desk", "1.0");
    let _soft = register(&board, "alice-soft", "0.5");

    let response = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{account}/users/{alice}/location"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let rows = response.json["data"].as_array().expect("rows");
    let names: Vec<&str> = rows
        .iter()
        .map(|row| row["device_name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["alice-desk", "alice-soft", "alice-cell"],
        "{}",
        response.text
    );
    let qs: Vec<f64> = rows
        .iter()
        .map(|row| row["q"].as_f64().expect("q"))
        .collect();
    assert_eq!(qs, [1.0, 0.5, 0.1]);
    assert!(rows.iter().all(|row| row["transport"] == "udp"));

    for target in ["alice", "alice-soft"] {
        let answer = invite(&board, target);
        assert!(
            answer.starts_with("SIP/2.0 302 Moved Temporarily"),
            "{answer}"
        );
        let listed = contacts(&answer);
        assert_eq!(listed.len(), 3, "{answer}");
        for (contact, (name, q)) in listed.iter().zip([
            ("alice-desk", "1.0"),
            ("alice-soft", "0.5"),
            ("alice-cell", "0.1"),
        ]) {
            assert!(
                contact.starts_with(&format!("<sip:{name}@127.0.0.1:")),
                "{answer}"
            );
            assert!(contact.ends_with(&format!(">;q={q}")), "{answer}");
        }
    }

    // Bob owns a device that never registered; nobody is unknown: 404 both.
    assert!(invite(&board, "bob").starts_with("SIP/2.0 404 "));
    assert!(invite(&board, "nobody").starts_with("SIP/2.0 404 "));
    let response = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{account}/users/{bob}/location"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["data"], json!([]));
}
