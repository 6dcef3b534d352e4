//! The message: start line, header fields in a fixed inline array (no heap), body, the typed
//! accessors a registrar needs, and the canonical writer.

use std::fmt;

use crate::auth::Credentials;
use crate::error::{ErrorKind, ParseError};
use crate::header::{Header, HeaderName, ListValues};
use crate::method::Method;
use crate::name_addr::{ContactIter, Contacts, NameAddr};
use crate::text::{UnfoldPieces, is_lws, is_token_byte, parse_digits_saturating, take_while, trim};
use crate::via::Via;

/// The largest message accepted, on any transport (the largest UDP payload).
pub const MAX_MESSAGE_SIZE: usize = 65_535;
/// The most header fields (folded lines count once) a message may carry.
pub const MAX_HEADERS: usize = 128;
/// The longest start line or header field (after unfolding), in bytes.
pub const MAX_LINE_LENGTH: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request(RequestLine<'a>),
    Response(StatusLine<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: Method<'a>,
    /// The Request-URI as sent (parse it with [`crate::Uri::parse`]).
    pub uri: &'a str,
    /// `SIP/<digits>.<digits>`, any version; [`crate::validate_request`] answers 505 to all but 2.0.
    pub version: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLine<'a> {
    pub version: &'a str,
    /// Always in 100..=699.
    pub code: u16,
    pub reason: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub number: u32,
    pub method: Method<'a>,
}

/// A parsed SIP message borrowing the received bytes.
#[derive(Clone)]
pub struct Message<'a> {
    pub start: StartLine<'a>,
    pub body: &'a [u8],
    headers: [Header<'a>; MAX_HEADERS],
    header_count: usize,
    content_length: Option<usize>,
}

/// Where the header section ends: `head_end` is the line break ending the last header line,
/// `body_start` the first byte after the empty line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadBounds {
    pub(crate) head_end: usize,
    pub(crate) body_start: usize,
}

/// Finds the empty line (CRLF CRLF, or bare LF LF from lenient senders) ending the header section.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<HeadBounds> {
    memchr::memchr_iter(b'\n', buf).find_map(|newline| match buf.get(newline + 1) {
        Some(b'\n') => Some(HeadBounds {
            head_end: newline,
            body_start: newline + 2,
        }),
        Some(b'\r') if buf.get(newline + 2) == Some(&b'\n') => Some(HeadBounds {
            head_end: newline,
            body_start: newline + 3,
        }),
        _ => None,
    })
}

pub(crate) fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// Byte ranges of the logical lines of a header section: a line break followed by SP/HT is a
/// fold and stays inside the line; a trailing CR is excluded.
pub(crate) struct LogicalLines<'b> {
    bytes: &'b [u8],
    position: usize,
}

impl<'b> LogicalLines<'b> {
    pub(crate) fn new(bytes: &'b [u8]) -> Self {
        Self { bytes, position: 0 }
    }
}

impl Iterator for LogicalLines<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let start = self.position;
        let rest = self.bytes.get(start..).filter(|rest| !rest.is_empty())?;
        let mut end = rest.len();
        let mut next = self.bytes.len();
        for newline in memchr::memchr_iter(b'\n', rest) {
            if !matches!(rest.get(newline + 1), Some(b' ' | b'\t')) {
                end = newline;
                next = start + newline + 1;
                break;
            }
        }
        if end > 0 && rest.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        self.position = next;
        Some((start, start + end))
    }
}

fn is_sip_version(version: &str) -> bool {
    let Some(number) = version
        .get(4..)
        .filter(|_| starts_with_ignore_case(version.as_bytes(), b"SIP/"))
    else {
        return false;
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    number
        .split_once('.')
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ErrorKind> {
    if starts_with_ignore_case(line.as_bytes(), b"SIP/") {
        let (version, rest) = line.split_once(' ').ok_or(ErrorKind::BadStatusLine)?;
        let rest = rest.trim_start_matches(' ');
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if !is_sip_version(version) || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ErrorKind::BadStatusLine);
        }
        let code: u16 = code.parse().map_err(|_| ErrorKind::BadStatusLine)?;
        if !(100..=699).contains(&code) {
            return Err(ErrorKind::BadStatusLine);
        }
        let reason = reason.trim_end_matches([' ', '\t']);
        return Ok(StartLine::Response(StatusLine {
            version,
            code,
            reason,
        }));
    }
    if line.len() > MAX_LINE_LENGTH {
        return Err(ErrorKind::RequestLineTooLong);
    }
    // Liberal on white space between and after the elements (RFC 4475 3.1.2.9, 3.1.2.10), strict
    // on white space inside the Request-URI (3.1.2.8).
    let line = line.trim_end_matches([' ', '\t']);
    let (method, rest) = take_while(line, is_token_byte);
    if method.is_empty() {
        return Err(ErrorKind::NotSip);
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(ErrorKind::BadRequestLine);
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    let (uri, version) = rest
        .rsplit_once([' ', '\t'])
        .ok_or(ErrorKind::BadRequestLine)?;
    let uri = uri.trim_end_matches([' ', '\t']);
    if uri.is_empty() || uri.bytes().any(|b| b <= b' ' || b == 0x7f) || !is_sip_version(version) {
        return Err(ErrorKind::BadRequestLine);
    }
    Ok(StartLine::Request(RequestLine {
        method: Method::parse(method),
        uri,
        version,
    }))
}

/// Content-Length: digits only; huge values saturate (they are then larger than any message).
pub(crate) fn parse_content_length(value: &str) -> Result<usize, ErrorKind> {
    parse_digits_saturating(trim(value))
        .map(|length| usize::try_from(length).unwrap_or(usize::MAX))
        .ok_or(ErrorKind::BadContentLength)
}

/// Merges a repeated Content-Length: equal repeats are tolerated, different ones are an error.
pub(crate) fn merge_content_length(
    previous: Option<usize>,
    length: usize,
) -> Result<usize, ErrorKind> {
    match previous {
        Some(previous) if previous != length => Err(ErrorKind::ConflictingContentLength),
        _ => Ok(length),
    }
}

/// Parses one complete message: a datagram, or a frame cut by [`crate::frame_stream`].
///
/// Leading CRLFs are skipped (RFC 3261 7.5). The body is `Content-Length` octets and any extra
/// trailing octets are discarded (RFC 3261 18.3); without Content-Length the body is the rest of
/// the buffer (fine for UDP; [`crate::frame_stream`] insists on it for streams); a Content-Length
/// larger than what is there is an error (400). A datagram that ends without the empty line after
/// the headers is accepted with an empty body. The header section must be UTF-8.
pub fn parse(buf: &[u8]) -> Result<Message<'_>, ParseError> {
    let skipped = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let buf = buf.get(skipped..).unwrap_or_default();
    let in_response = starts_with_ignore_case(buf, b"SIP/");
    let fail = |kind| ParseError::in_response(kind, in_response);
    match buf.first() {
        None => return Err(fail(ErrorKind::Empty)),
        Some(&first) if !in_response && !is_token_byte(first) => {
            return Err(fail(ErrorKind::NotSip));
        }
        Some(_) => {}
    }
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(fail(ErrorKind::MessageTooLarge));
    }
    let bounds = find_head_end(buf).unwrap_or(HeadBounds {
        head_end: buf.len(),
        body_start: buf.len(),
    });
    let head = buf.get(..bounds.head_end).unwrap_or_default();
    let head = std::str::from_utf8(head).map_err(|_| fail(ErrorKind::NotUtf8))?;
    let (start_line, header_lines) = head.split_once('\n').unwrap_or((head, ""));
    let start =
        parse_start_line(start_line.strip_suffix('\r').unwrap_or(start_line)).map_err(fail)?;
    // Built in place and filled through `&mut`: the header array is large, moving it costs.
    let mut message = Message {
        start,
        body: &[],
        headers: [Header::EMPTY; MAX_HEADERS],
        header_count: 0,
        content_length: None,
    };
    parse_headers(&mut message, header_lines).map_err(fail)?;
    let rest = buf.get(bounds.body_start..).unwrap_or_default();
    message.body = match message.content_length {
        None => rest,
        Some(length) => rest
            .get(..length)
            .ok_or(fail(ErrorKind::ContentLengthTooLarge))?,
    };
    Ok(message)
}

fn parse_headers<'a>(message: &mut Message<'a>, rest: &'a str) -> Result<(), ErrorKind> {
    for (begin, end) in LogicalLines::new(rest.as_bytes()) {
        let line = rest.get(begin..end).ok_or(ErrorKind::BadHeaderLine)?;
        if line.len() > MAX_LINE_LENGTH {
            return Err(ErrorKind::HeaderLineTooLong);
        }
        let (name, after_name) = take_while(line, is_token_byte);
        let value = after_name
            .trim_start_matches([' ', '\t'])
            .strip_prefix(':')
            .filter(|_| !name.is_empty())
            .ok_or(ErrorKind::BadHeaderLine)?;
        let name = HeaderName::parse(name);
        let value = trim(value);
        if name == HeaderName::ContentLength {
            let length = parse_content_length(value)?;
            message.content_length = Some(merge_content_length(message.content_length, length)?);
        }
        let slot = message
            .headers
            .get_mut(message.header_count)
            .ok_or(ErrorKind::TooManyHeaders)?;
        *slot = Header { name, value };
        message.header_count += 1;
    }
    Ok(())
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            *digit = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

pub(crate) fn push_unfolded(out: &mut Vec<u8>, value: &str) {
    for piece in UnfoldPieces::new(value) {
        out.extend_from_slice(piece.as_bytes());
    }
}

pub(crate) fn push_number(out: &mut Vec<u8>, value: impl Into<u64>) {
    push_decimal(out, value.into());
}

impl<'a> Message<'a> {
    pub fn request(&self) -> Option<&RequestLine<'a>> {
        match &self.start {
            StartLine::Request(request) => Some(request),
            StartLine::Response(_) => None,
        }
    }

    pub fn response(&self) -> Option<&StatusLine<'a>> {
        match &self.start {
            StartLine::Response(status) => Some(status),
            StartLine::Request(_) => None,
        }
    }

    pub fn is_response(&self) -> bool {
        matches!(self.start, StartLine::Response(_))
    }

    /// All header fields in the order received.
    pub fn headers(&self) -> &[Header<'a>] {
        self.headers.get(..self.header_count).unwrap_or_default()
    }

    /// The value of the first field with this name.
    pub fn header(&self, name: HeaderName<'_>) -> Option<&'a str> {
        self.values(name).next()
    }

    /// How many values of this header the message has: for list headers
    /// ([`HeaderName::is_list`]) the comma-separated values across all lines, for the others the
    /// number of lines.
    pub fn header_count(&self, name: HeaderName<'_>) -> usize {
        if name.normalized().is_list() {
            ListValues::new(self.headers(), name).count()
        } else {
            self.values(name).count()
        }
    }

    /// The comma-separated values of a header across all its lines (see [`ListValues`]).
    pub fn list_values<'m>(&'m self, name: HeaderName<'m>) -> ListValues<'m, 'a> {
        ListValues::new(self.headers(), name)
    }

    /// The `Content-Length` value, if the message had one.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    fn values(&self, name: HeaderName<'_>) -> impl Iterator<Item = &'a str> {
        let name = name.normalized();
        self.headers()
            .iter()
            .filter(move |header| header.name == name)
            .map(|header| header.value)
    }

    fn error(&self, kind: ErrorKind) -> ParseError {
        ParseError::in_response(kind, self.is_response())
    }

    /// The value of a header that must appear exactly once.
    fn single(
        &self,
        name: HeaderName<'_>,
        missing: ErrorKind,
        duplicate: ErrorKind,
    ) -> Result<&'a str, ParseError> {
        let mut values = self.values(name);
        let value = values.next().ok_or(self.error(missing))?;
        match values.next() {
            Some(_) => Err(self.error(duplicate)),
            None => Ok(value),
        }
    }

    /// The value of a header that may appear at most once.
    fn optional_single(
        &self,
        name: HeaderName<'_>,
        bad: ErrorKind,
    ) -> Result<Option<&'a str>, ParseError> {
        let mut values = self.values(name);
        let value = values.next();
        match values.next() {
            Some(_) => Err(self.error(bad)),
            None => Ok(value),
        }
    }

    /// Call-ID: exactly one, non-empty, without white space.
    pub fn call_id(&self) -> Result<&'a str, ParseError> {
        let value = self.single(
            HeaderName::CallId,
            ErrorKind::MissingCallId,
            ErrorKind::DuplicateCallId,
        )?;
        if value.is_empty() || value.bytes().any(is_lws) {
            return Err(self.error(ErrorKind::BadCallId));
        }
        Ok(value)
    }

    /// CSeq: exactly one; the number must fit 32 bits (RFC 3261 8.1.1.5).
    pub fn cseq(&self) -> Result<CSeq<'a>, ParseError> {
        let value = self.single(
            HeaderName::CSeq,
            ErrorKind::MissingCSeq,
            ErrorKind::DuplicateCSeq,
        )?;
        let bad = self.error(ErrorKind::BadCSeq);
        let (digits, rest) = take_while(value, |b| b.is_ascii_digit());
        let number = parse_digits_saturating(digits)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(bad)?;
        if !rest.bytes().next().is_some_and(is_lws) {
            return Err(bad);
        }
        let method = trim(rest);
        if method.is_empty() || !method.bytes().all(is_token_byte) {
            return Err(bad);
        }
        Ok(CSeq {
            number,
            method: Method::parse(method),
        })
    }

    pub fn from(&self) -> Result<NameAddr<'a>, ParseError> {
        let value = self.single(
            HeaderName::From,
            ErrorKind::MissingFrom,
            ErrorKind::DuplicateFrom,
        )?;
        NameAddr::parse(value).map_err(|_| self.error(ErrorKind::BadFrom))
    }

    pub fn to(&self) -> Result<NameAddr<'a>, ParseError> {
        let value = self.single(HeaderName::To, ErrorKind::MissingTo, ErrorKind::DuplicateTo)?;
        NameAddr::parse(value).map_err(|_| self.error(ErrorKind::BadTo))
    }

    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        let value = self
            .list_values(HeaderName::Via)
            .next()
            .ok_or(self.error(ErrorKind::MissingVia))?;
        Via::parse(value).map_err(|_| self.error(ErrorKind::BadVia))
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        self.list_values(HeaderName::Via)
            .map(|value| Via::parse(value).map_err(|_| self.error(ErrorKind::BadVia)))
    }

    /// The Contact values; `*` mixed with other values is an error.
    pub fn contacts(&self) -> Result<Contacts<'_, 'a>, ParseError> {
        let values = self.list_values(HeaderName::Contact);
        let (mut count, mut star) = (0usize, false);
        for value in values.clone() {
            count += 1;
            star |= value == "*";
        }
        match (count, star) {
            (0, _) => Ok(Contacts::None),
            (1, true) => Ok(Contacts::Star),
            (_, true) => Err(self.error(ErrorKind::BadContact)),
            (_, false) => Ok(Contacts::List(ContactIter::new(values))),
        }
    }

    /// The Expires header (delta-seconds). Values above `u32::MAX` are clamped to `u32::MAX`:
    /// the grammar puts no bound on delta-seconds and the registrar caps expiry to its own
    /// maximum anyway, so an absurdly long request simply gets that maximum. A repeated or
    /// non-numeric Expires (e.g. an RFC 2543 date) is an error; what to do with it is the
    /// caller's choice.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        let Some(value) = self.optional_single(HeaderName::Expires, ErrorKind::BadExpires)? else {
            return Ok(None);
        };
        parse_digits_saturating(value)
            .map(|seconds| Some(u32::try_from(seconds).unwrap_or(u32::MAX)))
            .ok_or(self.error(ErrorKind::BadExpires))
    }

    /// Max-Forwards: at most one, 0..=255.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        let Some(value) =
            self.optional_single(HeaderName::MaxForwards, ErrorKind::BadMaxForwards)?
        else {
            return Ok(None);
        };
        parse_digits_saturating(value)
            .and_then(|hops| u8::try_from(hops).ok())
            .map(Some)
            .ok_or(self.error(ErrorKind::BadMaxForwards))
    }

    /// The Authorization (or, with `proxy`, Proxy-Authorization) values, one per line.
    pub fn authorizations(&self, proxy: bool) -> impl Iterator<Item = Credentials<'a>> + '_ {
        let name = if proxy {
            HeaderName::ProxyAuthorization
        } else {
            HeaderName::Authorization
        };
        self.values(name).map(Credentials::parse)
    }

    /// Appends the canonical form: the start line, each header as `Name: value` with its long
    /// name and folds removed, a Content-Length if the message had none, the empty line, the body.
    pub fn write(&self, out: &mut Vec<u8>) {
        match &self.start {
            StartLine::Request(request) => {
                for part in [
                    request.method.as_str(),
                    " ",
                    request.uri,
                    " ",
                    request.version,
                ] {
                    out.extend_from_slice(part.as_bytes());
                }
            }
            StartLine::Response(status) => {
                out.extend_from_slice(status.version.as_bytes());
                out.push(b' ');
                push_number(out, status.code);
                out.push(b' ');
                out.extend_from_slice(status.reason.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        for header in self.headers() {
            out.extend_from_slice(header.name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            push_unfolded(out, header.value);
            out.extend_from_slice(b"\r\n");
        }
        if self.content_length.is_none() {
            out.extend_from_slice(b"Content-Length: ");
            push_number(out, self.body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("headers", &self.headers())
            .field("body", &String::from_utf8_lossy(self.body))
            .finish()
    }
}

/// Equal start line, header fields (in order) and body.
impl PartialEq for Message<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.start == other.start && self.headers() == other.headers() && self.body == other.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &[u8] = b"REGISTER sip:127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1234-1-0;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:user000001@bench.local>;tag=1234SIPpTag001\r\n\
To: <sip:user000001@bench.local>\r\n\
Call-ID: 1-1234@127.0.0.1\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:user000001@127.0.0.1:5090;transport=UDP>\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn register_accessors() {
        let message = parse(REGISTER).expect("valid");
        let request = message.request().expect("request");
        assert_eq!(request.method, Method::Register);
        assert_eq!(request.uri, "sip:127.0.0.1:5070");
        assert_eq!(message.call_id(), Ok("1-1234@127.0.0.1"));
        assert_eq!(
            message.cseq(),
            Ok(CSeq {
                number: 2,
                method: Method::Register
            })
        );
        assert_eq!(message.from().expect("from").tag(), Some("1234SIPpTag001"));
        assert_eq!(message.to().expect("to").tag(), None);
        assert_eq!(message.top_via().expect("via").rport(), Some(None));
        assert_eq!(message.expires(), Ok(Some(3600)));
        assert_eq!(message.max_forwards(), Ok(Some(70)));
        assert_eq!(
            message.header(HeaderName::Other("content-LENGTH")),
            Some("0")
        );
        let Ok(Contacts::List(mut contacts)) = message.contacts() else {
            panic!("contacts")
        };
        let contact = contacts.next().expect("one").expect("valid");
        assert_eq!(contact.uri.param("transport"), Some(Some("UDP")));
        assert!(contacts.next().is_none());
        assert!(message.body.is_empty());
    }

    #[test]
    fn body_framing_on_datagrams() {
        let message =
            parse(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef").expect("valid");
        assert_eq!(message.body, b"abc");
        let message = parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\nabcdef").expect("valid");
        assert_eq!(message.body, b"abcdef");
        let error = parse(b"OPTIONS sip:a@b SIP/2.0\r\nl: 9\r\n\r\nabc").expect_err("too long");
        assert_eq!(error.status(), Some(400));
        let error =
            parse(b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\nl: 4\r\n\r\nabcd").expect_err("conflict");
        assert_eq!(error.kind(), ErrorKind::ConflictingContentLength);
        let message = parse(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nl: 1\r\n\r\nx")
            .expect("equal repeat");
        assert_eq!(message.body, b"x");
        let message = parse(b"OPTIONS sip:a@b SIP/2.0\nl: 1\n\nx").expect("bare LF");
        assert_eq!(message.body, b"x");
    }

    #[test]
    fn start_lines() {
        let message = parse(b"SIP/2.0 100 \r\n\r\n").expect("empty reason");
        assert_eq!(
            message.response().map(|s| (s.code, s.reason)),
            Some((100, ""))
        );
        assert_eq!(
            parse(b"SIP/2.0 4294967301 big\r\n\r\n")
                .expect_err("big")
                .status(),
            None
        );
        assert_eq!(
            parse(b"INVITE sip:a@b\r\n\r\n")
                .expect_err("no version")
                .status(),
            Some(400)
        );
        assert_eq!(
            parse(b"INVITE sip:a@b; lr SIP/2.0\r\n\r\n")
                .expect_err("lws")
                .status(),
            Some(400)
        );
        let message = parse(b"INVITE  sip:a@b  SIP/2.0  \r\n\r\n").expect("extra spaces");
        assert_eq!(message.request().map(|r| r.uri), Some("sip:a@b"));
        let message = parse(b"OPTIONS sip:a@b SIP/7.0\r\n\r\n").expect("other version");
        assert_eq!(message.request().map(|r| r.version), Some("SIP/7.0"));
        assert_eq!(
            parse(b"\x00\x01\x00\x00stun").expect_err("binary").status(),
            None
        );
        assert_eq!(parse(b"\r\n\r\n").expect_err("keepalive").status(), None);
    }

    #[test]
    fn limits() {
        let mut many = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).expect_err("too many").status(), Some(513));
        let mut long = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
        long.resize(long.len() + MAX_LINE_LENGTH, b'a');
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&long).expect_err("long line").status(), Some(513));
        let mut uri = b"OPTIONS sip:".to_vec();
        uri.resize(uri.len() + MAX_LINE_LENGTH, b'a');
        uri.extend_from_slice(b" SIP/2.0\r\n\r\n");
        assert_eq!(parse(&uri).expect_err("long uri").status(), Some(414));
        let huge = vec![b'a'; MAX_MESSAGE_SIZE + 1];
        assert_eq!(parse(&huge).expect_err("huge").status(), Some(513));
    }

    #[test]
    fn folding_and_counts() {
        let message = parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP a;branch=1,\r\n SIP/2.0/TCP b\r\nVia: SIP/2.0/UDP c\r\nCall-ID: x\r\nk: path, outbound\r\n\r\n",
        )
        .expect("valid");
        assert_eq!(message.header_count(HeaderName::Via), 3);
        assert_eq!(message.header_count(HeaderName::CallId), 1);
        let hosts: Vec<_> = message.vias().map(|via| via.map(|v| v.host)).collect();
        assert_eq!(hosts, vec![Ok("a"), Ok("b"), Ok("c")]);
        assert_eq!(
            message
                .list_values(HeaderName::Supported)
                .collect::<Vec<_>>(),
            vec!["path", "outbound"]
        );
    }

    #[test]
    fn write_is_canonical() {
        let message = parse(b"OPTIONS sip:a@b SIP/2.0\r\ni: x\r\nS:\r\nX-Y: a\r\n  b\r\n\r\nbody")
            .expect("valid");
        let mut out = Vec::new();
        message.write(&mut out);
        assert_eq!(
            out,
            b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nSubject: \r\nX-Y: a  b\r\nContent-Length: 4\r\n\r\nbody"
        );
        let reparsed = parse(&out).expect("reparses");
        assert_eq!(reparsed.header(HeaderName::Other("x-y")), Some("a  b"));
    }

    #[test]
    fn decimal_writer() {
        for value in [0u64, 7, 10, 65_535, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }
}
