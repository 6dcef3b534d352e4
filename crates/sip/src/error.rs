//! The one error type of the parser and its single mapping to the wire.
//!
//! Every failure is a [`ErrorKind`]; [`ParseError::status`] is the only place that decides which
//! SIP status a malformed request earns, and that a broken response (or bytes that are not SIP at
//! all) is dropped silently.

use thiserror::Error;

/// What was wrong with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Nothing but line breaks (a keepalive) or nothing at all.
    #[error("empty message")]
    Empty,
    /// The first line is neither a request line nor a status line.
    #[error("start line is not SIP")]
    NotSip,
    #[error("malformed request line")]
    BadRequestLine,
    #[error("malformed status line")]
    BadStatusLine,
    #[error("request line is too long")]
    RequestLineTooLong,
    #[error("header section is not valid UTF-8")]
    NotUtf8,
    #[error("malformed header line")]
    BadHeaderLine,
    #[error("header line is too long")]
    HeaderLineTooLong,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("message is too large")]
    MessageTooLarge,
    #[error("malformed Content-Length")]
    BadContentLength,
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    #[error("Content-Length is larger than the message")]
    ContentLengthTooLarge,
    #[error("Content-Length is required on a stream transport")]
    MissingContentLength,
    #[error("malformed URI")]
    BadUri,
    #[error("malformed name-addr")]
    BadNameAddr,
    #[error("missing Via")]
    MissingVia,
    #[error("malformed Via")]
    BadVia,
    #[error("missing From")]
    MissingFrom,
    #[error("more than one From")]
    DuplicateFrom,
    #[error("malformed From")]
    BadFrom,
    #[error("missing To")]
    MissingTo,
    #[error("more than one To")]
    DuplicateTo,
    #[error("malformed To")]
    BadTo,
    #[error("missing Call-ID")]
    MissingCallId,
    #[error("more than one Call-ID")]
    DuplicateCallId,
    #[error("malformed Call-ID")]
    BadCallId,
    #[error("missing CSeq")]
    MissingCSeq,
    #[error("more than one CSeq")]
    DuplicateCSeq,
    #[error("malformed CSeq")]
    BadCSeq,
    #[error("malformed or repeated Max-Forwards")]
    BadMaxForwards,
    #[error("malformed Contact")]
    BadContact,
    #[error("malformed or repeated Expires")]
    BadExpires,
}

/// A message (or one of its header fields) that could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{kind}")]
pub struct ParseError {
    kind: ErrorKind,
    in_response: bool,
}

impl ParseError {
    pub(crate) const fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            in_response: false,
        }
    }

    pub(crate) const fn in_response(kind: ErrorKind, in_response: bool) -> Self {
        Self { kind, in_response }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the broken message was a response (those are never answered).
    pub fn is_response(&self) -> bool {
        self.in_response
    }

    /// The status to answer with; `None` means drop the message silently (a response, a
    /// keepalive, or bytes that are not SIP).
    pub fn status(&self) -> Option<u16> {
        use ErrorKind as K;
        if self.in_response {
            return None;
        }
        match self.kind {
            K::Empty | K::NotSip => None,
            // RFC 3261 21.4.12: the only part of a request line that can be long is the URI.
            K::RequestLineTooLong => Some(414),
            // RFC 3261 21.5.11: the message exceeded what this server will process.
            K::MessageTooLarge | K::TooManyHeaders | K::HeaderLineTooLong => Some(513),
            K::NotUtf8
            | K::BadRequestLine
            | K::BadStatusLine
            | K::BadHeaderLine
            | K::BadContentLength
            | K::ConflictingContentLength
            | K::ContentLengthTooLarge
            | K::MissingContentLength
            | K::BadUri
            | K::BadNameAddr
            | K::MissingVia
            | K::BadVia
            | K::MissingFrom
            | K::DuplicateFrom
            | K::BadFrom
            | K::MissingTo
            | K::DuplicateTo
            | K::BadTo
            | K::MissingCallId
            | K::DuplicateCallId
            | K::BadCallId
            | K::MissingCSeq
            | K::DuplicateCSeq
            | K::BadCSeq
            | K::BadMaxForwards
            | K::BadContact
            | K::BadExpires => Some(400),
        }
    }

    /// A reason phrase for the status line of the answer.
    pub fn reason(&self) -> &'static str {
        use ErrorKind as K;
        match self.kind {
            K::Empty => "Empty Message",
            K::NotSip => "Not SIP",
            K::BadRequestLine => "Malformed Request-Line",
            K::BadStatusLine => "Malformed Status-Line",
            K::RequestLineTooLong => "Request-URI Too Long",
            K::NotUtf8 => "Header Section Not UTF-8",
            K::BadHeaderLine => "Malformed Header Line",
            K::HeaderLineTooLong => "Header Line Too Long",
            K::TooManyHeaders => "Too Many Header Fields",
            K::MessageTooLarge => "Message Too Large",
            K::BadContentLength => "Malformed Content-Length",
            K::ConflictingContentLength => "Conflicting Content-Length",
            K::ContentLengthTooLarge => "Content-Length Larger Than Message",
            K::MissingContentLength => "Missing Content-Length",
            K::BadUri => "Malformed URI",
            K::BadNameAddr => "Malformed Address",
            K::MissingVia => "Missing Via",
            K::BadVia => "Malformed Via",
            K::MissingFrom => "Missing From",
            K::DuplicateFrom => "Multiple From",
            K::BadFrom => "Malformed From",
            K::MissingTo => "Missing To",
            K::DuplicateTo => "Multiple To",
            K::BadTo => "Malformed To",
            K::MissingCallId => "Missing Call-ID",
            K::DuplicateCallId => "Multiple Call-ID",
            K::BadCallId => "Malformed Call-ID",
            K::MissingCSeq => "Missing CSeq",
            K::DuplicateCSeq => "Multiple CSeq",
            K::BadCSeq => "Malformed CSeq",
            K::BadMaxForwards => "Malformed Max-Forwards",
            K::BadContact => "Malformed Contact",
            K::BadExpires => "Malformed Expires",
        }
    }
}

impl From<ErrorKind> for ParseError {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_and_garbage_are_dropped() {
        assert_eq!(
            ParseError::in_response(ErrorKind::BadCSeq, true).status(),
            None
        );
        assert_eq!(ParseError::new(ErrorKind::NotSip).status(), None);
        assert_eq!(ParseError::new(ErrorKind::BadCSeq).status(), Some(400));
        assert_eq!(
            ParseError::new(ErrorKind::MessageTooLarge).status(),
            Some(513)
        );
        assert_eq!(
            ParseError::new(ErrorKind::BadVia).to_string(),
            "malformed Via"
        );
    }
}
