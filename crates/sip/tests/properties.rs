//! Property tests: no input panics (arbitrary bytes, SIP-flavoured noise, mutated RFC 4475
//! messages), and structured messages survive serialize → parse → write → parse.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use switchboard_sip::{Contacts, HeaderName, Method, parse, unfold, unquote};

fn torture_cases() -> &'static [common::Case] {
    static CASES: OnceLock<Vec<common::Case>> = OnceLock::new();
    CASES.get_or_init(common::cases)
}

const SIP_ALPHABET: &[u8] = b"SIP/2.0 :;,<>\"\\@[]=?%\r\n\r\n\t vVlLmMiI0123456789sipbranch=tag";

fn sip_noise(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(SIP_ALPHABET.to_vec()), 0..max)
}

/// One edit of a byte buffer: overwrite, insert, delete a run, duplicate a run, or truncate.
#[derive(Debug, Clone)]
struct Mutation {
    kind: u8,
    position: usize,
    byte: u8,
    span: usize,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        0..5u8,
        any::<usize>(),
        prop_oneof![any::<u8>(), proptest::sample::select(SIP_ALPHABET.to_vec())],
        0..24usize,
    )
        .prop_map(|(kind, position, byte, span)| Mutation {
            kind,
            position,
            byte,
            span,
        })
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        bytes.push(mutation.byte);
        return;
    }
    let position = mutation.position % bytes.len();
    let end = (position + mutation.span).min(bytes.len());
    match mutation.kind {
        0 => bytes[position] = mutation.byte,
        1 => bytes.insert(position, mutation.byte),
        2 => {
            bytes.drain(position..end);
        }
        3 => {
            let run: Vec<u8> = bytes[position..end].to_vec();
            bytes.splice(position..position, run);
        }
        _ => bytes.truncate(position),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        common::exercise(&bytes);
    }

    #[test]
    fn sip_flavoured_noise_never_panics(noise in sip_noise(600)) {
        let mut bytes = b"REGISTER sip:a@b SIP/2.0\r\nVia: ".to_vec();
        bytes.extend_from_slice(&noise);
        common::exercise(&bytes);
        common::exercise(&noise);
    }

    #[test]
    fn mutated_torture_messages_never_panic(index in any::<usize>(), mutations in proptest::collection::vec(mutation(), 1..10)) {
        let cases = torture_cases();
        let mut bytes = cases[index % cases.len()].bytes.clone();
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        common::exercise(&bytes);
    }
}

#[derive(Debug, Clone)]
struct Contact {
    user: String,
    host: String,
    port: Option<u16>,
    expires: Option<u32>,
}

#[derive(Debug, Clone)]
struct Generated {
    method: &'static str,
    request_user: String,
    request_host: String,
    branches: Vec<String>,
    vias_on_one_line: bool,
    display: Option<String>,
    from_user: String,
    from_tag: String,
    to_host: String,
    call_id: String,
    cseq: u32,
    contacts: Vec<Contact>,
    expires: Option<u32>,
    max_forwards: Option<u8>,
    extra: Vec<(String, Vec<String>)>,
    body: Vec<u8>,
    compact: bool,
    fold: bool,
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,8}){0,2}",
        any::<[u8; 4]>().prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}")),
        "\\[2001:db8::[0-9a-f]{1,4}\\]",
    ]
}

fn user() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.+-]{1,12}"
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,12}"
}

fn contact() -> impl Strategy<Value = Contact> {
    (
        user(),
        host(),
        proptest::option::of(1..=u16::MAX),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(user, host, port, expires)| Contact {
            user,
            host,
            port,
            expires,
        })
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        (
            proptest::sample::select(vec!["REGISTER", "INVITE", "OPTIONS", "BYE", "X-NEW.METHOD"]),
            user(),
            host(),
            proptest::collection::vec(token(), 1..4),
            any::<bool>(),
            proptest::option::of("[A-Za-z0-9 \"\\\\]{0,12}"),
            user(),
            token(),
            host(),
        ),
        (
            "[A-Za-z0-9.!%*_+`'~()<>:/?{}-]{1,20}(@[a-z0-9.]{1,12})?",
            any::<u32>(),
            proptest::collection::vec(contact(), 0..4),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u8>()),
            proptest::collection::vec(
                (
                    "X-[A-Za-z0-9-]{1,10}",
                    proptest::collection::vec(token(), 1..4),
                ),
                0..4,
            ),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (
                    method,
                    request_user,
                    request_host,
                    branches,
                    vias_on_one_line,
                    display,
                    from_user,
                    from_tag,
                    to_host,
                ),
                (call_id, cseq, contacts, expires, max_forwards, extra, body, compact, fold),
            )| Generated {
                method,
                request_user,
                request_host,
                branches,
                vias_on_one_line,
                display,
                from_user,
                from_tag,
                to_host,
                call_id,
                cseq,
                contacts,
                expires,
                max_forwards,
                extra,
                body,
                compact,
                fold,
            },
        )
}

fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

impl Generated {
    fn name<'n>(&self, long: &'n str, short: &'n str) -> &'n str {
        if self.compact { short } else { long }
    }

    /// The separator between list elements and words: folded or not.
    fn space(&self) -> &'static str {
        if self.fold { "\r\n  " } else { " " }
    }

    fn serialize(&self) -> Vec<u8> {
        let mut text = format!(
            "{} sip:{}@{} SIP/2.0\r\n",
            self.method, self.request_user, self.request_host
        );
        let vias: Vec<String> = self
            .branches
            .iter()
            .map(|branch| format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch}"))
            .collect();
        if self.vias_on_one_line {
            text += &format!(
                "{}: {}\r\n",
                self.name("Via", "v"),
                vias.join(&format!(",{}", self.space()))
            );
        } else {
            for via in &vias {
                text += &format!("{}: {via}\r\n", self.name("Via", "v"));
            }
        }
        let display = self
            .display
            .as_deref()
            .map(|d| format!("{} ", quote(d)))
            .unwrap_or_default();
        text += &format!(
            "{}: {display}<sip:{}@example.com>;tag={}\r\n",
            self.name("From", "f"),
            self.from_user,
            self.from_tag
        );
        text += &format!(
            "{}:{}sip:{}@{}\r\n",
            self.name("To", "t"),
            self.space(),
            self.from_user,
            self.to_host
        );
        text += &format!("{}: {}\r\n", self.name("Call-ID", "i"), self.call_id);
        text += &format!("CSeq: {}{}{}\r\n", self.cseq, self.space(), self.method);
        let contacts: Vec<String> = self
            .contacts
            .iter()
            .map(|c| {
                let port = c.port.map(|p| format!(":{p}")).unwrap_or_default();
                let expires = c
                    .expires
                    .map(|e| format!(";expires={e}"))
                    .unwrap_or_default();
                format!("<sip:{}@{}{port};transport=udp>{expires}", c.user, c.host)
            })
            .collect();
        if !contacts.is_empty() {
            text += &format!(
                "{}: {}\r\n",
                self.name("Contact", "m"),
                contacts.join(&format!(",{}", self.space()))
            );
        }
        if let Some(expires) = self.expires {
            text += &format!("Expires: {expires}\r\n");
        }
        if let Some(hops) = self.max_forwards {
            text += &format!("Max-Forwards: {hops}\r\n");
        }
        for (name, words) in &self.extra {
            text += &format!("{name}: {}\r\n", words.join(self.space()));
        }
        text += &format!(
            "{}: {}\r\n\r\n",
            self.name("Content-Length", "l"),
            self.body.len()
        );
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

proptest! {
    #[test]
    fn structured_messages_parse_to_what_was_written(generated in generated()) {
        let bytes = generated.serialize();
        let message = parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        let request = message.request().expect("request");
        prop_assert_eq!(request.method, Method::parse(generated.method));
        let request_uri = format!("sip:{}@{}", generated.request_user, generated.request_host);
        prop_assert_eq!(request.uri, request_uri.as_str());
        let branches: Vec<String> = message.vias().map(|via| via.expect("Via").branch().expect("branch").to_owned()).collect();
        let expected: Vec<String> = generated.branches.iter().map(|b| format!("z9hG4bK{b}")).collect();
        prop_assert_eq!(branches, expected);
        let from = message.from().expect("From");
        prop_assert_eq!(from.tag(), Some(generated.from_tag.as_str()));
        prop_assert_eq!(from.uri.user, Some(generated.from_user.as_str()));
        prop_assert_eq!(from.display.map(|d| unquote(d).into_owned()), generated.display.clone());
        let to = message.to().expect("To");
        prop_assert_eq!(to.uri.host, generated.to_host.as_str());
        prop_assert_eq!(message.call_id(), Ok(generated.call_id.as_str()));
        let cseq = message.cseq().expect("CSeq");
        prop_assert_eq!((cseq.number, cseq.method), (generated.cseq, Method::parse(generated.method)));
        match message.contacts().expect("Contact") {
            Contacts::None => prop_assert!(generated.contacts.is_empty()),
            Contacts::Star => prop_assert!(false, "unexpected *"),
            Contacts::List(contacts) => {
                let parsed: Vec<_> = contacts.map(|c| c.expect("contact")).collect();
                prop_assert_eq!(parsed.len(), generated.contacts.len());
                for (parsed, contact) in parsed.iter().zip(&generated.contacts) {
                    prop_assert_eq!(parsed.uri.user, Some(contact.user.as_str()));
                    prop_assert_eq!(parsed.uri.host_port(), (contact.host.as_str(), contact.port));
                    prop_assert_eq!(parsed.uri.param("transport"), Some(Some("udp")));
                    prop_assert_eq!(parsed.expires(), Ok(contact.expires));
                }
            }
        }
        prop_assert_eq!(message.expires(), Ok(generated.expires));
        prop_assert_eq!(message.max_forwards(), Ok(generated.max_forwards));
        for (name, words) in &generated.extra {
            let values: Vec<String> = message
                .headers()
                .iter()
                .filter(|h| h.name == HeaderName::parse(name))
                .map(|h| unfold(h.value).replace("  ", " "))
                .collect();
            prop_assert!(values.contains(&words.join(" ")), "{:?} not in {:?}", words, values);
        }
        prop_assert_eq!(message.body, generated.body.as_slice());
        common::assert_round_trip(&message);
    }
}
