//! Authorization / Proxy-Authorization credentials (RFC 3261 22.4, RFC 7616 digest).

use crate::text::{is_lws, is_token_byte, quoted_len, strip_quotes, take_while, trim, trim_start};

/// One Authorization or Proxy-Authorization value: the scheme and its raw parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub scheme: &'a str,
    /// Raw `name=value` list after the scheme.
    pub params: &'a str,
}

/// The fields of Digest credentials a registrar needs. Quoted values are given without their
/// quotes and with escapes unresolved (see [`crate::unquote`]); `nc` is the raw 8 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestCredentials<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub response: &'a str,
    pub algorithm: Option<&'a str>,
    pub cnonce: Option<&'a str>,
    pub qop: Option<&'a str>,
    pub nc: Option<&'a str>,
    pub opaque: Option<&'a str>,
    /// RFC 7616 `userhash=true`.
    pub userhash: bool,
}

/// Iterates `name=value` pairs separated by commas; a value is a token-ish run or a quoted string
/// (yielded with its quotes). Stops at the first syntax error.
#[derive(Debug, Clone)]
struct AuthParams<'a> {
    rest: &'a str,
}

impl<'a> Iterator for AuthParams<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest.trim_start_matches([',', ' ', '\t', '\r', '\n']);
        self.rest = "";
        let (name, rest) = take_while(rest, is_token_byte);
        let rest = trim_start(rest).strip_prefix('=')?;
        let rest = trim_start(rest);
        let (value, rest) = if rest.starts_with('"') {
            rest.split_at_checked(quoted_len(rest.as_bytes())?)?
        } else {
            take_while(rest, |b| b != b',' && !is_lws(b))
        };
        if name.is_empty() || value.is_empty() {
            return None;
        }
        let rest = trim_start(rest);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
        self.rest = rest;
        Some((name, value))
    }
}

impl<'a> Credentials<'a> {
    pub fn parse(value: &'a str) -> Self {
        let (scheme, params) = take_while(trim(value), is_token_byte);
        Self {
            scheme,
            params: trim(params),
        }
    }

    fn pairs(&self) -> AuthParams<'a> {
        AuthParams { rest: self.params }
    }

    /// A parameter by case-insensitive name: quoted content without the quotes, escapes NOT
    /// resolved.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.pairs()
            .find(|(found, _)| found.eq_ignore_ascii_case(name))
            .map(|(_, value)| strip_quotes(value))
    }

    /// The Digest fields, when the scheme is Digest and username, realm, nonce, uri and response
    /// are all present. One pass over the parameters; the first occurrence of each wins.
    pub fn digest(&self) -> Option<DigestCredentials<'a>> {
        if !self.scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let (mut username, mut realm, mut nonce, mut uri, mut response) =
            (None, None, None, None, None);
        let mut digest = DigestCredentials {
            username: "",
            realm: "",
            nonce: "",
            uri: "",
            response: "",
            algorithm: None,
            cnonce: None,
            qop: None,
            nc: None,
            opaque: None,
            userhash: false,
        };
        for (name, raw) in self.pairs() {
            let value = strip_quotes(raw);
            let slot = match name.len() {
                2 if name.eq_ignore_ascii_case("nc") => &mut digest.nc,
                3 if name.eq_ignore_ascii_case("uri") => &mut uri,
                3 if name.eq_ignore_ascii_case("qop") => &mut digest.qop,
                5 if name.eq_ignore_ascii_case("realm") => &mut realm,
                5 if name.eq_ignore_ascii_case("nonce") => &mut nonce,
                6 if name.eq_ignore_ascii_case("cnonce") => &mut digest.cnonce,
                6 if name.eq_ignore_ascii_case("opaque") => &mut digest.opaque,
                8 if name.eq_ignore_ascii_case("username") => &mut username,
                8 if name.eq_ignore_ascii_case("response") => &mut response,
                8 if name.eq_ignore_ascii_case("userhash") => {
                    digest.userhash = value.eq_ignore_ascii_case("true");
                    continue;
                }
                9 if name.eq_ignore_ascii_case("algorithm") => &mut digest.algorithm,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        digest.username = username?;
        digest.realm = realm?;
        digest.nonce = nonce?;
        digest.uri = uri?;
        digest.response = response?;
        Some(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials() {
        let credentials = Credentials::parse(
            r#"Digest username="user000001",realm="bench.local",uri="sip:127.0.0.1:5070",nonce="abc",response="0123",algorithm=SHA-256, qop=auth, nc=0000000a, cnonce="x\"y", userhash=TRUE"#,
        );
        assert_eq!(credentials.scheme, "Digest");
        assert_eq!(credentials.param("REALM"), Some("bench.local"));
        let digest = credentials.digest().expect("complete");
        assert_eq!(digest.username, "user000001");
        assert_eq!(digest.uri, "sip:127.0.0.1:5070");
        assert_eq!(digest.algorithm, Some("SHA-256"));
        assert_eq!(digest.nc, Some("0000000a"));
        assert_eq!(digest.cnonce, Some(r#"x\"y"#));
        assert!(digest.userhash);
    }

    #[test]
    fn incomplete_or_foreign_credentials() {
        assert!(
            Credentials::parse(r#"Digest username="u", realm="r""#)
                .digest()
                .is_none()
        );
        let other = Credentials::parse("NoOneKnowsThisScheme opaque-data=here");
        assert_eq!(other.scheme, "NoOneKnowsThisScheme");
        assert_eq!(other.param("opaque-data"), Some("here"));
        assert!(other.digest().is_none());
        assert_eq!(
            Credentials::parse(r#"Digest realm="unterminated"#).param("realm"),
            None
        );
    }
}
