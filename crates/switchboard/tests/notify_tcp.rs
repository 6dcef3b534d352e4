//! NOTIFY over TCP: a phone registers over a TCP connection (authenticated by its address) and
//! the sync NOTIFY arrives on that same connection; its 200 makes the API answer 202. SIPp
//! cannot do this in one process, so the phone is a raw socket.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Switchboard;
use switchboard_model::{Device, DeviceSip, SipAuthMethod, new_id};
use switchboard_store::Directory;

/// Reads one SIP message (headers, then Content-Length octets of body).
fn read_message(reader: &mut BufReader<TcpStream>) -> String {
    let mut message = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).expect("read a line");
        assert!(read > 0, "connection closed mid-message: {message}");
        if line == "\r\n" && message.is_empty() {
            continue; // keepalive CRLFs
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
    message.push_str(&String::from_utf8_lossy(&body));
    message
}

fn header<'m>(message: &'m str, name: &str) -> Option<&'m str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn a_sync_notify_travels_over_the_phones_own_tcp_connection() {
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_REGISTRAR_NOTIFY_TIMEOUT_MS", "3000")]);
    let account = board.cli(&["account", "create", "--name", "Tcp", "--realm", "tcp.test"]);
    let account_id = account["id"].as_str().expect("id").to_owned();
    let device_id = new_id();
    {
        let store = board.store();
        store
            .create_device(&Device {
                id: device_id.clone(),
                account_id: account_id.clone(),
                name: "desk".to_owned(),
                enabled: true,
                device_type: "sip_device".to_owned(),
                owner_id: None,
                sip: DeviceSip {
                    method: SipAuthMethod::Ip,
                    username: Some("desk".to_owned()),
                    password: None,
                    ip: Some("127.0.0.1".to_owned()),
                    expire_seconds: None,
                },
                document: serde_json::json!({"name": "desk", "sip": {"method": "ip", "ip": "127.0.0.1", "username": "desk"}}),
                created_ms: 0,
                modified_ms: 0,
            })
            .expect("device");
        store.close();
    }
    board.start();

    let stream = TcpStream::connect(("127.0.0.1", board.sip_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let local = stream.local_addr().expect("local").port();
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let register = format!(
        "REGISTER sip:tcp.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{local};branch=z9hG4bKtcpreg1\r\nMax-Forwards: 70\r\nFrom: <sip:desk@tcp.test>;tag=t1\r\nTo: <sip:desk@tcp.test>\r\nCall-ID: tcp-notify-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:desk@127.0.0.1:{local};transport=tcp>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    writer.write_all(register.as_bytes()).expect("register");
    let answer = read_message(&mut reader);
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");

    // The API waits for the phone's answer: ask from another thread.
    let (token, _) = board.login(&board.bootstrap_key());
    let port = board.http_port;
    let path = format!("/v2/accounts/{account_id}/devices/{device_id}/sync?reboot=true");
    let api = std::thread::spawn(move || {
        common::http_request(
            port,
            "POST",
            &path,
            &[("X-Auth-Token", token.as_str())],
            None,
        )
    });

    let notify = read_message(&mut reader);
    assert!(notify.starts_with("NOTIFY sip:desk@127.0.0.1:"), "{notify}");
    assert_eq!(
        header(&notify, "Event"),
        Some("check-sync;reboot=true"),
        "{notify}"
    );
    let via = header(&notify, "Via").expect("Via");
    assert!(via.starts_with("SIP/2.0/TCP "), "over TCP: {via}");
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=phone\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(&notify, "From").expect("From"),
        header(&notify, "To").expect("To"),
        header(&notify, "Call-ID").expect("Call-ID"),
        header(&notify, "CSeq").expect("CSeq"),
    );
    writer.write_all(ok.as_bytes()).expect("answer");

    let response = api.join().expect("api thread");
    assert_eq!(response.status, 202, "{}", response.text);
    assert_eq!(
        response.json["data"], "sync request sent",
        "{}",
        response.text
    );
}
