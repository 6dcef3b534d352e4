//! `name-addr` / `addr-spec` values of From, To, Contact, Route and friends (RFC 3261 20.10).

use crate::error::{ErrorKind, ParseError};
use crate::header::ListValues;
use crate::text::{
    find_param, is_lws, is_token_byte, params_are_valid, parse_digits_saturating, quoted_len, trim,
    trim_start,
};
use crate::uri::Uri;

/// An address with its header parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name: a quoted one without its quotes (escapes unresolved, see
    /// [`crate::unquote`]), or the unquoted tokens as sent.
    pub display: Option<&'a str>,
    /// The URI exactly as sent, without `<>`.
    pub uri_text: &'a str,
    pub uri: Uri<'a>,
    /// Raw header parameters after the address, starting with `;` (or empty).
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (already split from its comma list).
    ///
    /// Without `<>`, the URI ends at the first `;` (what follows are header parameters, RFC 3261
    /// 20.10) and may not contain `?` or `,`. Inside `<>`, surrounding spaces are tolerated.
    pub fn parse(value: &'a str) -> Result<Self, ParseError> {
        let bad = ParseError::new(ErrorKind::BadNameAddr);
        let value = trim(value);
        let bytes = value.as_bytes();
        let (display, bracketed) = if bytes.first() == Some(&b'"') {
            let len = quoted_len(bytes).ok_or(bad)?;
            let display = value.get(1..len - 1).ok_or(bad)?;
            let rest = trim_start(value.get(len..).ok_or(bad)?);
            if !rest.starts_with('<') {
                return Err(bad);
            }
            (Some(display), Some(rest))
        } else {
            match memchr::memchr3(b'<', b';', b'"', bytes) {
                Some(open) if bytes.get(open) == Some(&b'<') => {
                    let (display, rest) = value.split_at_checked(open).ok_or(bad)?;
                    let display = trim(display);
                    if !display.bytes().all(|b| is_token_byte(b) || is_lws(b)) {
                        return Err(bad);
                    }
                    ((!display.is_empty()).then_some(display), Some(rest))
                }
                _ => (None, None),
            }
        };
        let (uri_text, params) = match bracketed {
            Some(rest) => {
                let close = crate::text::find_byte(rest, b'>').ok_or(bad)?;
                let uri_text = trim(rest.get(1..close).ok_or(bad)?);
                (uri_text, rest.get(close + 1..).ok_or(bad)?)
            }
            None => {
                let end = value
                    .find(|c: char| c == ';' || c.is_ascii_whitespace())
                    .unwrap_or(value.len());
                let (uri_text, params) = value.split_at_checked(end).ok_or(bad)?;
                if uri_text.contains(['?', ',']) {
                    return Err(bad);
                }
                (uri_text, params)
            }
        };
        if !params_are_valid(params) {
            return Err(bad);
        }
        let uri = Uri::parse(uri_text)?;
        Ok(Self {
            display,
            uri_text,
            uri,
            params,
        })
    }

    /// A header parameter by case-insensitive name: `None` absent, `Some(None)` present without
    /// a value, `Some(Some(v))` its value without surrounding quotes (escapes unresolved).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }

    /// The `expires` contact parameter; values above `u32::MAX` are clamped to it (see
    /// [`crate::Message::expires`]).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.param("expires") {
            None => Ok(None),
            Some(value) => value
                .and_then(parse_digits_saturating)
                .map(|seconds| Some(u32::try_from(seconds).unwrap_or(u32::MAX)))
                .ok_or(ParseError::new(ErrorKind::BadContact)),
        }
    }
}

/// The Contact header field(s) of a message.
#[derive(Debug, Clone)]
pub enum Contacts<'m, 'a> {
    None,
    /// `Contact: *` (only valid alone, with `Expires: 0`, in a REGISTER).
    Star,
    List(ContactIter<'m, 'a>),
}

/// Contact values across all Contact lines, each parsed on demand.
#[derive(Debug, Clone)]
pub struct ContactIter<'m, 'a> {
    values: ListValues<'m, 'a>,
}

impl<'m, 'a> ContactIter<'m, 'a> {
    pub(crate) fn new(values: ListValues<'m, 'a>) -> Self {
        Self { values }
    }
}

impl<'a> Iterator for ContactIter<'_, 'a> {
    type Item = Result<NameAddr<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let value = self.values.next()?;
        Some(NameAddr::parse(value).map_err(|_| ParseError::new(ErrorKind::BadContact)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_name_addr() {
        let addr = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8"#,
        )
        .expect("valid");
        assert_eq!(addr.display, Some(r#"J Rosenberg \\\""#));
        assert_eq!(addr.uri_text, "sip:jdrosen@example.com");
        assert_eq!(addr.tag(), Some("98asjd8"));

        let addr = NameAddr::parse("caller<sip:caller@example.com>;tag=323").expect("valid");
        assert_eq!(addr.display, Some("caller"));
        assert_eq!(addr.tag(), Some("323"));

        let addr = NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
            .expect("valid");
        assert_eq!(addr.display, None);
        assert_eq!(addr.tag(), Some("1918181833n"));
    }

    #[test]
    fn contact_params_versus_uri_params() {
        let unbracketed =
            NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").expect("valid");
        assert_eq!(unbracketed.uri_text, "sip:+19725552222@gw1.example.net");
        assert_eq!(unbracketed.param("unknownparam"), Some(None));
        let bracketed =
            NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").expect("valid");
        assert_eq!(
            bracketed.uri_text,
            "sip:+19725552222@gw1.example.net;unknownparam"
        );
        assert_eq!(bracketed.uri.param("unknownparam"), Some(None));
        assert_eq!(bracketed.params, "");
    }

    #[test]
    fn contact_expires_clamps() {
        let addr = NameAddr::parse("<sip:u@h>;expires=280297596632815").expect("valid");
        assert_eq!(addr.expires(), Ok(Some(u32::MAX)));
        let addr = NameAddr::parse("<sip:u@h>;expires=abc").expect("valid");
        assert!(addr.expires().is_err());
    }

    #[test]
    fn malformed_name_addrs() {
        for value in [
            r#""Mr. J. User <sip:j.user@example.com>"#,
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            r#""Joe" <sip:joe@example.org>;;;;"#,
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:user@example.com",
            "",
            "<>",
            r#""Joe" sip:joe@example.org"#,
        ] {
            assert!(NameAddr::parse(value).is_err(), "{value}");
        }
        assert!(NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >").is_ok());
    }
}
