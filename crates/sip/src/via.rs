//! Via values (RFC 3261 20.42, RFC 3581 `rport`).

use crate::error::{ErrorKind, ParseError};
use crate::text::{
    find_param, is_lws, is_token_byte, params_are_valid, take_while, trim, trim_start,
};
use crate::uri::{is_valid_host, parse_port};

/// One Via value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The protocol version from `SIP/2.0/UDP` (`2.0`).
    pub version: &'a str,
    /// `UDP`, `TCP`, `TLS`, `WS`, ... as sent.
    pub transport: &'a str,
    /// Host name, IPv4 address, or IPv6 reference with brackets.
    pub host: &'a str,
    pub port: Option<u16>,
    /// Raw parameters, starting with `;` (possibly after LWS), or empty.
    pub params: &'a str,
}

fn expect_slash(text: &str) -> Option<&str> {
    Some(trim_start(trim_start(text).strip_prefix('/')?))
}

impl<'a> Via<'a> {
    /// Parses one Via value (already split from its comma list). LWS is allowed around the `/`
    /// and `:` separators and the `;` and `=` of parameters.
    pub fn parse(value: &'a str) -> Result<Self, ParseError> {
        Self::parse_inner(value).ok_or(ParseError::new(ErrorKind::BadVia))
    }

    fn parse_inner(value: &'a str) -> Option<Self> {
        let value = trim(value);
        let (protocol, rest) = take_while(value, is_token_byte);
        if !protocol.eq_ignore_ascii_case("SIP") {
            return None;
        }
        let (version, rest) = take_while(expect_slash(rest)?, is_token_byte);
        let (transport, rest) = take_while(expect_slash(rest)?, is_token_byte);
        if version.is_empty() || transport.is_empty() || !rest.bytes().next().is_some_and(is_lws) {
            return None;
        }
        let rest = trim_start(rest);
        let host_end = if rest.starts_with('[') {
            rest.find(']')? + 1
        } else {
            rest.bytes()
                .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')))
                .unwrap_or(rest.len())
        };
        let (host, rest) = rest.split_at_checked(host_end)?;
        if !is_valid_host(host) {
            return None;
        }
        let after_host = trim_start(rest);
        let (port, params) = match after_host.strip_prefix(':') {
            Some(port_text) => {
                let (digits, params) = take_while(trim_start(port_text), |b| b.is_ascii_digit());
                (Some(parse_port(digits)?), params)
            }
            None => (None, rest),
        };
        if !params_are_valid(params) {
            return None;
        }
        let via = Self {
            version,
            transport,
            host,
            port,
            params,
        };
        if let Some(Some(port)) = via.param("rport") {
            parse_port(port)?;
        }
        Some(via)
    }

    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.param("branch").flatten()
    }

    pub fn received(&self) -> Option<&'a str> {
        self.param("received").flatten()
    }

    /// RFC 3581: `None` absent, `Some(None)` requested (`;rport`), `Some(Some(port))` filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|value| value.and_then(parse_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_via() {
        let via =
            Via::parse("SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1234-1-0;rport").expect("valid");
        assert_eq!(
            (via.version, via.transport, via.host, via.port),
            ("2.0", "UDP", "127.0.0.1", Some(5090))
        );
        assert_eq!(via.branch(), Some("z9hG4bK-1234-1-0"));
        assert_eq!(via.rport(), Some(None));
    }

    #[test]
    fn folded_via_with_lws_everywhere() {
        let via =
            Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").expect("valid");
        assert_eq!(
            (via.transport, via.host, via.branch()),
            ("UDP", "192.0.2.2", Some("390skdjuw"))
        );
        let via = Via::parse("SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239")
            .expect("valid");
        assert_eq!(via.branch(), Some("z9hG4bK30239"));
        let via = Via::parse("SIP/2.0/TCP [2001:db8::9] : 5061 ;received=[2001:db8::1];rport=5062")
            .expect("valid");
        assert_eq!(
            (via.host, via.port, via.rport()),
            ("[2001:db8::9]", Some(5061), Some(Some(5062)))
        );
    }

    #[test]
    fn malformed_vias() {
        for value in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/2.0 UDP host",
            "HTTP/1.1/TCP host",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host junk",
        ] {
            assert!(Via::parse(value).is_err(), "{value}");
        }
    }
}
