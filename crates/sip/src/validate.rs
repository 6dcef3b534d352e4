//! The generic checks a UAS makes before method-specific processing (RFC 3261 8.2, and the
//! Proxy-Require check of 16.3 because Switchboard is the first hop its phones talk to, so no
//! proxy before it has honoured those option tags).

use crate::error::{ErrorKind, ParseError};
use crate::header::HeaderName;
use crate::message::{CSeq, Message};
use crate::method::Method;
use crate::name_addr::{Contacts, NameAddr};
use crate::uri::Uri;
use crate::via::Via;

/// The headers every request must have, parsed once by [`validated_request`], so that the
/// caller does not parse them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidRequest<'a> {
    pub method: Method<'a>,
    pub request_uri: Uri<'a>,
    pub top_via: Via<'a>,
    pub from: NameAddr<'a>,
    pub to: NameAddr<'a>,
    pub call_id: &'a str,
    pub cseq: CSeq<'a>,
    pub max_forwards: Option<u8>,
}

/// Why a request must be rejected, and with which status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection<'a> {
    pub status: u16,
    pub reason: &'static str,
    /// For 420 Bad Extension: the option tags to list in the Unsupported header.
    pub unsupported: Vec<&'a str>,
}

impl Rejection<'_> {
    fn new(status: u16, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            unsupported: Vec::new(),
        }
    }
}

impl From<ParseError> for Rejection<'_> {
    fn from(error: ParseError) -> Self {
        Self::new(error.status().unwrap_or(400), error.reason())
    }
}

/// Checks, in order: SIP/2.0 (else 505); a well-formed Request-URI (400) with a sip/sips scheme
/// (416); Via present and every value well formed; exactly one well-formed From, To, Call-ID and
/// CSeq with a 32-bit number (400); the CSeq method equal to the request method (400); at most one
/// Max-Forwards in 0..=255 (400; a missing one is tolerated); well-formed Contacts (400); and
/// every Require and Proxy-Require option tag in `supported`, compared case-insensitively (420,
/// listing the others). A response is rejected with 400: callers drop responses before this.
/// Allocates only to build a 420.
pub fn validate_request<'a>(
    message: &Message<'a>,
    supported: &[&str],
) -> Result<(), Rejection<'a>> {
    validated_request(message, supported).map(|_| ())
}

/// [`validate_request`], handing back the headers it parsed.
pub fn validated_request<'a>(
    message: &Message<'a>,
    supported: &[&str],
) -> Result<ValidRequest<'a>, Rejection<'a>> {
    let Some(request) = message.request() else {
        return Err(Rejection::new(400, "Not a Request"));
    };
    if !request.version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(Rejection::new(505, "Version Not Supported"));
    }
    let request_uri = Uri::parse(request.uri)?;
    if !request_uri.is_sip() {
        return Err(Rejection::new(416, "Unsupported URI Scheme"));
    }
    let mut vias = message.vias();
    let top_via = vias
        .next()
        .ok_or(ParseError::from(ErrorKind::MissingVia))??;
    for via in vias {
        via?;
    }
    let from = message.from()?;
    let to = message.to()?;
    let call_id = message.call_id()?;
    let cseq = message.cseq()?;
    if cseq.method != request.method {
        return Err(Rejection::new(400, "CSeq Method Mismatch"));
    }
    let max_forwards = message.max_forwards()?;
    if let Contacts::List(contacts) = message.contacts()? {
        for contact in contacts {
            contact?;
        }
    }
    check_option_tags(message, supported)?;
    Ok(ValidRequest {
        method: request.method,
        request_uri,
        top_via,
        from,
        to,
        call_id,
        cseq,
        max_forwards,
    })
}

/// RFC 3261 8.2.2.3: every option tag in Require (and, see the module docs, Proxy-Require) must
/// be supported; the others are listed for the Unsupported header of the 420.
fn check_option_tags<'a>(message: &Message<'a>, supported: &[&str]) -> Result<(), Rejection<'a>> {
    let tags = || {
        message
            .list_values(HeaderName::Require)
            .chain(message.list_values(HeaderName::ProxyRequire))
    };
    let is_unsupported = |tag: &&str| {
        !supported
            .iter()
            .any(|known| known.eq_ignore_ascii_case(tag))
    };
    let mut unsupported: Vec<&'a str> = Vec::new();
    for tag in tags() {
        if tag.is_empty() {
            return Err(Rejection::new(400, "Malformed Require"));
        }
        if is_unsupported(&tag)
            && !unsupported
                .iter()
                .any(|seen| seen.eq_ignore_ascii_case(tag))
        {
            unsupported.push(tag);
        }
    }
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(Rejection {
        status: 420,
        reason: "Bad Extension",
        unsupported,
    })
}

/// REGISTER-specific syntax on top of [`validate_request`]: the address-of-record in To must be
/// a SIP or SIPS URI (RFC 3261 10.3; RFC 4475 3.3.4 recommends 400).
pub fn validate_register<'a>(message: &Message<'a>) -> Result<(), Rejection<'a>> {
    if !message.to()?.uri.is_sip() {
        return Err(Rejection::new(400, "Address-of-Record Not SIP"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn verdict(text: &str, supported: &[&str]) -> Result<(), u16> {
        let message = parse(text.as_bytes()).map_err(|e| e.status().unwrap_or(0))?;
        validate_request(&message, supported).map_err(|rejection| rejection.status)
    }

    const HEADERS: &str = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\n";

    #[test]
    fn a_good_request_passes() {
        assert_eq!(
            verdict(
                &format!("OPTIONS sip:b SIP/2.0\r\n{HEADERS}CSeq: 1 OPTIONS\r\n\r\n"),
                &[]
            ),
            Ok(())
        );
    }

    #[test]
    fn generic_rejections() {
        let cases = [
            (
                format!("OPTIONS sip:b SIP/7.0\r\n{HEADERS}CSeq: 1 OPTIONS\r\n\r\n"),
                505,
            ),
            (
                format!("OPTIONS tel:+1 SIP/2.0\r\n{HEADERS}CSeq: 1 OPTIONS\r\n\r\n"),
                416,
            ),
            (
                format!("OPTIONS <sip:b> SIP/2.0\r\n{HEADERS}CSeq: 1 OPTIONS\r\n\r\n"),
                400,
            ),
            (
                format!("OPTIONS sip:b SIP/2.0\r\n{HEADERS}CSeq: 1 INVITE\r\n\r\n"),
                400,
            ),
            (
                format!("OPTIONS sip:b SIP/2.0\r\n{HEADERS}CSeq: 4294967296 OPTIONS\r\n\r\n"),
                400,
            ),
            (
                format!(
                    "OPTIONS sip:b SIP/2.0\r\n{HEADERS}CSeq: 1 OPTIONS\r\nMax-Forwards: 256\r\n\r\n"
                ),
                400,
            ),
            (
                format!("OPTIONS sip:b SIP/2.0\r\n{HEADERS}{HEADERS}CSeq: 1 OPTIONS\r\n\r\n"),
                400,
            ),
            (
                "OPTIONS sip:b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n".to_owned(),
                400,
            ),
            (
                format!(
                    "OPTIONS sip:b SIP/2.0\r\n{HEADERS}CSeq: 1 OPTIONS\r\nContact: *, <sip:x@y>\r\n\r\n"
                ),
                400,
            ),
        ];
        for (text, status) in cases {
            assert_eq!(verdict(&text, &[]), Err(status), "{text}");
        }
    }

    #[test]
    fn unknown_option_tags_are_listed() {
        let text = format!(
            "OPTIONS sip:b SIP/2.0\r\n{HEADERS}CSeq: 1 OPTIONS\r\nRequire: path, foo\r\nProxy-Require: bar, FOO\r\n\r\n"
        );
        let message = parse(text.as_bytes()).expect("valid");
        let rejection = validate_request(&message, &["path", "outbound"]).expect_err("420");
        assert_eq!(
            (rejection.status, rejection.unsupported),
            (420, vec!["foo", "bar"])
        );
        assert!(validate_request(&message, &["PATH", "foo", "bar"]).is_ok());
    }

    #[test]
    fn register_needs_a_sip_aor() {
        let text = "REGISTER sip:b SIP/2.0\r\nTo: isbn:2983792873\r\n\r\n";
        let message = parse(text.as_bytes()).expect("valid");
        assert_eq!(validate_register(&message).map_err(|r| r.status), Err(400));
    }
}
