//! Cutting a byte stream (TCP, TLS) into messages by Content-Length (RFC 3261 18.3), and the
//! RFC 5626 CRLF keepalives that travel between them.

use crate::error::{ErrorKind, ParseError};
use crate::header::HeaderName;
use crate::message::{
    LogicalLines, MAX_MESSAGE_SIZE, find_head_end, merge_content_length, parse_content_length,
    starts_with_ignore_case,
};
use crate::text::{is_token_byte, take_while};

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet; read more and call again.
    Incomplete,
    /// `len` bytes of line breaks between messages. `ping` = a CRLFCRLF keepalive, to be
    /// answered with one CRLF (RFC 5626 3.5.1); otherwise (a pong or stray line break) ignore.
    Keepalive { len: usize, ping: bool },
    /// A complete message of `len` bytes; hand `&buf[..len]` to [`crate::parse`].
    Message { len: usize },
}

const PING: &[u8] = b"\r\n\r\n";

/// Frames the start of a stream buffer. An error means the framing is lost (Content-Length
/// missing, malformed or conflicting, or the message would exceed [`MAX_MESSAGE_SIZE`]):
/// answer with its status if it has one, then close the connection. Other syntax errors are left
/// to [`crate::parse`], so that one bad message does not cost the connection.
pub fn frame_stream(buf: &[u8]) -> Result<Frame, ParseError> {
    match buf.first() {
        None => return Ok(Frame::Incomplete),
        Some(b'\r' | b'\n') => return Ok(keepalive(buf)),
        Some(_) => {}
    }
    let in_response = starts_with_ignore_case(buf, b"SIP/");
    let fail = |kind| ParseError::in_response(kind, in_response);
    let window = buf.get(..MAX_MESSAGE_SIZE).unwrap_or(buf);
    let Some(bounds) = find_head_end(window) else {
        return if buf.len() >= MAX_MESSAGE_SIZE {
            Err(fail(ErrorKind::MessageTooLarge))
        } else {
            Ok(Frame::Incomplete)
        };
    };
    let head = buf.get(..bounds.head_end).unwrap_or_default();
    let content_length = scan_content_length(head)
        .map_err(fail)?
        .ok_or(fail(ErrorKind::MissingContentLength))?;
    let len = bounds
        .body_start
        .checked_add(content_length)
        .filter(|&len| len <= MAX_MESSAGE_SIZE)
        .ok_or(fail(ErrorKind::MessageTooLarge))?;
    Ok(if buf.len() < len {
        Frame::Incomplete
    } else {
        Frame::Message { len }
    })
}

fn keepalive(buf: &[u8]) -> Frame {
    if buf.starts_with(PING) {
        return Frame::Keepalive {
            len: PING.len(),
            ping: true,
        };
    }
    if PING.starts_with(buf) {
        return Frame::Incomplete;
    }
    let len = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    Frame::Keepalive { len, ping: false }
}

/// Finds the Content-Length of a header section without parsing anything else.
fn scan_content_length(head: &[u8]) -> Result<Option<usize>, ErrorKind> {
    let after_start_line = memchr::memchr(b'\n', head).map_or(head.len(), |newline| newline + 1);
    let headers = head.get(after_start_line..).unwrap_or_default();
    let mut content_length = None;
    for (begin, end) in LogicalLines::new(headers) {
        // Content-Length lines are ASCII; a line that is not UTF-8 is not one of them.
        let Some(line) = headers
            .get(begin..end)
            .and_then(|line| std::str::from_utf8(line).ok())
        else {
            continue;
        };
        let (name, after_name) = take_while(line, is_token_byte);
        if HeaderName::parse(name) != HeaderName::ContentLength {
            continue;
        }
        let value = after_name
            .trim_start_matches([' ', '\t'])
            .strip_prefix(':')
            .ok_or(ErrorKind::BadContentLength)?;
        let length = parse_content_length(value)?;
        content_length = Some(merge_content_length(content_length, length)?);
    }
    Ok(content_length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_by_content_length() {
        let stream = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabcNEXT";
        assert_eq!(
            frame_stream(stream),
            Ok(Frame::Message {
                len: stream.len() - 4
            })
        );
        assert_eq!(frame_stream(&stream[..20]), Ok(Frame::Incomplete));
        assert_eq!(
            frame_stream(&stream[..stream.len() - 5]),
            Ok(Frame::Incomplete)
        );
    }

    #[test]
    fn keepalives() {
        assert_eq!(
            frame_stream(b"\r\n\r\nINVITE"),
            Ok(Frame::Keepalive { len: 4, ping: true })
        );
        assert_eq!(
            frame_stream(b"\r\nINVITE"),
            Ok(Frame::Keepalive {
                len: 2,
                ping: false
            })
        );
        assert_eq!(frame_stream(b"\r\n"), Ok(Frame::Incomplete));
        assert_eq!(frame_stream(b""), Ok(Frame::Incomplete));
    }

    #[test]
    fn framing_errors() {
        let missing =
            frame_stream(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\nbody").expect_err("no length");
        assert_eq!(
            (missing.kind(), missing.status()),
            (ErrorKind::MissingContentLength, Some(400))
        );
        let negative = frame_stream(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n")
            .expect_err("negative");
        assert_eq!(negative.status(), Some(400));
        let conflict =
            frame_stream(b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\n").expect_err("conflict");
        assert_eq!(conflict.kind(), ErrorKind::ConflictingContentLength);
        let huge = frame_stream(b"INVITE sip:a@b SIP/2.0\r\nl: 70000\r\n\r\n").expect_err("huge");
        assert_eq!(huge.status(), Some(513));
        let endless = vec![b'a'; MAX_MESSAGE_SIZE + 10];
        assert_eq!(
            frame_stream(&endless).expect_err("no head").status(),
            Some(513)
        );
        let response = frame_stream(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n").expect_err("response");
        assert_eq!(response.status(), None);
    }

    #[test]
    fn folded_content_length() {
        let stream = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nab";
        assert_eq!(
            frame_stream(stream),
            Ok(Frame::Message { len: stream.len() })
        );
    }
}
