//! Helpers shared by the integration tests: the RFC 4475 fixtures, the registrar-level verdict
//! model, a "call everything" exerciser and the round-trip comparison.
#![allow(dead_code)]

use std::path::PathBuf;

use switchboard_sip::{
    Contacts, Frame, HeaderName, Message, Method, ResponseWriter, StartLine, frame_stream, parse,
    unfold, validate_register, validate_request,
};

/// Option tags the registrar will support.
pub const SUPPORTED: &[&str] = &["path", "outbound", "gruu"];

pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("SWITCHBOARD_SHARED_DIR") {
        Some(shared) => PathBuf::from(shared).join("fixtures/rfc4475"),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/rfc4475"
        )),
    }
}

/// One row of `manifest.tsv`.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: String,
    pub validity: String,
    pub expect: String,
    pub expect_tcp: String,
    pub checks: String,
    pub bytes: Vec<u8>,
}

pub fn cases() -> Vec<Case> {
    let dir = fixture_dir();
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv"))
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.join("manifest.tsv").display()));
    manifest
        .lines()
        .filter(|line| {
            !line.starts_with('#') && !line.starts_with("file\t") && !line.trim().is_empty()
        })
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            let column = |index: usize| columns.get(index).copied().unwrap_or_default().to_owned();
            let file = column(0);
            let bytes = std::fs::read(dir.join(&file))
                .unwrap_or_else(|error| panic!("reading {file}: {error}"));
            let expect = column(3);
            let expect_tcp = match column(4).as_str() {
                "=" => expect.clone(),
                other => other.to_owned(),
            };
            Case {
                file,
                validity: column(2),
                expect,
                expect_tcp,
                checks: column(6),
                bytes,
            }
        })
        .collect()
}

/// What the server ends up doing with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed every check; the registrar answers later (never with 400).
    Accept,
    Status(u16),
    Drop,
}

/// The registrar-level answer to a parsed request: the generic checks, the REGISTER checks, and
/// 501 for a method it does not implement.
pub fn request_outcome(message: &Message<'_>) -> Outcome {
    let Some(request) = message.request() else {
        return Outcome::Drop;
    };
    if let Err(rejection) = validate_request(message, SUPPORTED) {
        if rejection.status == 420 {
            assert!(
                !rejection.unsupported.is_empty(),
                "420 without Unsupported tags"
            );
        }
        return Outcome::Status(rejection.status);
    }
    if request.method == Method::Register
        && let Err(rejection) = validate_register(message)
    {
        return Outcome::Status(rejection.status);
    }
    if matches!(request.method, Method::Other(_)) {
        return Outcome::Status(501);
    }
    Outcome::Accept
}

pub fn datagram_outcome(bytes: &[u8]) -> Outcome {
    match parse(bytes) {
        Err(error) => error.status().map_or(Outcome::Drop, Outcome::Status),
        Ok(message) => request_outcome(&message),
    }
}

/// The outcome for the first message on a stream carrying `bytes` (keepalives skipped; a stream
/// that never completes a message is closed, i.e. dropped).
pub fn stream_outcome(bytes: &[u8]) -> Outcome {
    let mut rest = bytes;
    loop {
        match frame_stream(rest) {
            Ok(Frame::Incomplete) => return Outcome::Drop,
            Ok(Frame::Keepalive { len, .. }) => rest = rest.get(len..).unwrap_or_default(),
            Ok(Frame::Message { len }) => {
                return datagram_outcome(rest.get(..len).unwrap_or_default());
            }
            Err(error) => return error.status().map_or(Outcome::Drop, Outcome::Status),
        }
    }
}

fn pattern_matches(pattern: &str, outcome: &Outcome) -> bool {
    match (pattern, outcome) {
        ("ok", Outcome::Accept) => true,
        ("ok", Outcome::Status(status)) => *status != 400,
        ("drop", Outcome::Drop) => true,
        (class, Outcome::Status(status)) if class.len() == 3 && class.ends_with("xx") => class
            .as_bytes()
            .first()
            .is_some_and(|digit| u16::from(digit - b'0') == status / 100),
        (code, Outcome::Status(status)) => code.parse::<u16>().is_ok_and(|code| code == *status),
        _ => false,
    }
}

/// Whether `outcome` is allowed by an expectation such as `400,~4xx,-2xx`.
pub fn allowed(expect: &str, outcome: &Outcome) -> bool {
    let items: Vec<&str> = expect.split(',').map(str::trim).collect();
    let forbidden = items
        .iter()
        .filter_map(|item| item.strip_prefix('-'))
        .any(|item| pattern_matches(item, outcome));
    let permitted = items
        .iter()
        .filter(|item| !item.starts_with('-'))
        .any(|item| pattern_matches(item.trim_start_matches('~'), outcome));
    permitted && !forbidden
}

/// Calls every accessor, the validator, the writer and the response writer; none may panic.
pub fn exercise(bytes: &[u8]) {
    let _ = frame_stream(bytes);
    let Ok(message) = parse(bytes) else {
        return;
    };
    let _ = message.call_id();
    let _ = message.cseq();
    let _ = message.from().map(|from| (from.tag(), from.param("x")));
    let _ = message.to().map(|to| (to.tag(), to.uri.param("user")));
    let _ = message
        .top_via()
        .map(|via| (via.branch(), via.rport(), via.received()));
    let _ = message.vias().count();
    if let Ok(Contacts::List(contacts)) = message.contacts() {
        for contact in contacts.flatten() {
            let _ = (
                contact.expires(),
                contact.param("q"),
                contact.uri.host_port(),
            );
        }
    }
    let _ = message.expires();
    let _ = message.max_forwards();
    for credentials in message
        .authorizations(false)
        .chain(message.authorizations(true))
    {
        let _ = (credentials.param("nonce"), credentials.digest());
    }
    for header in message.headers() {
        let _ = message.header_count(header.name);
        let _ = message.list_values(header.name).count();
        let _ = unfold(header.value);
    }
    let _ = validate_request(&message, SUPPORTED);
    let _ = validate_register(&message);
    if let Some(request) = message.request() {
        let _ = switchboard_sip::Uri::parse(request.uri);
        let mut out = Vec::new();
        ResponseWriter::new(
            &mut out,
            200,
            "OK",
            &message,
            "192.0.2.1:5060".parse().expect("addr"),
            Some("t"),
        )
        .finish();
        let _ = parse(&out).expect("our own response parses");
    }
    assert_round_trip(&message);
}

/// parse → write → parse gives the same start line, header names and (unfolded) values, and
/// body; `write` adds a Content-Length where the message had none.
pub fn assert_round_trip(message: &Message<'_>) {
    let mut out = Vec::new();
    message.write(&mut out);
    let reparsed = parse(&out)
        .unwrap_or_else(|error| panic!("written form does not parse: {error}\n{message:?}"));
    assert_eq!(reparsed.start, message.start, "start line");
    assert_eq!(reparsed.body, message.body, "body");
    let mut reparsed_headers = reparsed.headers().iter();
    for header in message.headers() {
        let again = reparsed_headers
            .next()
            .expect("header missing after round trip");
        assert_eq!(again.name, header.name);
        assert_eq!(
            again.value,
            unfold(header.value),
            "value of {}",
            header.name
        );
    }
    let extra: Vec<_> = reparsed_headers.collect();
    if message.content_length().is_some() {
        assert!(extra.is_empty(), "unexpected extra headers {extra:?}");
    } else {
        assert_eq!(extra.len(), 1);
        assert!(
            extra
                .iter()
                .all(|header| header.name == HeaderName::ContentLength)
        );
    }
    assert!(matches!(
        (&reparsed.start, &message.start),
        (StartLine::Request(_), StartLine::Request(_))
            | (StartLine::Response(_), StartLine::Response(_))
    ));
}
