//! SIP over WebSocket end to end (RFC 7118, issue #5): a small tokio-tungstenite client
//! behaves like a browser SIP stack (JsSIP, SIP.js): it offers the `sip` subprotocol, uses a
//! `.invalid` Via host and Contact, sends one SIP message per frame and authenticates with
//! digest MD5. Over `ws` and over `wss` (a certificate generated here) it registers, answers
//! the keepalive OPTIONS that come back over its socket (never to the `.invalid` host), and
//! its device is `offline` within a second of the socket closing. An upgrade that does not
//! offer `sip` is refused with HTTP 400.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Switchboard;
use common::phone::{Registration, Step, header, ok_for};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const REALM: &str = "ws.acme.test";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket SIP client on one socket.
struct WsPhone {
    socket: WebSocketStream<Box<dyn Io>>,
}

impl WsPhone {
    /// Opens `ws://` (no `trusted`) or `wss://` (TLS trusting only `trusted`), offering the
    /// `sip` subprotocol; checks the server answered it.
    async fn connect(port: u16, trusted: Option<&CertificateDer<'static>>) -> WsPhone {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (stream, url): (Box<dyn Io>, String) = match trusted {
            None => (Box::new(tcp), format!("ws://127.0.0.1:{port}/")),
            Some(trusted) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(trusted.clone()).expect("root");
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let name = ServerName::try_from("localhost").expect("name");
                let tls = connector.connect(name, tcp).await.expect("tls handshake");
                (Box::new(tls), format!("wss://localhost:{port}/"))
            }
        };
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
        let (socket, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("websocket upgrade");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("sip")
        );
        WsPhone { socket }
    }

    async fn send(&mut self, message: &str) {
        self.socket
            .send(Message::text(message.to_owned()))
            .await
            .expect("send frame");
    }

    /// The next SIP message (one frame) within `within`.
    async fn recv(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??;
            match frame.ok()? {
                Message::Text(text) => return Some(text.as_str().to_owned()),
                Message::Binary(bytes) => {
                    return Some(String::from_utf8_lossy(&bytes).into_owned());
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Registers (challenge and all) within 5 s; the 200.
    async fn register(&mut self, registration: &mut Registration) -> String {
        let request = registration.request(None);
        self.send(&request).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Some(message) = self.recv(Duration::from_millis(500)).await else {
                continue;
            };
            match registration.step(&message) {
                Step::Send(next) => self.send(&next).await,
                Step::Done(ok) => return ok,
                Step::Failed(answer) => panic!("REGISTER refused: {answer}"),
                Step::Nothing => {}
            }
        }
        panic!("{} did not register over WebSocket", registration.user);
    }

    async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A sub-account with one digest device; `(token, account, device)`.
fn provision(board: &Switchboard, user: &str) -> (String, String, String) {
    let (token, admin) = board.login(&board.bootstrap_key());
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&json!({"data": {"name": "Web", "realm": REALM}}).to_string()),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let account = response.json["data"]["id"].as_str().expect("id").to_owned();
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{account}/devices"),
        Some(
            &json!({"data": {"name": user, "device_type": "webrtc", "sip": {"username": user, "password": format!("{user}-secret")}}})
                .to_string(),
        ),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let device = response.json["data"]["id"].as_str().expect("id").to_owned();
    (token, account, device)
}

fn registration(
    board: &Switchboard,
    token: &str,
    account: &str,
    device: &str,
) -> serde_json::Value {
    let response = board.api(
        token,
        "GET",
        &format!("/v2/accounts/{account}/devices/{device}/registration"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text);
    response.json
}

/// Registers a browser-like client over `ws` or `wss`, sees a keepalive OPTIONS over the
/// socket, closes it and sees the device offline within a second.
fn browser_client_over(secure: bool) {
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "1"),
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_TIMEOUT_MS", "900"),
    ]);
    let port = common::free_port();
    let (scheme, token_name, trusted) = if secure {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
        let cert = board.data_dir().join("ws.crt");
        let key = board.data_dir().join("ws.key");
        std::fs::write(&cert, certified.cert.pem()).expect("cert");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
        board.start_with(&[
            "--sip-listen".to_owned(),
            format!("wss:127.0.0.1:{port}"),
            "--tls-cert".to_owned(),
            cert.display().to_string(),
            "--tls-key".to_owned(),
            key.display().to_string(),
        ]);
        ("wss", "WSS", Some(certified.cert.der().clone()))
    } else {
        board.start_with(&["--sip-listen".to_owned(), format!("ws:127.0.0.1:{port}")]);
        ("ws", "WS", None)
    };
    let user = format!("web{scheme}");
    let (token, account, device) = provision(&board, &user);
    let rt = runtime();
    let mut phone = rt.block_on(WsPhone::connect(port, trusted.as_ref()));
    let host = "df7jal23ls0d.invalid";
    let mut sip = Registration::new(
        &user,
        &format!("{user}-secret"),
        REALM,
        token_name,
        host,
        &format!("<sip:r5h8a9k1@{host};transport={scheme}>"),
    );
    sip.extra = "User-Agent: JsSIP 3.10.1\r\n".to_owned();
    let ok = rt.block_on(phone.register(&mut sip));
    assert!(
        header(&ok, "Via")
            .is_some_and(|via| via.starts_with(&format!("SIP/2.0/{token_name} {host}"))),
        "{ok}"
    );
    assert!(
        header(&ok, "Contact").is_some_and(|c| c.contains(&format!("@{host};transport={scheme}"))),
        "{ok}"
    );
    let view = registration(&board, &token, &account, &device);
    assert_eq!(view["status"], "registered", "{view}");
    assert_eq!(view["transportProtocol"], token_name, "{view}");

    // The keepalive OPTIONS arrives over this socket, addressed to the .invalid contact.
    let options = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no OPTIONS over {scheme}");
            if let Some(message) = phone.recv(Duration::from_millis(200)).await
                && message.starts_with("OPTIONS ")
            {
                phone.send(&ok_for(&message)).await;
                return message;
            }
        }
    });
    assert!(
        options.starts_with(&format!(
            "OPTIONS sip:r5h8a9k1@{host};transport={scheme} SIP/2.0"
        )),
        "{options}"
    );
    assert!(
        header(&options, "Via")
            .is_some_and(|via| via.starts_with(&format!("SIP/2.0/{token_name} "))),
        "{options}"
    );

    // The browser tab closes: offline within a second.
    let closed_at = Instant::now();
    rt.block_on(phone.close());
    loop {
        let view = registration(&board, &token, &account, &device);
        if view["status"] == "offline" {
            assert_eq!(view["reachable"], false, "{view}");
            break;
        }
        assert!(
            closed_at.elapsed() < Duration::from_secs(1),
            "not offline within 1 s: {view}\n{}",
            board.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_browser_client_registers_over_ws_gets_keepalives_on_its_socket_and_is_offline_when_it_closes()
{
    browser_client_over(false);
}

#[test]
fn a_browser_client_registers_over_wss_gets_keepalives_on_its_socket_and_is_offline_when_it_closes()
{
    browser_client_over(true);
}

#[test]
fn an_upgrade_without_the_sip_subprotocol_is_refused_with_400() {
    let mut board = Switchboard::prepare(&[]);
    let port = common::free_port();
    board.start_with(&["--sip-listen".to_owned(), format!("ws:127.0.0.1:{port}")]);
    let upgrade = |protocol: Option<&str>| {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let protocol = protocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
        )
        .expect("send");
        let mut answer = vec![0u8; 4096];
        let len = stream.read(&mut answer).expect("answer");
        String::from_utf8_lossy(&answer[..len]).into_owned()
    };
    let refused = upgrade(None);
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let refused = upgrade(Some("chat"));
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let accepted = upgrade(Some("sip"));
    assert!(accepted.starts_with("HTTP/1.1 101"), "{accepted}");
    assert!(
        accepted
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol: sip"),
        "{accepted}"
    );
}

#[test]
fn websocket_connections_obey_the_per_address_cap_and_the_idle_limit() {
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_SECURITY_MAX_CONNECTIONS_PER_IP", "2"),
        ("SWITCHBOARD_SECURITY_IDLE_CONNECTION_TIMEOUT", "1"),
    ]);
    let port = common::free_port();
    board.start_with(&["--sip-listen".to_owned(), format!("ws:127.0.0.1:{port}")]);
    let connect = || {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
    };
    // Two connections are held; the third from the same address is closed at once.
    let (mut first, _second) = (connect(), connect());
    std::thread::sleep(Duration::from_millis(200));
    let mut third = connect();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    assert!(matches!(third.read(&mut byte), Ok(0) | Err(_)));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // The held ones never upgrade nor register: closed after the idle limit.
    let started = Instant::now();
    assert!(matches!(first.read(&mut byte), Ok(0) | Err(_)));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
