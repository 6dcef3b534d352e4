//! Writing a request this server originates (RFC 3261 §8.1.1) straight into the output buffer,
//! without allocating anything but the buffer's growth. The caller supplies every header
//! value; the writer frames them, removes folds, and ends with Content-Length and the body.

use std::fmt::{self, Write as _};

use crate::message::{push_number, push_unfolded};
use crate::response::VecWriter;

/// Builds a request in `out`: the request line, then the caller's headers in order, then
/// Content-Length and the body. It checks nothing: composing a valid request (Via, From, To,
/// Call-ID, CSeq, Max-Forwards) is the caller's business, and its unit tests parse the result.
#[derive(Debug)]
pub struct RequestWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> RequestWriter<'o> {
    /// Writes `METHOD request-uri SIP/2.0`.
    pub fn new(out: &'o mut Vec<u8>, method: &str, request_uri: &str) -> Self {
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        push_unfolded(out, request_uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        Self { out }
    }

    /// Appends `name: value` (folds in `value` are removed).
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        push_unfolded(self.out, value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Appends `name: <formatted value>`, e.g. `header_fmt("CSeq", format_args!("{n} NOTIFY"))`.
    pub fn header_fmt(&mut self, name: &str, value: fmt::Arguments<'_>) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        let _ = VecWriter(self.out).write_fmt(value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Ends the request without a body.
    pub fn finish(self) {
        self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    }

    /// Ends the request with a body of the given type.
    pub fn finish_with_body(self, content_type: &str, body: &[u8]) {
        self.out.extend_from_slice(b"Content-Type: ");
        push_unfolded(self.out, content_type);
        self.out.extend_from_slice(b"\r\nContent-Length: ");
        push_number(self.out, body.len() as u64);
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HeaderName, Method, parse};

    fn notify(body: Option<(&str, &[u8])>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = RequestWriter::new(&mut out, "NOTIFY", "sip:alice@192.0.2.7:5062");
        writer
            .header("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport")
            .header("Max-Forwards", "70")
            .header("From", "<sip:registrar@acme.test>;tag=f1")
            .header("To", "<sip:alice@acme.test>")
            .header("Call-ID", "c1")
            .header_fmt("CSeq", format_args!("{} NOTIFY", 1))
            .header("Event", "check-sync;reboot=true")
            .header("Subscription-State", "terminated");
        match body {
            Some((content_type, bytes)) => writer.finish_with_body(content_type, bytes),
            None => writer.finish(),
        }
        out
    }

    #[test]
    fn a_notify_is_written_and_parses_back() {
        let bytes = notify(None);
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf-8"),
            "NOTIFY sip:alice@192.0.2.7:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\nMax-Forwards: 70\r\n\
From: <sip:registrar@acme.test>;tag=f1\r\nTo: <sip:alice@acme.test>\r\nCall-ID: c1\r\n\
CSeq: 1 NOTIFY\r\nEvent: check-sync;reboot=true\r\nSubscription-State: terminated\r\n\
Content-Length: 0\r\n\r\n"
        );
        let message = parse(&bytes).expect("parses");
        let request = message.request().expect("a request");
        assert_eq!(request.method, Method::Notify);
        assert_eq!(message.top_via().expect("via").branch(), Some("z9hG4bKabc"));
        assert_eq!(message.cseq().expect("cseq").number, 1);
        assert!(crate::validate_request(&message, &[]).is_ok());
    }

    #[test]
    fn a_body_is_framed_by_content_length() {
        let bytes = notify(Some((
            "application/simple-message-summary",
            b"Messages-Waiting: no\r\n",
        )));
        let message = parse(&bytes).expect("parses");
        assert_eq!(message.content_length(), Some(22));
        assert_eq!(
            message.header(HeaderName::ContentType),
            Some("application/simple-message-summary")
        );
        assert!(bytes.ends_with(b"\r\n\r\nMessages-Waiting: no\r\n"));
    }

    #[test]
    fn folds_in_values_are_removed() {
        let mut out = Vec::new();
        let mut writer = RequestWriter::new(&mut out, "NOTIFY", "sip:a@b");
        writer.header("Event", "check-sync;\r\n reboot=true");
        writer.finish();
        assert!(
            String::from_utf8(out)
                .expect("utf-8")
                .contains("Event: check-sync; reboot=true\r\n")
        );
    }
}
