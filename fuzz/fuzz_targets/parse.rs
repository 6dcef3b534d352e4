//! Feeds arbitrary bytes to everything in switchboard-sip that touches network data. Properties:
//! nothing panics, and a message that parses survives `write` → `parse` unchanged (start line,
//! header names, unfolded values, body). Mirrors `crates/sip/tests/common::exercise`.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::{
    frame_stream, parse, unfold, validate_register, validate_request, Contacts, HeaderName,
    ResponseWriter, Uri,
};

fuzz_target!(|data: &[u8]| {
    let _ = frame_stream(data);
    let Ok(message) = parse(data) else {
        return;
    };
    let _ = message.call_id();
    let _ = message.cseq();
    let _ = message.from().map(|from| from.tag());
    let _ = message.to().map(|to| to.uri.param("user"));
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
    }
    let _ = validate_request(&message, &["path", "outbound", "gruu"]);
    let _ = validate_register(&message);
    if let Some(request) = message.request() {
        let _ = Uri::parse(request.uri);
        let mut out = Vec::new();
        let source = "192.0.2.1:5060".parse().expect("constant address");
        ResponseWriter::new(&mut out, 200, "OK", &message, source, Some("t")).finish();
        assert!(parse(&out).is_ok(), "our own response must parse");
    }

    let mut written = Vec::new();
    message.write(&mut written);
    let reparsed = parse(&written).expect("the written form parses");
    assert_eq!(reparsed.start, message.start);
    assert_eq!(reparsed.body, message.body);
    for (again, header) in reparsed.headers().iter().zip(message.headers()) {
        assert_eq!(again.name, header.name);
        assert_eq!(again.value, unfold(header.value));
    }
    let extra = reparsed.headers().len() - message.headers().len();
    assert_eq!(extra, usize::from(message.content_length().is_none()));
    if extra == 1 {
        assert_eq!(
            reparsed.headers().last().map(|h| h.name),
            Some(HeaderName::ContentLength)
        );
    }
});
