//! The registrar's hot path over a SIPp REGISTER: parse, validate, read everything REGISTER
//! processing needs, and write the response. Shared by `tests/zero_alloc.rs` and
//! `benches/parse.rs` so that the benchmark measures exactly what is proved allocation-free.

use switchboard_sip::{Contacts, HeaderName, ResponseWriter, parse, validated_request};

pub const SIPP_REGISTER: &[u8] = include_bytes!("sipp_register.sip");

/// What the registrar extracts; kept so the optimiser cannot drop the work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Extracted<'a> {
    pub call_id: &'a str,
    pub cseq: u32,
    pub from_tag: Option<&'a str>,
    pub aor_user: Option<&'a str>,
    pub aor_host: &'a str,
    pub branch: Option<&'a str>,
    pub rport: bool,
    pub contact_count: usize,
    pub contact_host: &'a str,
    pub contact_expires: Option<u32>,
    pub expires: Option<u32>,
    pub max_forwards: Option<u8>,
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub digest_uri: &'a str,
    pub response: &'a str,
    pub algorithm: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Parse + validate + extract. `None` if anything on the way fails.
pub fn extract(buf: &[u8]) -> Option<Extracted<'_>> {
    let Ok(message) = parse(buf) else {
        return None;
    };
    let valid = validated_request(&message, &["path", "outbound", "gruu"]).ok()?;
    let mut extracted = Extracted {
        call_id: valid.call_id,
        cseq: valid.cseq.number,
        from_tag: valid.from.tag(),
        aor_user: valid.to.uri.user,
        aor_host: valid.to.uri.host,
        branch: valid.top_via.branch(),
        rport: valid.top_via.rport().is_some(),
        expires: message.expires().ok()?,
        max_forwards: valid.max_forwards,
        user_agent: message.header(HeaderName::UserAgent),
        ..Extracted::default()
    };
    if let Contacts::List(contacts) = message.contacts().ok()? {
        for contact in contacts {
            let contact = contact.ok()?;
            extracted.contact_count += 1;
            extracted.contact_host = contact.uri.host;
            extracted.contact_expires = contact.expires().ok()?;
            let _ = contact.param("+sip.instance");
            let _ = contact.param("reg-id");
        }
    }
    for credentials in message.authorizations(false) {
        if let Some(digest) = credentials.digest() {
            extracted.username = digest.username;
            extracted.realm = digest.realm;
            extracted.nonce = digest.nonce;
            extracted.digest_uri = digest.uri;
            extracted.response = digest.response;
            extracted.algorithm = digest.algorithm;
        }
    }
    Some(extracted)
}

/// Writes a 200 OK for the REGISTER into `out` (reused by the caller).
pub fn respond(buf: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let message = parse(buf).ok()?;
    out.clear();
    let mut writer = ResponseWriter::new(
        out,
        200,
        "OK",
        &message,
        "127.0.0.1:5090".parse().ok()?,
        Some("a1b2c3"),
    );
    writer
        .header(
            "Contact",
            "<sip:user000001@127.0.0.1:5090;transport=UDP>;expires=3600",
        )
        .header_fmt("Expires", format_args!("{}", 3600));
    writer.finish();
    Some(())
}
