//! SIP over TLS end to end (issue #5). The server gets a self-signed certificate generated
//! here (rcgen) and a `tls:` listener; the phone is a raw rustls client trusting exactly that
//! certificate, registering with digest authentication. (Debian's sipp is built without
//! OpenSSL — `-t l1` answers "you must compile SIPp with OpenSSL" — so it cannot drive TLS.)
//!
//! Shown: the binding records transport TLS (the registration API says `TLS`); a NOTIFY goes
//! back over the phone's own connection with `Via: SIP/2.0/TLS`; closing the connection makes
//! the device `offline` at once; SIGHUP swaps the certificate for new handshakes while an
//! established connection keeps working; without a certificate the log says why TLS is off.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Switchboard;
use common::phone::{Registration, Step, header, ok_for, take_message};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::json;

const REALM: &str = "tls.acme.test";

/// A fresh self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
fn write_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("rcgen");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (cert, key, certified.cert.der().clone())
}

/// A phone on one TLS connection.
struct TlsPhone {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsPhone {
    /// Connects and completes the handshake, trusting only `trusted`.
    fn connect(port: u16, trusted: &CertificateDer<'static>) -> Result<TlsPhone, String> {
        TlsPhone::connect_as(port, trusted, None)
    }

    /// [`TlsPhone::connect`], presenting `client` (a certificate and its key) when given.
    fn connect_as(
        port: u16,
        trusted: &CertificateDer<'static>,
        client: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> Result<TlsPhone, String> {
        let mut roots = RootCertStore::empty();
        roots.add(trusted.clone()).expect("root");
        let builder = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(vec![cert], key)
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from("localhost").expect("name");
        let mut connection = ClientConnection::new(Arc::new(config), name).expect("client");
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        while connection.is_handshaking() {
            connection
                .complete_io(&mut tcp)
                .map_err(|error| error.to_string())?;
        }
        tcp.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Ok(TlsPhone {
            stream: StreamOwned::new(connection, tcp),
            buf: Vec::new(),
        })
    }

    fn local_port(&self) -> u16 {
        self.stream.sock.local_addr().expect("addr").port()
    }

    /// The certificate the server presented.
    fn server_leaf(&self) -> CertificateDer<'static> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("server certificate")
            .clone()
            .into_owned()
    }

    fn send(&mut self, message: &str) {
        self.stream.write_all(message.as_bytes()).expect("send");
        self.stream.flush().expect("flush");
    }

    /// The next SIP message within `within`; `None` on timeout or when the server closed.
    fn recv(&mut self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            while let Some(message) = take_message(&mut self.buf) {
                if !message.is_empty() {
                    return Some(message);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    /// Registers (challenge and all) within 5 s; the 200.
    fn register(&mut self, registration: &mut Registration) -> String {
        let request = registration.request(None);
        self.send(&request);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Some(message) = self.recv(Duration::from_millis(500)) else {
                continue;
            };
            match registration.step(&message) {
                Step::Send(next) => self.send(&next),
                Step::Done(ok) => return ok,
                Step::Failed(answer) => panic!("REGISTER refused: {answer}"),
                Step::Nothing => {}
            }
        }
        panic!("{} did not register over TLS", registration.user);
    }

    /// Sends close_notify and closes the socket.
    fn close(mut self) {
        self.stream.conn.send_close_notify();
        let _ = self.stream.conn.complete_io(&mut self.stream.sock);
        let _ = self.stream.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// A server with a TLS listener on `tls_port`, a sub-account with one digest device; the
/// admin token, account id and device id.
fn started(
    board: &mut Switchboard,
    tls_port: u16,
    cert: &Path,
    key: &Path,
    user: &str,
) -> (String, String, String) {
    started_with(board, tls_port, cert, key, user, &[])
}

fn started_with(
    board: &mut Switchboard,
    tls_port: u16,
    cert: &Path,
    key: &Path,
    user: &str,
    extra: &[String],
) -> (String, String, String) {
    let mut args = vec![
        "--sip-listen".to_owned(),
        format!("tls:127.0.0.1:{tls_port}"),
        "--tls-cert".to_owned(),
        cert.display().to_string(),
        "--tls-key".to_owned(),
        key.display().to_string(),
    ];
    args.extend_from_slice(extra);
    board.start_with(&args);
    let (token, admin) = board.login(&board.bootstrap_key());
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&json!({"data": {"name": "Secure", "realm": REALM}}).to_string()),
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
    (token, account, device)
}

fn registration_for(user: &str, phone: &TlsPhone) -> Registration {
    let port = phone.local_port();
    Registration::new(
        user,
        &format!("{user}-secret"),
        REALM,
        "TLS",
        &format!("127.0.0.1:{port}"),
        &format!("<sip:{user}@127.0.0.1:{port};transport=tls>"),
    )
}

/// Polls the device's registration until `status`, at most `within`; returns it.
fn wait_for_status(
    board: &Switchboard,
    token: &str,
    path: &str,
    status: &str,
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let response = board.api(token, "GET", path, None);
        assert_eq!(response.status, 200, "{}", response.text);
        if response.json["status"] == status {
            return response.json;
        }
        assert!(
            Instant::now() < deadline,
            "device not {status} within {within:?}: {}\n{}",
            response.text,
            board.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_phone_registers_over_tls_gets_a_notify_on_its_connection_and_is_offline_when_it_closes() {
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "0")]);
    let (cert, key, der) = write_certificate(board.data_dir(), "server");
    let tls_port = common::free_port();
    let (token, account, device) = started(&mut board, tls_port, &cert, &key, "tlsdesk");
    assert!(
        board.log().contains("tls certificate loaded"),
        "{}",
        board.log()
    );

    let mut phone = TlsPhone::connect(tls_port, &der).expect("handshake");
    let mut registration = registration_for("tlsdesk", &phone);
    let ok = phone.register(&mut registration);
    assert!(
        header(&ok, "Via").is_some_and(|via| via.starts_with("SIP/2.0/TLS ")),
        "{ok}"
    );
    let path = format!("/v2/accounts/{account}/devices/{device}/registration");
    let view = wait_for_status(&board, &token, &path, "registered", Duration::from_secs(2));
    assert_eq!(view["transportProtocol"], "TLS", "{view}");
    assert_eq!(view["port"], phone.local_port(), "{view}");

    // The NOTIFY of POST …/sync comes over this very connection; the phone answers it.
    let sync = format!("/v2/accounts/{account}/devices/{device}/sync");
    let notify = std::thread::scope(|scope| {
        let request = scope.spawn(|| board.api(&token, "POST", &sync, None));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut notify = None;
        while notify.is_none() {
            assert!(Instant::now() < deadline, "no NOTIFY over TLS");
            if let Some(message) = phone.recv(Duration::from_millis(200))
                && message.starts_with("NOTIFY ")
            {
                phone.send(&ok_for(&message));
                notify = Some(message);
            }
        }
        let response = request.join().expect("request thread");
        assert_eq!(response.status, 202, "{}", response.text);
        notify.expect("notify")
    });
    assert!(
        notify.starts_with("NOTIFY sip:tlsdesk@127.0.0.1:"),
        "{notify}"
    );
    assert!(
        header(&notify, "Via").is_some_and(|via| via.starts_with("SIP/2.0/TLS ")),
        "{notify}"
    );
    assert_eq!(header(&notify, "Event"), Some("check-sync"), "{notify}");

    // The phone goes away: offline at once (well within a second), the binding kept.
    let closed_at = Instant::now();
    phone.close();
    let view = wait_for_status(&board, &token, &path, "offline", Duration::from_secs(2));
    assert!(
        closed_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        closed_at.elapsed()
    );
    assert_eq!(view["reachable"], false, "{view}");

    // A new connection re-registers: registered again, on the new port.
    let mut phone = TlsPhone::connect(tls_port, &der).expect("handshake");
    let mut registration = registration_for("tlsdesk", &phone);
    phone.register(&mut registration);
    let view = wait_for_status(&board, &token, &path, "registered", Duration::from_secs(2));
    assert_eq!(view["port"], phone.local_port(), "{view}");
}

#[test]
fn sighup_serves_a_new_certificate_to_new_connections_and_keeps_the_old_ones() {
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "0")]);
    let (cert, key, first) = write_certificate(board.data_dir(), "server");
    let tls_port = common::free_port();
    let (_token, _account, _device) = started(&mut board, tls_port, &cert, &key, "reloader");

    let mut phone = TlsPhone::connect(tls_port, &first).expect("handshake");
    assert_eq!(phone.server_leaf(), first);
    let mut registration = registration_for("reloader", &phone);
    phone.register(&mut registration);

    // New files at the same paths, then SIGHUP.
    let (new_cert, new_key, second) = write_certificate(board.data_dir(), "next");
    std::fs::copy(&new_cert, &cert).expect("copy cert");
    std::fs::copy(&new_key, &key).expect("copy key");
    let status = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(board.pid().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !board.log().contains("tls certificate reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", board.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    // The established connection still works: a refresh REGISTER is answered over it.
    let ok = phone.register(&mut registration);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");

    // New handshakes get the new certificate: a client trusting only the old one fails.
    let refused = TlsPhone::connect(tls_port, &first)
        .err()
        .expect("old cert refused");
    assert!(refused.contains("certificate"), "{refused}");
    let fresh = TlsPhone::connect(tls_port, &second).expect("new cert accepted");
    assert_eq!(fresh.server_leaf(), second);

    // A broken file on the next SIGHUP keeps the current certificate.
    std::fs::write(&key, "garbage").expect("write");
    let status = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(board.pid().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !board.log().contains("tls certificate not reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload error:\n{}",
            board.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = TlsPhone::connect(tls_port, &second).expect("still the second certificate");
    assert_eq!(again.server_leaf(), second);
    let ok = phone.register(&mut registration);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
}

#[test]
fn with_a_client_ca_only_phones_presenting_a_certificate_it_signed_get_in() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "0")]);
    let (cert, key, der) = write_certificate(board.data_dir(), "server");
    // The operator's phone CA, and a phone certificate it signed.
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let ca_file = board.data_dir().join("phones-ca.crt");
    std::fs::write(&ca_file, ca_cert.pem()).expect("write ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let phone_key = KeyPair::generate().expect("phone key");
    let phone_cert = CertificateParams::new(vec!["phone.acme.test".to_owned()])
        .expect("phone params")
        .signed_by(&phone_key, &issuer)
        .expect("phone cert");
    let phone_identity = || {
        (
            phone_cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(phone_key.serialize_der())),
        )
    };
    // A self-signed certificate the CA never saw.
    let stranger = rcgen::generate_simple_self_signed(vec!["stranger".to_owned()]).expect("rcgen");
    let stranger_identity = (
        stranger.cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            stranger.signing_key.serialize_der(),
        )),
    );

    let tls_port = common::free_port();
    started_with(
        &mut board,
        tls_port,
        &cert,
        &key,
        "certdesk",
        &["--tls-client-ca".to_owned(), ca_file.display().to_string()],
    );
    let mut phone =
        TlsPhone::connect_as(tls_port, &der, Some(phone_identity())).expect("handshake");
    let mut registration = registration_for("certdesk", &phone);
    let ok = phone.register(&mut registration);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");

    // Without a certificate, or with one the CA did not sign, nothing gets through (TLS 1.3
    // may finish the client's side of the handshake before the server's refusal arrives).
    for identity in [None, Some(stranger_identity)] {
        let refused = match TlsPhone::connect_as(tls_port, &der, identity) {
            Err(_) => true,
            Ok(mut intruder) => {
                let mut registration = registration_for("certdesk", &intruder);
                let request = registration.request(None);
                let _ = intruder.stream.write_all(request.as_bytes());
                let _ = intruder.stream.flush();
                intruder.recv(Duration::from_secs(2)).is_none()
            }
        };
        assert!(
            refused,
            "a phone without a valid client certificate got an answer"
        );
    }
}

#[test]
fn without_a_certificate_the_log_says_why_tls_is_off() {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    assert!(
        board
            .log()
            .contains("tls listener off: no certificate configured"),
        "{}",
        board.log()
    );
}
