//! A SIP user agent's REGISTER side, independent of the transport it is carried over (TLS,
//! WebSocket): requests with digest MD5 (qop=auth) answers to a challenge, answers to the
//! server's OPTIONS and NOTIFY, and Content-Length framing for byte streams.

use md5::{Digest, Md5};

/// A header's value (first occurrence, name case-insensitive).
pub fn header<'m>(message: &'m str, name: &str) -> Option<&'m str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// A parameter of a digest challenge (`realm="…"`).
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[start..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?.to_owned(),
        None => rest.split([',', ' ']).next()?.to_owned(),
    })
}

/// The 200 a phone sends to a request of the server (Via, From, To, Call-ID, CSeq echoed).
pub fn ok_for(request: &str) -> String {
    format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=phone\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(request, "Via").unwrap_or_default(),
        header(request, "From").unwrap_or_default(),
        header(request, "To").unwrap_or_default(),
        header(request, "Call-ID").unwrap_or_default(),
        header(request, "CSeq").unwrap_or_default(),
    )
}

/// Takes one complete message (or a bare CRLF keepalive, returned as "") off the front of a
/// stream buffer; `None` while it is incomplete.
pub fn take_message(buf: &mut Vec<u8>) -> Option<String> {
    let crlfs = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    if crlfs > 0 {
        buf.drain(..crlfs);
        return Some(String::new());
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = header(&head, "Content-Length")
        .or_else(|| header(&head, "l"))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    if buf.len() < end + length {
        return None;
    }
    let message: Vec<u8> = buf.drain(..end + length).collect();
    Some(String::from_utf8_lossy(&message).into_owned())
}

/// One registering user agent: its identity and the state of its REGISTER dialog.
#[derive(Debug, Clone)]
pub struct Registration {
    pub user: String,
    pub password: String,
    pub realm: String,
    /// The Via transport token: `TLS`, `WS`, `WSS`.
    pub transport: String,
    /// The Via sent-by (`127.0.0.1:5555`, `df7jal23ls0d.invalid`).
    pub sent_by: String,
    /// The Contact header value (with its parameters).
    pub contact: String,
    /// Extra header lines, each ending in CRLF (`Supported: outbound\r\n`).
    pub extra: String,
    pub expires: u32,
    pub call_id: String,
    pub cseq: u32,
    nc: u32,
}

impl Registration {
    pub fn new(
        user: &str,
        password: &str,
        realm: &str,
        transport: &str,
        sent_by: &str,
        contact: &str,
    ) -> Registration {
        Registration {
            user: user.to_owned(),
            password: password.to_owned(),
            realm: realm.to_owned(),
            transport: transport.to_owned(),
            sent_by: sent_by.to_owned(),
            contact: contact.to_owned(),
            extra: String::new(),
            expires: 600,
            call_id: format!("{user}-{}-{}", std::process::id(), rand_suffix()),
            cseq: 0,
            nc: 0,
        }
    }

    /// The next REGISTER (a new CSeq), with `authorization` when answering a challenge.
    pub fn request(&mut self, authorization: Option<&str>) -> String {
        self.cseq += 1;
        let authorization = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:{realm} SIP/2.0\r\nVia: SIP/2.0/{transport} {sent_by};branch=z9hG4bK{call_id}x{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{realm}>;tag=phone\r\nTo: <sip:{user}@{realm}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\n{extra}{authorization}Content-Length: 0\r\n\r\n",
            realm = self.realm,
            transport = self.transport,
            sent_by = self.sent_by,
            call_id = self.call_id,
            cseq = self.cseq,
            user = self.user,
            contact = self.contact,
            expires = self.expires,
            extra = self.extra,
        )
    }

    /// The Authorization value answering the MD5 challenge of a 401.
    pub fn authorization(&mut self, response: &str) -> String {
        let challenge = response
            .lines()
            .filter_map(|line| line.strip_prefix("WWW-Authenticate:"))
            .find(|value| !value.contains("SHA-256"))
            .expect("an MD5 challenge")
            .trim()
            .to_owned();
        let realm = challenge_param(&challenge, "realm").expect("realm");
        let nonce = challenge_param(&challenge, "nonce").expect("nonce");
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let cnonce = "0a4f113b";
        let uri = format!("sip:{}", self.realm);
        let ha1 = md5_hex(&format!("{}:{realm}:{}", self.user, self.password));
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let digest = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{digest}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
            self.user
        )
    }

    /// What to send after receiving `message` while registering: the authenticated REGISTER
    /// after a 401, a 200 for the server's OPTIONS or NOTIFY. `Done` on the 200 to a REGISTER.
    pub fn step(&mut self, message: &str) -> Step {
        if message.starts_with("OPTIONS ") || message.starts_with("NOTIFY ") {
            return Step::Send(ok_for(message));
        }
        if message.starts_with("SIP/2.0 401 ") {
            let authorization = self.authorization(message);
            return Step::Send(self.request(Some(&authorization)));
        }
        if header(message, "CSeq").is_some_and(|cseq| cseq.ends_with("REGISTER")) {
            if message.starts_with("SIP/2.0 200 ") {
                return Step::Done(message.to_owned());
            }
            if !message.starts_with("SIP/2.0 1") {
                return Step::Failed(message.to_owned());
            }
        }
        Step::Nothing
    }
}

/// See [`Registration::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Send(String),
    Done(String),
    Failed(String),
    Nothing,
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
