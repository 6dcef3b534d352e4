//! Header field names (long and compact forms, case-insensitive) and the header list iterator.

use std::fmt;

use crate::text::CommaList;

/// A header field name. Parsing maps every spelling of a known name (any case, compact form) to
/// its variant, so `Other` only ever holds unknown names.
#[derive(Debug, Clone, Copy, Eq)]
pub enum HeaderName<'a> {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    Expires,
    MaxForwards,
    ContentLength,
    ContentType,
    ContentEncoding,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    AuthenticationInfo,
    UserAgent,
    Require,
    ProxyRequire,
    Supported,
    Unsupported,
    Path,
    Route,
    RecordRoute,
    Allow,
    AllowEvents,
    Event,
    Date,
    Accept,
    Server,
    MinExpires,
    RetryAfter,
    Subject,
    ReferTo,
    ReferredBy,
    SessionExpires,
    Identity,
    Timestamp,
    Warning,
    Other(&'a str),
}

/// The longest known name, `proxy-authorization`.
const LONGEST_KNOWN_NAME: usize = 19;

impl<'a> HeaderName<'a> {
    /// Maps a header name as sent (any case, compact or long form) to its variant.
    pub fn parse(name: &'a str) -> Self {
        let mut lower = [0u8; LONGEST_KNOWN_NAME];
        let Some(buffer) = lower.get_mut(..name.len()) else {
            return Self::Other(name);
        };
        for (target, byte) in buffer.iter_mut().zip(name.bytes()) {
            *target = byte.to_ascii_lowercase();
        }
        match &*buffer {
            b"via" | b"v" => Self::Via,
            b"from" | b"f" => Self::From,
            b"to" | b"t" => Self::To,
            b"call-id" | b"i" => Self::CallId,
            b"cseq" => Self::CSeq,
            b"contact" | b"m" => Self::Contact,
            b"expires" => Self::Expires,
            b"max-forwards" => Self::MaxForwards,
            b"content-length" | b"l" => Self::ContentLength,
            b"content-type" | b"c" => Self::ContentType,
            b"content-encoding" | b"e" => Self::ContentEncoding,
            b"authorization" => Self::Authorization,
            b"proxy-authorization" => Self::ProxyAuthorization,
            b"www-authenticate" => Self::WwwAuthenticate,
            b"proxy-authenticate" => Self::ProxyAuthenticate,
            b"authentication-info" => Self::AuthenticationInfo,
            b"user-agent" => Self::UserAgent,
            b"require" => Self::Require,
            b"proxy-require" => Self::ProxyRequire,
            b"supported" | b"k" => Self::Supported,
            b"unsupported" => Self::Unsupported,
            b"path" => Self::Path,
            b"route" => Self::Route,
            b"record-route" => Self::RecordRoute,
            b"allow" => Self::Allow,
            b"allow-events" | b"u" => Self::AllowEvents,
            b"event" | b"o" => Self::Event,
            b"date" => Self::Date,
            b"accept" => Self::Accept,
            b"server" => Self::Server,
            b"min-expires" => Self::MinExpires,
            b"retry-after" => Self::RetryAfter,
            b"subject" | b"s" => Self::Subject,
            b"refer-to" | b"r" => Self::ReferTo,
            b"referred-by" | b"b" => Self::ReferredBy,
            b"session-expires" | b"x" => Self::SessionExpires,
            b"identity" | b"y" => Self::Identity,
            b"timestamp" => Self::Timestamp,
            b"warning" => Self::Warning,
            _ => Self::Other(name),
        }
    }

    /// The canonical (long) spelling; an unknown name as it was sent.
    pub fn as_str(&self) -> &'a str {
        match self {
            Self::Via => "Via",
            Self::From => "From",
            Self::To => "To",
            Self::CallId => "Call-ID",
            Self::CSeq => "CSeq",
            Self::Contact => "Contact",
            Self::Expires => "Expires",
            Self::MaxForwards => "Max-Forwards",
            Self::ContentLength => "Content-Length",
            Self::ContentType => "Content-Type",
            Self::ContentEncoding => "Content-Encoding",
            Self::Authorization => "Authorization",
            Self::ProxyAuthorization => "Proxy-Authorization",
            Self::WwwAuthenticate => "WWW-Authenticate",
            Self::ProxyAuthenticate => "Proxy-Authenticate",
            Self::AuthenticationInfo => "Authentication-Info",
            Self::UserAgent => "User-Agent",
            Self::Require => "Require",
            Self::ProxyRequire => "Proxy-Require",
            Self::Supported => "Supported",
            Self::Unsupported => "Unsupported",
            Self::Path => "Path",
            Self::Route => "Route",
            Self::RecordRoute => "Record-Route",
            Self::Allow => "Allow",
            Self::AllowEvents => "Allow-Events",
            Self::Event => "Event",
            Self::Date => "Date",
            Self::Accept => "Accept",
            Self::Server => "Server",
            Self::MinExpires => "Min-Expires",
            Self::RetryAfter => "Retry-After",
            Self::Subject => "Subject",
            Self::ReferTo => "Refer-To",
            Self::ReferredBy => "Referred-By",
            Self::SessionExpires => "Session-Expires",
            Self::Identity => "Identity",
            Self::Timestamp => "Timestamp",
            Self::Warning => "Warning",
            Self::Other(name) => name,
        }
    }

    /// Whether the grammar makes this header a comma-separated list (RFC 3261 7.3.1), so that
    /// one line may carry several values. Single-value headers (Call-ID, CSeq, From, ...) and the
    /// authentication headers, whose values contain commas, are not.
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            Self::Via
                | Self::Contact
                | Self::Route
                | Self::RecordRoute
                | Self::Path
                | Self::Require
                | Self::ProxyRequire
                | Self::Supported
                | Self::Unsupported
                | Self::Allow
                | Self::AllowEvents
                | Self::Accept
                | Self::ContentEncoding
                | Self::Warning
        )
    }

    /// Re-parses a hand-built `Other("Via")` into `Via`, so lookups by either spelling agree.
    pub(crate) fn normalized(self) -> Self {
        match self {
            Self::Other(name) => Self::parse(name),
            known => known,
        }
    }
}

/// Known names compare by variant; unknown names compare case-insensitively.
impl PartialEq for HeaderName<'_> {
    fn eq(&self, other: &HeaderName<'_>) -> bool {
        match (self, other) {
            (Self::Other(left), HeaderName::Other(right)) => left.eq_ignore_ascii_case(right),
            (Self::Other(_), _) | (_, HeaderName::Other(_)) => false,
            _ => same_variant(self, other),
        }
    }
}

/// Both references shrink to one lifetime, which `mem::discriminant` needs.
fn same_variant<'x>(left: &HeaderName<'x>, right: &HeaderName<'x>) -> bool {
    std::mem::discriminant(left) == std::mem::discriminant(right)
}

impl fmt::Display for HeaderName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field: its name and its value, trimmed. A folded value keeps its CRLF + WSP line
/// breaks (they are LWS to every accessor; see [`crate::unfold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: HeaderName<'a>,
    pub value: &'a str,
}

impl Header<'_> {
    pub(crate) const EMPTY: Header<'static> = Header {
        name: HeaderName::Other(""),
        value: "",
    };
}

/// The comma-separated values of one header across all its lines, in order, splitting outside
/// quoted strings and `<...>`. Values are trimmed; an empty element (`a,,b`) is yielded as `""`.
#[derive(Debug, Clone)]
pub struct ListValues<'m, 'a> {
    headers: std::slice::Iter<'m, Header<'a>>,
    name: HeaderName<'m>,
    current: Option<CommaList<'a>>,
}

impl<'m, 'a> ListValues<'m, 'a> {
    pub(crate) fn new(headers: &'m [Header<'a>], name: HeaderName<'m>) -> Self {
        Self {
            headers: headers.iter(),
            name: name.normalized(),
            current: None,
        }
    }
}

impl<'a> Iterator for ListValues<'_, 'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if let Some(value) = self.current.as_mut().and_then(Iterator::next) {
                return Some(value);
            }
            let header = self.headers.find(|header| header.name == self.name)?;
            self.current = Some(CommaList::new(header.value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        for (sent, expected) in [
            ("v", HeaderName::Via),
            ("MaX-fOrWaRdS", HeaderName::MaxForwards),
            ("i", HeaderName::CallId),
            ("L", HeaderName::ContentLength),
            ("k", HeaderName::Supported),
            ("o", HeaderName::Event),
            ("u", HeaderName::AllowEvents),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("y", HeaderName::Identity),
            ("WWW-Authenticate", HeaderName::WwwAuthenticate),
        ] {
            assert_eq!(HeaderName::parse(sent), expected, "{sent}");
        }
        assert_eq!(
            HeaderName::parse("C%6Fntact"),
            HeaderName::Other("c%6fntact")
        );
        assert_eq!(
            HeaderName::parse("a-very-long-unknown-header-name").as_str(),
            "a-very-long-unknown-header-name"
        );
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
        assert_ne!(HeaderName::Via, HeaderName::Other("X"));
    }
}
