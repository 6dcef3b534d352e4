//! Writing a response to a request (RFC 3261 8.2.6, 18.2.1; RFC 3581) straight into the output
//! buffer, without allocating anything but the buffer's growth.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use crate::header::{HeaderName, ListValues};
use crate::message::{Message, push_number, push_unfolded};
use crate::text::Params;
use crate::via::Via;

/// Builds a response in `out`: status line, the request's Via values (the top one stamped with
/// `received`/`rport`), From, To (tagged), Call-ID and CSeq; then the caller's headers; then
/// Content-Length and the body.
#[derive(Debug)]
pub struct ResponseWriter<'o> {
    out: &'o mut Vec<u8>,
}

/// `fmt::Write` over a byte vector, to format numbers and addresses without a `String`.
pub(crate) struct VecWriter<'v>(pub(crate) &'v mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

fn host_is(host: &str, ip: IpAddr) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>()
        .is_ok_and(|parsed| parsed.to_canonical() == ip)
}

/// The top Via with `received` added when the sent-by host is a name or another address
/// (RFC 3261 18.2.1) or when `rport` was requested (RFC 3581 4, which also fills `rport`).
/// Values of those two parameters sent by the client are replaced.
fn write_top_via(out: &mut Vec<u8>, value: &str, source: SocketAddr) {
    let Ok(via) = Via::parse(value) else {
        push_unfolded(out, value);
        return;
    };
    let ip = source.ip().to_canonical();
    let rport = via.rport().is_some();
    let received = rport || !host_is(via.host, ip);
    for part in ["SIP/", via.version, "/", via.transport, " ", via.host] {
        out.extend_from_slice(part.as_bytes());
    }
    if let Some(port) = via.port {
        out.push(b':');
        push_number(out, port);
    }
    for (name, value) in Params::new(via.params).map_while(Result::ok) {
        if (received && name.eq_ignore_ascii_case("received"))
            || (rport && name.eq_ignore_ascii_case("rport"))
        {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(name.as_bytes());
        if let Some(value) = value {
            out.push(b'=');
            push_unfolded(out, value);
        }
    }
    if received {
        out.extend_from_slice(b";received=");
        let _ = write!(VecWriter(out), "{ip}");
    }
    if rport {
        out.extend_from_slice(b";rport=");
        push_number(out, source.port());
    }
}

impl<'o> ResponseWriter<'o> {
    /// Writes the status line and the headers copied from `request`. `source` is the address the
    /// request came from; `to_tag` is added to To unless To already has a tag (pass `None` for
    /// 100 Trying).
    pub fn new(
        out: &'o mut Vec<u8>,
        code: u16,
        reason: &str,
        request: &Message<'_>,
        source: SocketAddr,
        to_tag: Option<&str>,
    ) -> Self {
        out.extend_from_slice(b"SIP/2.0 ");
        push_number(out, code);
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        // One Via line per Via line of the request, never one per value: a request line of
        // many commas (`Via: a,,,,…`) must not become hundreds of lines (found by fuzzing:
        // more lines than any parser's limit, and a reflection amplifier over UDP). The top
        // value, stamped, shares its line with the rest of its header's values.
        let mut top = true;
        for header in request
            .headers()
            .iter()
            .filter(|h| h.name == HeaderName::Via)
        {
            let Some(first) = ListValues::new(std::slice::from_ref(header), HeaderName::Via).next()
            else {
                continue;
            };
            out.extend_from_slice(b"Via: ");
            if top {
                top = false;
                write_top_via(out, first, source);
                // The values after the first, as they were sent (offset of a subslice).
                let after = first.as_ptr() as usize - header.value.as_ptr() as usize + first.len();
                let rest = header.value[after..].trim_start();
                let rest = rest.strip_prefix(',').unwrap_or(rest).trim();
                if !rest.is_empty() {
                    out.extend_from_slice(b", ");
                    push_unfolded(out, rest);
                }
            } else {
                push_unfolded(out, header.value);
            }
            out.extend_from_slice(b"\r\n");
        }
        let mut writer = Self { out };
        if let Some(from) = request.header(HeaderName::From) {
            writer.header("From", from);
        }
        if let Some(to) = request.header(HeaderName::To) {
            writer.out.extend_from_slice(b"To: ");
            push_unfolded(writer.out, to);
            if let Some(tag) = to_tag.filter(|_| request.to().is_ok_and(|to| to.tag().is_none())) {
                writer.out.extend_from_slice(b";tag=");
                writer.out.extend_from_slice(tag.as_bytes());
            }
            writer.out.extend_from_slice(b"\r\n");
        }
        for name in [HeaderName::CallId, HeaderName::CSeq] {
            if let Some(value) = request.header(name) {
                writer.header(name.as_str(), value);
            }
        }
        writer
    }

    /// Appends `name: value` (folds in `value` are removed).
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        push_unfolded(self.out, value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Appends `name: <formatted value>`, e.g. `header_fmt("Expires", format_args!("{secs}"))`.
    pub fn header_fmt(&mut self, name: &str, value: fmt::Arguments<'_>) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        let _ = VecWriter(self.out).write_fmt(value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Ends the response without a body.
    pub fn finish(self) {
        self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    }

    /// Ends the response with a body of the given type.
    pub fn finish_with_body(self, content_type: &str, body: &[u8]) {
        self.out.extend_from_slice(b"Content-Type: ");
        self.out.extend_from_slice(content_type.as_bytes());
        self.out.extend_from_slice(b"\r\nContent-Length: ");
        push_number(self.out, body.len() as u64);
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn respond(request: &str, source: &str, to_tag: Option<&str>) -> String {
        let message = parse(request.as_bytes()).expect("valid request");
        let mut out = Vec::new();
        let mut writer = ResponseWriter::new(
            &mut out,
            200,
            "OK",
            &message,
            source.parse().expect("address"),
            to_tag,
        );
        writer
            .header("Contact", "<sip:u@h>;expires=60")
            .header_fmt("Expires", format_args!("{}", 60));
        writer.finish();
        String::from_utf8(out).expect("utf-8")
    }

    const REQUEST_TAIL: &str =
        "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n";

    #[test]
    fn rport_and_received_are_filled() {
        let request = format!(
            "REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5090;branch=z9hG4bK1;rport,\r\n SIP/2.0/TCP p\r\nVia: SIP/2.0/UDP q\r\n{REQUEST_TAIL}"
        );
        let response = respond(&request, "192.0.2.7:40000", Some("xyz"));
        assert_eq!(
            response,
            "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5090;branch=z9hG4bK1;received=192.0.2.7;rport=40000, SIP/2.0/TCP p\r\n\
Via: SIP/2.0/UDP q\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=xyz\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:u@h>;expires=60\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
        );
        assert!(parse(response.as_bytes()).is_ok());
    }

    #[test]
    fn via_lists_keep_their_lines() {
        // Regression from the `parse` fuzz target: one request line of commas became one
        // response line per (empty) value, past the 128-header limit of our own parser.
        let request = format!(
            "REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1{}\r\nVia: SIP/2.0/UDP q,,\r\n{REQUEST_TAIL}",
            ",".repeat(300)
        );
        let response = respond(&request, "192.0.2.7:5060", None);
        assert_eq!(response.matches("Via: ").count(), 2, "{response}");
        assert!(response.contains(&format!(
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1;received=192.0.2.7, {}\r\nVia: SIP/2.0/UDP q,,\r\n",
            ",".repeat(299)
        )));
        assert!(parse(response.as_bytes()).is_ok());
    }

    #[test]
    fn received_only_when_the_address_differs() {
        let same = format!(
            "REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK1\r\n{REQUEST_TAIL}"
        );
        assert!(
            respond(&same, "[::ffff:192.0.2.7]:5060", None)
                .contains("Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK1\r\n")
        );
        let named = format!(
            "REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/TLS [2001:db8::1];branch=z9hG4bK1;received=1.1.1.1\r\n{REQUEST_TAIL}"
        );
        assert!(
            respond(&named, "[2001:db8::2]:5061", None).contains(
                "Via: SIP/2.0/TLS [2001:db8::1];branch=z9hG4bK1;received=2001:db8::2\r\n"
            )
        );
    }

    #[test]
    fn existing_to_tag_is_kept() {
        let request =
            "OPTIONS sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nTo: <sip:a@b>;tag=old\r\n\r\n";
        let response = respond(request, "192.0.2.7:5060", Some("new"));
        assert!(response.contains("To: <sip:a@b>;tag=old\r\n"));
    }

    #[test]
    fn body_is_framed() {
        let message = parse(b"OPTIONS sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n").expect("valid");
        let mut out = Vec::new();
        ResponseWriter::new(
            &mut out,
            200,
            "OK",
            &message,
            "192.0.2.7:5060".parse().expect("address"),
            None,
        )
        .finish_with_body("text/plain", b"hi");
        assert!(out.ends_with(b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"));
    }
}
