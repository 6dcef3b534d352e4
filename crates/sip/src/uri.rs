//! URIs: the SIP/SIPS structure (RFC 3261 19.1) and, for every other scheme, just the scheme and
//! the opaque rest (RFC 3986 absolute URI), so that `tel:`, `isbn:` or `http:` URIs parse and
//! the decision to reject them is left to the caller.

use crate::error::{ErrorKind, ParseError};
use crate::text::{find_byte, find_param, params_are_valid, split_once_byte};

/// A parsed URI. For a non-SIP scheme only `scheme` and `opaque` are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    /// As sent (compare case-insensitively, or use [`Uri::is_sip`]).
    pub scheme: &'a str,
    /// Still %-escaped, as sent.
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    /// A host name, IPv4 address, or IPv6 reference with its brackets (`[::1]`).
    pub host: &'a str,
    pub port: Option<u16>,
    /// Raw URI parameters, starting with `;` (or empty).
    pub params: &'a str,
    /// Raw URI headers after `?` (or empty).
    pub headers: &'a str,
    /// Everything after `scheme:`.
    pub opaque: &'a str,
}

fn is_scheme(scheme: &str) -> bool {
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Characters no URI may contain unescaped (control characters, space, `<>"`).
fn is_forbidden_uri_byte(byte: u8) -> bool {
    byte <= b' ' || matches!(byte, b'<' | b'>' | b'"' | 0x7f)
}

fn is_host_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_')
}

/// Validates `host` as a host name, IPv4 address or bracketed IPv6 reference.
pub(crate) fn is_valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        return inner.strip_suffix(']').is_some_and(|address| {
            address.contains(':')
                && address
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        });
    }
    !host.is_empty() && host.bytes().all(is_host_byte)
}

/// Parses a port: 1 to 5 digits that fit a `u16`.
pub(crate) fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Splits `host[:port]` where host may be a bracketed IPv6 reference.
pub(crate) fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, after_host) = if text.starts_with('[') {
        let close = find_byte(text, b']')?;
        text.split_at_checked(close + 1)?
    } else {
        match find_byte(text, b':') {
            Some(colon) => text.split_at_checked(colon)?,
            None => (text, ""),
        }
    };
    if !is_valid_host(host) {
        return None;
    }
    let port = match after_host.strip_prefix(':') {
        Some(digits) => Some(parse_port(digits)?),
        None if after_host.is_empty() => None,
        None => return None,
    };
    Some((host, port))
}

impl<'a> Uri<'a> {
    /// Parses a URI with no surrounding `<>` and no white space.
    pub fn parse(text: &'a str) -> Result<Self, ParseError> {
        let bad = ParseError::new(ErrorKind::BadUri);
        let (scheme, opaque) = split_once_byte(text, b':').ok_or(bad)?;
        if !is_scheme(scheme) || opaque.is_empty() || opaque.bytes().any(is_forbidden_uri_byte) {
            return Err(bad);
        }
        let mut uri = Uri {
            scheme,
            user: None,
            password: None,
            host: "",
            port: None,
            params: "",
            headers: "",
            opaque,
        };
        if !uri.is_sip() {
            return Ok(uri);
        }
        // `@` may appear only as the end of the userinfo, which itself may contain `;?/,`.
        let host_part = match split_once_byte(opaque, b'@') {
            Some((userinfo, host_part)) => {
                let (user, password) = match split_once_byte(userinfo, b':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                if user.is_empty() {
                    return Err(bad);
                }
                uri.user = Some(user);
                uri.password = password;
                host_part
            }
            None => opaque,
        };
        let (before_headers, headers) = split_once_byte(host_part, b'?').unwrap_or((host_part, ""));
        let (host_port, params) = match find_byte(before_headers, b';') {
            Some(semicolon) => before_headers.split_at_checked(semicolon).ok_or(bad)?,
            None => (before_headers, ""),
        };
        let (host, port) = split_host_port(host_port).ok_or(bad)?;
        if !params_are_valid(params) {
            return Err(bad);
        }
        uri.host = host;
        uri.port = port;
        uri.params = params;
        uri.headers = headers;
        Ok(uri)
    }

    /// A URI parameter by case-insensitive name: `None` absent, `Some(None)` present without a
    /// value (`;lr`), `Some(Some(v))` with its value as sent.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// `sip` or `sips`, in any case.
    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }

    pub fn is_sips(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sips")
    }

    pub fn host_port(&self) -> (&'a str, Option<u16>) {
        (self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_with_everything() {
        let uri = Uri::parse("sip:u:pw@h.example.com:5070;transport=tcp;lr?Route=%3Csip:x%3E")
            .expect("valid");
        assert_eq!(uri.scheme, "sip");
        assert_eq!(uri.user, Some("u"));
        assert_eq!(uri.password, Some("pw"));
        assert_eq!(uri.host_port(), ("h.example.com", Some(5070)));
        assert_eq!(uri.params, ";transport=tcp;lr");
        assert_eq!(uri.param("TRANSPORT"), Some(Some("tcp")));
        assert_eq!(uri.param("lr"), Some(None));
        assert_eq!(uri.headers, "Route=%3Csip:x%3E");
    }

    #[test]
    fn ipv6_reference() {
        let uri = Uri::parse("sips:[::1]:5061").expect("valid");
        assert_eq!(uri.host_port(), ("[::1]", Some(5061)));
        assert!(uri.is_sips());
        assert!(Uri::parse("sip:[::1").is_err());
        assert!(Uri::parse("sip:[zz]").is_err());
    }

    #[test]
    fn odd_but_valid_user_parts() {
        let uri = Uri::parse("sip:user;par=u%40example.net@example.com").expect("valid");
        assert_eq!(uri.user, Some("user;par=u%40example.net"));
        assert_eq!(uri.host, "example.com");
        let uri = Uri::parse(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .expect("valid");
        assert_eq!(
            uri.password,
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(uri.host, "example.com");
    }

    #[test]
    fn other_schemes_are_opaque() {
        let uri = Uri::parse("soap.beep://192.0.2.103:3002").expect("valid");
        assert!(!uri.is_sip());
        assert_eq!(uri.opaque, "//192.0.2.103:3002");
        assert!(Uri::parse("isbn:2983792873").is_ok());
    }

    #[test]
    fn malformed_uris() {
        for text in [
            "<sip:user@example.com>",
            "sip:user@example.com; lr",
            "sip:",
            "sip:@host",
            "sip:host:99999",
            "sip:host:",
            "sip:host;;",
            "nocolon",
            "1sip:x",
        ] {
            assert!(Uri::parse(text).is_err(), "{text}");
        }
    }
}
