//! A load client for the stream transports (used by `bench/transports.sh`, never by tests):
//! opens N TLS or WSS connections, registers one device per connection with digest MD5,
//! holds them open (so the caller can measure the server's memory per connection), then sends
//! refresh REGISTERs back to back on every connection for a while and reports the rate.
//!
//! ```text
//! stream_load --server 127.0.0.1:5061 --transport tls|wss --ca server.crt --realm R \
//!             --prefix load --password secret-pass --connections N --hold SECS --seconds SECS
//! ```
//! Devices `{prefix}0 .. {prefix}{N-1}` must exist with that password. Prints `key=value` lines.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use md5::{Digest, Md5};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

struct Options {
    server: SocketAddr,
    wss: bool,
    ca: String,
    realm: String,
    prefix: String,
    password: String,
    connections: usize,
    hold: u64,
    seconds: u64,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str, default: &str| -> String {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    Options {
        server: get("--server", "127.0.0.1:5061")
            .parse()
            .expect("--server HOST:PORT"),
        wss: get("--transport", "tls") == "wss",
        ca: get("--ca", "server.crt"),
        realm: get("--realm", "load.test"),
        prefix: get("--prefix", "load"),
        password: get("--password", "secret-pass"),
        connections: get("--connections", "100")
            .parse()
            .expect("--connections N"),
        hold: get("--hold", "5").parse().expect("--hold SECS"),
        seconds: get("--seconds", "10").parse().expect("--seconds SECS"),
    }
}

enum Conn {
    Tls(Box<TlsStream<TcpStream>>, Vec<u8>),
    Ws(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

impl Conn {
    async fn send(&mut self, text: String) -> std::io::Result<()> {
        match self {
            Conn::Tls(stream, _) => stream.write_all(text.as_bytes()).await,
            Conn::Ws(socket) => socket
                .send(Message::text(text))
                .await
                .map_err(std::io::Error::other),
        }
    }

    /// The next SIP message (CRLF keepalives skipped).
    async fn recv(&mut self) -> std::io::Result<String> {
        match self {
            Conn::Tls(stream, buf) => loop {
                if let Some(message) = take_message(buf) {
                    return Ok(message);
                }
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            },
            Conn::Ws(socket) => loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                    Some(Ok(Message::Binary(bytes))) => {
                        return Ok(String::from_utf8_lossy(&bytes).into_owned());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(std::io::Error::other(error)),
                    None => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                }
            },
        }
    }
}

fn take_message(buf: &mut Vec<u8>) -> Option<String> {
    while buf.first().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
        buf.remove(0);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = header(&head, "Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < end + length {
        return None;
    }
    let message: Vec<u8> = buf.drain(..end + length).collect();
    Some(String::from_utf8_lossy(&message).into_owned())
}

fn header<'m>(message: &'m str, name: &str) -> Option<&'m str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[start..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?.to_owned(),
        None => rest.split([',', ' ']).next()?.to_owned(),
    })
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One registered device on one connection.
struct Phone {
    conn: Conn,
    user: String,
    password: String,
    realm: String,
    token: &'static str,
    call_id: String,
    cseq: u32,
    nonce: Option<(String, String)>,
    nc: u32,
}

impl Phone {
    fn request(&mut self) -> String {
        self.cseq += 1;
        let authorization = match &self.nonce {
            Some((realm, nonce)) => {
                self.nc += 1;
                let nc = format!("{:08x}", self.nc);
                let uri = format!("sip:{}", self.realm);
                let ha1 = md5_hex(&format!("{}:{realm}:{}", self.user, self.password));
                let ha2 = md5_hex(&format!("REGISTER:{uri}"));
                let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"));
                format!(
                    "Authorization: Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"0a4f113b\"\r\n",
                    self.user
                )
            }
            None => String::new(),
        };
        let (user, realm, token, call_id, cseq) = (
            &self.user,
            &self.realm,
            self.token,
            &self.call_id,
            self.cseq,
        );
        format!(
            "REGISTER sip:{realm} SIP/2.0\r\nVia: SIP/2.0/{token} load.invalid;branch=z9hG4bK{call_id}x{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{realm}>;tag=l\r\nTo: <sip:{user}@{realm}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@load.invalid;transport={}>\r\nExpires: 3600\r\n{authorization}Content-Length: 0\r\n\r\n",
            token.to_ascii_lowercase()
        )
    }

    /// One REGISTER to its 200 (answering a 401 once).
    async fn register(&mut self) -> std::io::Result<bool> {
        let request = self.request();
        self.conn.send(request).await?;
        for _ in 0..4 {
            let message = self.conn.recv().await?;
            if message.starts_with("SIP/2.0 200 ") {
                return Ok(true);
            }
            if message.starts_with("SIP/2.0 401 ") {
                let challenge = message
                    .lines()
                    .filter_map(|line| line.strip_prefix("WWW-Authenticate:"))
                    .find(|v| !v.contains("SHA-256"))
                    .unwrap_or_default();
                let realm = param(challenge, "realm").unwrap_or_default();
                let nonce = param(challenge, "nonce").unwrap_or_default();
                self.nonce = Some((realm, nonce));
                self.nc = 0;
                let request = self.request();
                self.conn.send(request).await?;
            } else if message.starts_with("OPTIONS ") || message.starts_with("NOTIFY ") {
                continue;
            } else if !message.starts_with("SIP/2.0 1") {
                return Ok(false);
            }
        }
        Ok(false)
    }
}

async fn connect(options: &Options, tls: &tokio_rustls::TlsConnector, index: usize) -> Phone {
    let tcp = TcpStream::connect(options.server).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let stream = tls.connect(name, tcp).await.expect("tls handshake");
    let (conn, token) = if options.wss {
        let mut request = format!("wss://localhost:{}/", options.server.port())
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("upgrade");
        (Conn::Ws(Box::new(socket)), "WSS")
    } else {
        (Conn::Tls(Box::new(stream), Vec::new()), "TLS")
    };
    Phone {
        conn,
        user: format!("{}{index}", options.prefix),
        password: options.password.clone(),
        realm: options.realm.clone(),
        token,
        call_id: format!("load-{index}-{}", std::process::id()),
        cseq: 0,
        nonce: None,
        nc: 0,
    }
}

#[tokio::main]
async fn main() {
    let options = Arc::new(options());
    let ca = CertificateDer::from_pem_file(&options.ca).expect("--ca PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));

    // Phase 1: connect and register every device (at most 200 handshakes at once).
    let started = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for index in 0..options.connections {
        let (options, tls, permits) = (options.clone(), tls.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let mut phone = connect(&options, &tls, index).await;
            let ok = phone.register().await.unwrap_or(false);
            (phone, ok)
        }));
    }
    let mut phones = Vec::new();
    let mut failed = 0usize;
    for task in tasks {
        let (phone, ok) = task.await.expect("task");
        if !ok {
            failed += 1;
        }
        phones.push(phone);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("connections={}", phones.len());
    println!("initial_failures={failed}");
    println!(
        "connect_and_register_per_s={:.0}",
        phones.len() as f64 / elapsed.max(f64::EPSILON)
    );
    println!("ready=1");
    tokio::time::sleep(Duration::from_secs(options.hold)).await;

    // Phase 2: refresh REGISTERs back to back on every connection.
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let mut tasks = Vec::new();
    for mut phone in phones {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match phone.register().await {
                    Ok(true) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            phone
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let total = done.load(Ordering::Relaxed);
    println!("refreshes={total}");
    println!(
        "refresh_per_s={:.0}",
        total as f64 / options.seconds.max(1) as f64
    );
}
