//! Keepalives end to end (issue #4): the server pings every binding with OPTIONS over its own
//! flow. A UDP phone that answers stays reachable (the round trip is logged); when it stops
//! answering an `offline` event is recorded after the configured failures, and `online` when
//! it answers again. A TCP phone whose connection closes is `offline` at once, and `online`
//! again when it re-registers. The phones are raw sockets, authenticated by address.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{REALM, Switchboard};
use switchboard_model::{Device, DeviceSip, Event, EventKind, SipAuthMethod, new_id};
use switchboard_store::{Directory, EventQuery, History};

/// A device authenticated by 127.0.0.1, created before the server starts.
fn ip_device(board: &Switchboard, username: &str) -> String {
    let device_id = new_id();
    let store = board.store();
    store
        .create_device(&Device {
            id: device_id.clone(),
            account_id: board.account_id.clone(),
            name: username.to_owned(),
            enabled: true,
            device_type: "sip_device".to_owned(),
            owner_id: None,
            sip: DeviceSip {
                method: SipAuthMethod::Ip,
                username: Some(username.to_owned()),
                password: None,
                ip: Some("127.0.0.1".to_owned()),
                expire_seconds: None,
            },
            document: serde_json::json!({"name": username, "sip": {"method": "ip", "ip": "127.0.0.1", "username": username}}),
            created_ms: 0,
            modified_ms: 0,
        })
        .expect("device");
    store.close();
    device_id
}

fn events(board: &Switchboard, device_id: &str, kind: EventKind) -> Vec<Event> {
    let store = board.store();
    let events = store
        .events(&EventQuery {
            device_id: Some(device_id.to_owned()),
            kinds: vec![kind],
            ..Default::default()
        })
        .expect("events");
    store.close();
    events
}

/// Polls the history every 100 ms until `count` events of `kind` exist, at most `within`.
fn wait_for(
    board: &Switchboard,
    device_id: &str,
    kind: EventKind,
    count: usize,
    within: Duration,
) -> Vec<Event> {
    let deadline = Instant::now() + within;
    loop {
        let found = events(board, device_id, kind);
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind:?} event #{count} within {within:?}:\n{}",
            board.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn header<'m>(message: &'m str, name: &str) -> Option<&'m str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A 200 OK echoing the request's transaction headers.
fn ok_for(request: &str) -> Option<String> {
    Some(format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=phone\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(request, "Via")?,
        header(request, "From")?,
        header(request, "To")?,
        header(request, "Call-ID")?,
        header(request, "CSeq")?,
    ))
}

fn register(user: &str, transport: &str, port: u16, contact: &str, call_id: &str) -> String {
    format!(
        "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK{call_id};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{REALM}>;tag=t1\r\nTo: <sip:{user}@{REALM}>\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_udp_phone_that_stops_answering_goes_offline_and_comes_back_online() {
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "1"),
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_FAILURES", "2"),
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_TIMEOUT_MS", "400"),
        (
            "SWITCHBOARD_LOG",
            "info,switchboard_runtime::keepalive=debug",
        ),
    ]);
    let device_id = ip_device(&board, "udpdesk");
    board.start();

    let phone = UdpSocket::bind("127.0.0.1:0").expect("bind");
    phone
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let port = phone.local_addr().expect("addr").port();
    phone
        .connect(("127.0.0.1", board.sip_port))
        .expect("connect");
    let contact = format!("sip:udpdesk@127.0.0.1:{port}");
    phone
        .send(register("udpdesk", "UDP", port, &contact, "ka-udp-1").as_bytes())
        .expect("register");
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no answer to the REGISTER");
        if let Ok(len) = phone.recv(&mut buf) {
            let answer = String::from_utf8_lossy(&buf[..len]).into_owned();
            if answer.starts_with("SIP/2.0 200 ") {
                break;
            }
            assert!(answer.starts_with("OPTIONS "), "{answer}");
        }
    }

    // The phone answers OPTIONS while `answering` is set.
    let answering = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let (answering, answered, stop) = (answering.clone(), answered.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                let Ok(len) = phone.recv(&mut buf) else {
                    continue;
                };
                let request = String::from_utf8_lossy(&buf[..len]).into_owned();
                if !request.starts_with("OPTIONS ") || !answering.load(Ordering::Relaxed) {
                    continue;
                }
                assert_eq!(header(&request, "CSeq"), Some("1 OPTIONS"), "{request}");
                if let Some(ok) = ok_for(&request) {
                    let _ = phone.send(ok.as_bytes());
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // Answered pings: reachable, round trip recorded.
    let deadline = Instant::now() + Duration::from_secs(8);
    while answered.load(Ordering::Relaxed) < 2 || !board.log().contains("keepalive answered") {
        assert!(
            Instant::now() < deadline,
            "pings not answered: {}",
            board.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = board.log();
    let line = log
        .lines()
        .find(|line| line.contains("keepalive answered"))
        .expect("logged");
    assert!(
        line.contains("rtt_ms=") && line.contains("status=200"),
        "{line}"
    );
    assert!(events(&board, &device_id, EventKind::Offline).is_empty());

    // Silence: offline after two missed pings (interval 1 s, timeout 400 ms).
    answering.store(false, Ordering::Relaxed);
    let offline = wait_for(
        &board,
        &device_id,
        EventKind::Offline,
        1,
        Duration::from_secs(8),
    );
    assert_eq!(
        offline[0].reason.as_deref(),
        Some("keepalive: 2 failures in a row")
    );
    assert_eq!(
        offline[0].binding_key.as_deref(),
        Some(&*format!("c:{contact}"))
    );
    assert!(events(&board, &device_id, EventKind::Online).is_empty());

    // Answering again: online, with the round trip in the event.
    answering.store(true, Ordering::Relaxed);
    let online = wait_for(
        &board,
        &device_id,
        EventKind::Online,
        1,
        Duration::from_secs(8),
    );
    let reason = online[0].reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("keepalive answered 200 in "), "{reason}");
    assert!(online[0].id > offline[0].id);
    // Exactly one offline for the one outage.
    assert_eq!(events(&board, &device_id, EventKind::Offline).len(), 1);

    stop.store(true, Ordering::Relaxed);
    responder.join().expect("responder");
}

/// Reads one SIP message from a stream (skipping keepalive CRLFs).
fn read_message(reader: &mut BufReader<TcpStream>) -> String {
    let mut message = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).expect("read a line");
        assert!(read > 0, "connection closed mid-message: {message}");
        if line == "\r\n" && message.is_empty() {
            continue;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        message.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).expect("read the body");
    message
}

fn register_over_tcp(board: &Switchboard, call_id: &str) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", board.sip_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = stream.local_addr().expect("local").port();
    let mut writer = stream.try_clone().expect("clone");
    // The same Contact from every connection: a new connection refreshes the same binding.
    let contact = "sip:tcpdesk@127.0.0.1:5999;transport=tcp";
    writer
        .write_all(register("tcpdesk", "TCP", port, contact, call_id).as_bytes())
        .expect("register");
    let mut reader = BufReader::new(stream);
    let answer = read_message(&mut reader);
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    writer
}

#[test]
fn a_tcp_phone_whose_connection_closes_is_offline_at_once() {
    // A long interval: the pinger does not reach the binding during the test, so what marks
    // it offline is the connection's close.
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "300")]);
    let device_id = ip_device(&board, "tcpdesk");
    board.start();

    let connection = register_over_tcp(&board, "ka-tcp-1");
    assert!(events(&board, &device_id, EventKind::Offline).is_empty());
    let closed = Instant::now();
    drop(connection);
    let offline = wait_for(
        &board,
        &device_id,
        EventKind::Offline,
        1,
        Duration::from_secs(3),
    );
    assert!(closed.elapsed() < Duration::from_secs(3));
    assert_eq!(
        offline[0].reason.as_deref(),
        Some("keepalive: connection closed")
    );
    assert_eq!(
        offline[0].transport,
        Some(switchboard_model::Transport::Tcp)
    );

    // Re-registering the same contact on a new connection brings it back.
    let _again = register_over_tcp(&board, "ka-tcp-2");
    let online = wait_for(
        &board,
        &device_id,
        EventKind::Online,
        1,
        Duration::from_secs(3),
    );
    assert_eq!(online[0].reason.as_deref(), Some("re-registered"));
    assert_eq!(events(&board, &device_id, EventKind::Offline).len(), 1);
}

#[test]
fn an_idle_connection_without_registrations_is_closed_and_a_registered_one_is_kept() {
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_SECURITY_IDLE_CONNECTION_TIMEOUT", "1"),
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "300"),
    ]);
    let device_id = ip_device(&board, "tcpdesk");
    board.start();

    // Silent and unregistered: closed after about a second.
    let mut idle = TcpStream::connect(("127.0.0.1", board.sip_port)).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let opened = Instant::now();
    let mut byte = [0u8; 1];
    let read = idle.read(&mut byte);
    assert!(
        matches!(read, Ok(0)) || read.is_err() && opened.elapsed() < Duration::from_secs(5),
        "{read:?}"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(900) && opened.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        opened.elapsed()
    );

    // Registered over its connection: still served well past the idle limit.
    let mut registered = register_over_tcp(&board, "idle-tcp-1");
    std::thread::sleep(Duration::from_millis(2500));
    registered.write_all(b"\r\n\r\n").expect("ping");
    registered
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut pong = [0u8; 2];
    registered.read_exact(&mut pong).expect("pong");
    assert_eq!(&pong, b"\r\n");
    assert!(events(&board, &device_id, EventKind::Offline).is_empty());
}
