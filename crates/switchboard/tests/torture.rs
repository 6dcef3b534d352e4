//! RFC 4475 on the wire: every torture message is sent to the real binary over UDP and over
//! TCP, and what comes back (a status, or nothing) must be what `manifest.tsv` allows. The
//! REGISTER cases hit real devices (authenticated by source address), so their 200s are
//! checked too. Also: OPTIONS, unknown methods, and retransmissions answered from the
//! transaction.

mod common;

#[path = "../../sip/tests/common/mod.rs"]
mod rfc4475;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::Switchboard;
use rfc4475::{Case, Outcome, allowed, cases};
use switchboard_model::{Device, DeviceSip, SipAuthMethod, new_id};
use switchboard_store::{Directory, EventQuery, History};

const WAIT: Duration = Duration::from_millis(700);

/// A server with the realm `example.com` (the torture messages' domain) and the users they
/// register, authenticated by source address 127.0.0.1.
fn torture_board() -> Switchboard {
    let mut board = Switchboard::prepare(&[]);
    let account = board.cli(&[
        "account",
        "create",
        "--name",
        "Example",
        "--realm",
        "example.com",
    ]);
    let account_id = account["id"].as_str().expect("id").to_owned();
    let store = board.store();
    for user in ["watson", "user", "j.user", "null-%00-null"] {
        let device = Device {
            id: new_id(),
            account_id: account_id.clone(),
            name: user.to_owned(),
            enabled: true,
            device_type: "sip_device".to_owned(),
            owner_id: None,
            sip: DeviceSip {
                method: SipAuthMethod::Ip,
                username: Some(user.to_owned()),
                password: None,
                ip: Some("127.0.0.1".to_owned()),
                expire_seconds: None,
            },
            document: serde_json::json!({"name": user, "sip": {"method": "ip", "ip": "127.0.0.1"}}),
            created_ms: 0,
            modified_ms: 0,
        };
        store.create_device(&device).expect("create ip device");
    }
    store.close();
    board.start();
    board
}

/// Points the first Via's sent-by at `port` on 127.0.0.1, so a UDP answer comes back to the
/// test (the torture messages name hosts like `host5.example.com`). The parser's own slices
/// say where the sent-by is, folding and all; a message it cannot parse is sent unchanged.
fn rewrite_via(bytes: &[u8], port: u16) -> Vec<u8> {
    let Ok(message) = switchboard_sip::parse(bytes) else {
        return rewrite_via_line(bytes, port);
    };
    let Some(via) = message.top_via().ok() else {
        return rewrite_via_line(bytes, port);
    };
    let start = via.host.as_ptr() as usize - bytes.as_ptr() as usize;
    let mut end = start + via.host.len();
    if via.port.is_some() {
        // ":port" follows the host, possibly with white space around the colon.
        while end < bytes.len() && !matches!(bytes[end], b';' | b',' | b'\r' | b'\n') {
            end += 1;
        }
        while end > start && bytes[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
    }
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(format!("127.0.0.1:{port}").as_bytes());
    out.extend_from_slice(&bytes[end..]);
    out
}

/// The same for messages the parser refuses: the first `Via:` line, unfolded forms only.
fn rewrite_via_line(bytes: &[u8], port: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 32);
    let mut done = false;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let lower = line.to_ascii_lowercase();
        if done || !(lower.starts_with(b"via: sip/2.0/") || lower.starts_with(b"v: sip/2.0/")) {
            out.extend_from_slice(line);
            continue;
        }
        let start = line.iter().position(|&b| b == b' ').map_or(0, |i| i + 1);
        let start = start
            + line[start..]
                .iter()
                .position(|&b| b == b' ')
                .map_or(0, |i| i + 1);
        let end = start
            + line[start..]
                .iter()
                .position(|&b| matches!(b, b';' | b',' | b' ' | b'\r' | b'\n'))
                .unwrap_or(line.len() - start);
        out.extend_from_slice(&line[..start]);
        out.extend_from_slice(format!("127.0.0.1:{port}").as_bytes());
        out.extend_from_slice(&line[end..]);
        done = true;
    }
    out
}

/// `test.dat` has no Via at all: the runner puts one after the request line.
fn prepend_via(bytes: &[u8], port: u16) -> Vec<u8> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    let mut out = bytes[..end].to_vec();
    out.extend_from_slice(
        format!("Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKprepended\r\n").as_bytes(),
    );
    out.extend_from_slice(&bytes[end..]);
    out
}

fn prepared(case: &Case, via_mode: &str, port: u16) -> Vec<u8> {
    match via_mode {
        "rewrite" => rewrite_via(&case.bytes, port),
        "prepend" => prepend_via(&case.bytes, port),
        _ => case.bytes.clone(),
    }
}

fn via_mode(case: &Case) -> String {
    let manifest =
        std::fs::read_to_string(rfc4475::fixture_dir().join("manifest.tsv")).expect("manifest");
    manifest
        .lines()
        .find(|line| line.split('\t').next() == Some(case.file.as_str()))
        .and_then(|line| line.split('\t').nth(5))
        .unwrap_or("rewrite")
        .to_owned()
}

fn status_of(response: &str) -> Option<u16> {
    response
        .strip_prefix("SIP/2.0 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

fn outcome_of(response: Option<&str>) -> Outcome {
    match response.and_then(status_of) {
        Some(status) => Outcome::Status(status),
        None => Outcome::Drop,
    }
}

/// The manifest's `checks` column, on the response actually received.
fn check(case: &Case, response: Option<&str>) -> Result<(), String> {
    let Some(response) = response else {
        return Ok(());
    };
    let status = status_of(response).unwrap_or(0);
    let headers: Vec<&str> = response.split("\r\n").collect();
    let contact_uris: Vec<&str> = headers
        .iter()
        .filter(|h| h.to_ascii_lowercase().starts_with("contact:"))
        .filter_map(|h| h.split('<').nth(1).and_then(|rest| rest.split('>').next()))
        .collect();
    for item in case.checks.split_whitespace().filter(|c| *c != "-") {
        let (what, value) = item.split_once('=').unwrap_or((item, ""));
        let (what, code) = match what.split_once('@') {
            Some((what, code)) => (what, code.parse::<u16>().ok()),
            None => (what, None),
        };
        if code.is_some_and(|code| code != status) {
            continue;
        }
        let parts: Vec<&str> = value.split('|').collect();
        let ok = match what {
            "hdr" => headers.iter().any(|h| {
                h.to_ascii_lowercase()
                    .starts_with(&format!("{}:", value.to_ascii_lowercase()))
            }),
            "cseq" => headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("cseq:") && h.contains(value)),
            "contact-uri-has" => contact_uris
                .iter()
                .any(|uri| parts.iter().all(|p| uri.contains(p))),
            "contact-uri-lacks" => contact_uris
                .iter()
                .any(|uri| uri.contains(parts[0]) && !parts[1..].iter().any(|p| uri.contains(p))),
            other => return Err(format!("unknown check {other}")),
        };
        if !ok {
            return Err(format!("check {item} failed on:\n{response}"));
        }
    }
    Ok(())
}

fn udp_exchange(socket: &UdpSocket, target: u16, bytes: &[u8]) -> Option<String> {
    socket.send_to(bytes, ("127.0.0.1", target)).expect("send");
    let mut buf = vec![0u8; 65_536];
    match socket.recv_from(&mut buf) {
        Ok((len, _)) => Some(String::from_utf8_lossy(&buf[..len]).into_owned()),
        Err(_) => None,
    }
}

fn tcp_exchange(target: u16, bytes: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", target)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut buf = vec![0u8; 65_536];
    let mut got = Vec::new();
    // Read until one whole response (headers end) or timeout/close.
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn every_torture_message_gets_the_answer_the_manifest_allows() {
    let board = torture_board();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 50, "the whole folder is covered");
    for case in &all {
        let mode = via_mode(case);
        let bytes = prepared(case, &mode, port);
        let udp = udp_exchange(&socket, board.sip_port, &bytes);
        let outcome = outcome_of(udp.as_deref());
        if !allowed(&case.expect, &outcome) {
            failures.push(format!(
                "{} over UDP: got {outcome:?}, manifest allows {}",
                case.file, case.expect
            ));
        } else if let Err(error) = check(case, udp.as_deref()) {
            failures.push(format!("{} over UDP: {error}", case.file));
        }
        let tcp = tcp_exchange(board.sip_port, &bytes);
        let outcome = outcome_of(tcp.as_deref());
        if !allowed(&case.expect_tcp, &outcome) {
            failures.push(format!(
                "{} over TCP: got {outcome:?}, manifest allows {}",
                case.file, case.expect_tcp
            ));
        }
        // Drain a late UDP answer so it is not taken for the next case's.
        while udp.is_some() && udp_exchange_late(&socket).is_some() {}
    }
    assert!(
        failures.is_empty(),
        "{} cases off the manifest:\n{}\n--- server log ---\n{}",
        failures.len(),
        failures.join("\n"),
        board.log()
    );
}

fn udp_exchange_late(socket: &UdpSocket) -> Option<()> {
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .ok()?;
    let mut buf = vec![0u8; 65_536];
    let got = socket.recv_from(&mut buf).ok().map(|_| ());
    socket.set_read_timeout(Some(WAIT)).ok()?;
    got
}

fn request(method: &str, port: u16, branch: &str, extra: &str) -> String {
    format!(
        "{method} sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:watson@example.com>;tag=1\r\nTo: <sip:watson@example.com>\r\nCall-ID: {branch}@test\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn options_unknown_methods_and_retransmissions() {
    let board = torture_board();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let port = socket.local_addr().expect("addr").port();

    let options = udp_exchange(
        &socket,
        board.sip_port,
        request("OPTIONS", port, "opt1", "").as_bytes(),
    )
    .expect("OPTIONS is answered");
    assert!(options.starts_with("SIP/2.0 200 "), "{options}");
    assert!(
        options.contains("Allow: INVITE, ACK, CANCEL, REGISTER, OPTIONS"),
        "{options}"
    );
    assert!(
        options.contains(";received=127.0.0.1") || options.contains("rport="),
        "RFC 3581: {options}"
    );

    let unknown = udp_exchange(
        &socket,
        board.sip_port,
        request("FROBNICATE", port, "frob1", "").as_bytes(),
    )
    .expect("unknown method answered");
    assert!(unknown.starts_with("SIP/2.0 501 "), "{unknown}");
    assert!(unknown.contains("Allow:"), "{unknown}");
    // INVITE is redirected (302 to the user's contacts, tests/location.rs); a Request-URI
    // naming no user has none: 404. Methods of a dialog we never take part in get 405.
    let invite = udp_exchange(
        &socket,
        board.sip_port,
        request("INVITE", port, "inv1", "").as_bytes(),
    )
    .expect("INVITE answered");
    assert!(invite.starts_with("SIP/2.0 404 "), "{invite}");
    let bye = udp_exchange(
        &socket,
        board.sip_port,
        request("BYE", port, "bye1", "").as_bytes(),
    )
    .expect("BYE answered");
    assert!(bye.starts_with("SIP/2.0 405 "), "{bye}");
    assert!(bye.contains("Allow:"), "{bye}");

    // A REGISTER (watson authenticates by address) sent three times: one binding, one event,
    // the same answer every time.
    let register = request(
        "REGISTER",
        port,
        "reg1",
        "Contact: <sip:watson@127.0.0.1:5999>\r\nExpires: 600\r\n",
    );
    let first = udp_exchange(&socket, board.sip_port, register.as_bytes()).expect("answered");
    assert!(first.starts_with("SIP/2.0 200 "), "{first}");
    for _ in 0..2 {
        let again = udp_exchange(&socket, board.sip_port, register.as_bytes()).expect("answered");
        assert!(again.starts_with("SIP/2.0 200 "), "{again}");
        let tag = |r: &str| r.lines().find(|l| l.starts_with("To:")).map(str::to_owned);
        assert_eq!(tag(&again), tag(&first), "same To tag on a retransmission");
        assert!(
            again.contains("<sip:watson@127.0.0.1:5999>;expires="),
            "{again}"
        );
    }
    let store = board.store();
    let events = store
        .events(&EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .expect("events");
    store.close();
    assert_eq!(events.len(), 1, "processed once: {events:?}");
}

/// Reads from `stream` until `count` complete responses (by their blank line) have arrived or
/// the wait runs out.
fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while String::from_utf8_lossy(&got).matches("\r\n\r\n").count() < count
        && std::time::Instant::now() < deadline
    {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got)
        .split_inclusive("\r\n\r\n")
        .map(str::to_owned)
        .collect()
}

#[test]
fn tcp_framing_keepalives_and_limits() {
    let board = torture_board();
    let options = |branch: &str| request("OPTIONS", 5060, branch, "").replace("UDP", "TCP");

    // RFC 5626 keepalive: CRLFCRLF is answered with CRLF, and the connection stays usable.
    let mut stream = TcpStream::connect(("127.0.0.1", board.sip_port)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(b"\r\n\r\n").expect("ping");
    let mut pong = [0u8; 2];
    stream.read_exact(&mut pong).expect("pong");
    assert_eq!(&pong, b"\r\n");

    // One message split across writes, then two messages in one write.
    let first = options("split1");
    let (head, tail) = first.split_at(first.len() / 2);
    stream.write_all(head.as_bytes()).expect("write");
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(tail.as_bytes()).expect("write");
    let answers = read_responses(&mut stream, 1);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].starts_with("SIP/2.0 200 "), "{answers:?}");
    let pair = format!("{}{}", options("pair1"), options("pair2"));
    stream.write_all(pair.as_bytes()).expect("write");
    let answers = read_responses(&mut stream, 2);
    assert_eq!(
        answers.len(),
        2,
        "both pipelined requests answered: {answers:?}"
    );
    assert!(answers.iter().all(|a| a.starts_with("SIP/2.0 200 ")));
    assert!(
        answers.iter().any(|a| a.contains("pair1")) && answers.iter().any(|a| a.contains("pair2"))
    );

    // A message larger than 64 KiB: refused (513) or the connection closed, never served.
    let mut big = TcpStream::connect(("127.0.0.1", board.sip_port)).expect("connect");
    big.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let padding = "x".repeat(70_000);
    let oversized = options("big1").replace(
        "Content-Length: 0\r\n",
        &format!("X-Padding: {padding}\r\nContent-Length: 0\r\n"),
    );
    let _ = big.write_all(oversized.as_bytes());
    let answers = read_responses(&mut big, 1);
    assert!(
        answers.is_empty() || answers[0].starts_with("SIP/2.0 513 "),
        "an oversized message is never served: {answers:?}"
    );

    // The server is still healthy for others.
    let mut again = TcpStream::connect(("127.0.0.1", board.sip_port)).expect("connect");
    again.set_read_timeout(Some(WAIT)).expect("timeout");
    again
        .write_all(options("after1").as_bytes())
        .expect("write");
    let answers = read_responses(&mut again, 1);
    assert!(
        answers
            .first()
            .is_some_and(|a| a.starts_with("SIP/2.0 200 ")),
        "{answers:?}"
    );
}
