//! Byte-level building blocks shared by every header parser: RFC 3261 token and LWS classes,
//! quoted strings, comma lists and `;name=value` parameter lists.
//!
//! All positions handed to slicing come from ASCII bytes found by scanning, so they are always
//! UTF-8 character boundaries; the code still slices with `get` where a bug could otherwise panic.

use std::borrow::Cow;

/// RFC 3261 `token` characters.
pub(crate) fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte)
}

/// Linear white space, including the CR and LF of a folded line.
pub(crate) fn is_lws(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn trim(text: &str) -> &str {
    let bytes = text.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| !is_lws(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_lws(b))
        .map_or(start, |last| last + 1);
    text.get(start..end).unwrap_or_default()
}

pub(crate) fn trim_start(text: &str) -> &str {
    let start = text.bytes().position(|b| !is_lws(b)).unwrap_or(text.len());
    text.get(start..).unwrap_or_default()
}

/// Position of the first `byte` (ASCII) in `text`; always a character boundary.
pub(crate) fn find_byte(text: &str, byte: u8) -> Option<usize> {
    memchr::memchr(byte, text.as_bytes())
}

/// Splits around the first `byte` (ASCII), like `str::split_once` but with memchr.
pub(crate) fn split_once_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    let index = find_byte(text, byte)?;
    Some((text.get(..index)?, text.get(index + 1..)?))
}

/// Splits `text` after its leading run of bytes accepted by `accept`.
pub(crate) fn take_while(text: &str, accept: impl Fn(u8) -> bool) -> (&str, &str) {
    let end = text.bytes().position(|b| !accept(b)).unwrap_or(text.len());
    text.split_at_checked(end).unwrap_or((text, ""))
}

/// Length in bytes of the quoted string at the start of `bytes` (which must begin with `"`),
/// both quotes included; `None` when it is not terminated.
pub(crate) fn quoted_len(bytes: &[u8]) -> Option<usize> {
    let mut index = 1;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'\\' => index += 2,
            b'"' => return Some(index + 1),
            _ => index += 1,
        }
    }
    None
}

/// Strips one pair of surrounding double quotes, if present.
pub(crate) fn strip_quotes(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

/// Resolves the backslash escapes of a quoted string; surrounding quotes, if present, are removed.
/// Borrows when there is nothing to resolve.
pub fn unquote(raw: &str) -> Cow<'_, str> {
    let inner = if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        raw.get(1..raw.len() - 1).unwrap_or(raw)
    } else {
        raw
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut resolved = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                resolved.push(escaped);
            }
        } else {
            resolved.push(c);
        }
    }
    Cow::Owned(resolved)
}

/// Removes the line breaks of folded lines (CRLF or LF followed by SP/HT), keeping the white space
/// that follows them, so a folded value reads as one line. Borrows when the value is not folded.
pub fn unfold(value: &str) -> Cow<'_, str> {
    if !value.contains('\n') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    for piece in UnfoldPieces::new(value) {
        out.push_str(piece);
    }
    Cow::Owned(out)
}

/// The pieces of a value between fold line breaks; concatenated they are the unfolded value.
/// Used to write a value without allocating.
#[derive(Debug, Clone)]
pub(crate) struct UnfoldPieces<'a> {
    rest: &'a str,
}

impl<'a> UnfoldPieces<'a> {
    pub(crate) fn new(value: &'a str) -> Self {
        Self { rest: value }
    }
}

impl<'a> Iterator for UnfoldPieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let bytes = self.rest.as_bytes();
        let mut search = 0;
        while let Some(offset) = memchr::memchr(b'\n', bytes.get(search..).unwrap_or_default()) {
            let newline = search + offset;
            if matches!(bytes.get(newline + 1), Some(b' ' | b'\t')) {
                let piece_end = if newline > 0 && bytes.get(newline - 1) == Some(&b'\r') {
                    newline - 1
                } else {
                    newline
                };
                let piece = self.rest.get(..piece_end).unwrap_or_default();
                self.rest = self.rest.get(newline + 1..).unwrap_or_default();
                return Some(piece);
            }
            search = newline + 1;
        }
        let piece = self.rest;
        self.rest = "";
        Some(piece)
    }
}

/// Iterator over the elements of a comma-separated header value; commas inside quoted strings
/// and `<...>` do not split. Elements are trimmed; empty elements (`a,,b`) are yielded as `""`
/// so that callers can reject them.
#[derive(Debug, Clone)]
pub(crate) struct CommaList<'a> {
    rest: Option<&'a str>,
}

impl<'a> CommaList<'a> {
    pub(crate) fn new(value: &'a str) -> Self {
        let value = trim(value);
        Self {
            rest: (!value.is_empty()).then_some(value),
        }
    }
}

impl<'a> Iterator for CommaList<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let bytes = rest.as_bytes();
        let mut index = 0;
        while let Some(offset) =
            memchr::memchr3(b',', b'"', b'<', bytes.get(index..).unwrap_or_default())
        {
            index += offset;
            match bytes.get(index) {
                Some(b'"') => match quoted_len(bytes.get(index..).unwrap_or_default()) {
                    Some(len) => index += len,
                    None => break,
                },
                Some(b'<') => {
                    // Inside `<...>` only the closing bracket matters.
                    match memchr::memchr(b'>', bytes.get(index..).unwrap_or_default()) {
                        Some(close) => index += close + 1,
                        None => break,
                    }
                }
                Some(b',') => {
                    let item = rest.get(..index).unwrap_or_default();
                    self.rest = rest.get(index + 1..);
                    return Some(trim(item));
                }
                _ => index += 1,
            }
        }
        self.rest = None;
        Some(trim(rest))
    }
}

/// A `;`-separated parameter list: `;name`, `;name=token`, `;name="quoted"`, with optional LWS
/// around `;` and `=`. Yields `(name, raw value)`; a quoted value keeps its quotes here. A syntax
/// error is yielded once as `Err(())` and ends the iteration.
#[derive(Debug, Clone)]
pub(crate) struct Params<'a> {
    rest: &'a str,
}

impl<'a> Params<'a> {
    pub(crate) fn new(raw: &'a str) -> Self {
        Self { rest: raw }
    }
}

fn is_param_value_byte(byte: u8) -> bool {
    !is_lws(byte)
        && !matches!(byte, b';' | b',' | b'"' | b'<' | b'>')
        && byte > 0x20
        && byte != 0x7f
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<(&'a str, Option<&'a str>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = trim_start(self.rest);
        self.rest = "";
        if rest.is_empty() {
            return None;
        }
        let Some(after_semicolon) = rest.strip_prefix(';') else {
            return Some(Err(()));
        };
        let rest = trim_start(after_semicolon);
        let (name, after_name) = take_while(rest, is_token_byte);
        if name.is_empty() {
            return Some(Err(()));
        }
        let after_name = trim_start(after_name);
        let Some(after_equals) = after_name.strip_prefix('=') else {
            self.rest = after_name;
            return Some(Ok((name, None)));
        };
        let value_start = trim_start(after_equals);
        let (value, after_value) = if value_start.starts_with('"') {
            match quoted_len(value_start.as_bytes()) {
                Some(len) => match value_start.split_at_checked(len) {
                    Some(split) => split,
                    None => return Some(Err(())),
                },
                None => return Some(Err(())),
            }
        } else {
            take_while(value_start, is_param_value_byte)
        };
        if value.is_empty() {
            return Some(Err(()));
        }
        self.rest = after_value;
        Some(Ok((name, Some(value))))
    }
}

/// Runs a whole parameter list through the grammar; also rejects anything but `;` between them.
pub(crate) fn params_are_valid(raw: &str) -> bool {
    let trimmed = trim_start(raw);
    if !trimmed.is_empty() && !trimmed.starts_with(';') {
        return false;
    }
    Params::new(raw).all(|param| param.is_ok())
}

/// Looks a parameter up by case-insensitive name: `None` = absent, `Some(None)` = present
/// without a value, `Some(Some(v))` = its value without surrounding quotes (escapes unresolved).
pub(crate) fn find_param<'a>(raw: &'a str, name: &str) -> Option<Option<&'a str>> {
    for param in Params::new(raw) {
        let (found, value) = param.ok()?;
        if found.eq_ignore_ascii_case(name) {
            return Some(value.map(strip_quotes));
        }
    }
    None
}

/// Parses a run of ASCII digits into a `u64`, saturating at `u64::MAX` instead of overflowing.
pub(crate) fn parse_digits_saturating(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.bytes().fold(0u64, |value, b| {
        value.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_list_respects_quotes_and_brackets() {
        let items: Vec<_> = CommaList::new(r#" "a,\"b" <sip:x@y;p=1,2>;q=1 , c,,d "#).collect();
        assert_eq!(items, vec![r#""a,\"b" <sip:x@y;p=1,2>;q=1"#, "c", "", "d"]);
        assert_eq!(CommaList::new("  ").count(), 0);
        assert_eq!(
            CommaList::new(r#""open, x"#).collect::<Vec<_>>(),
            vec![r#""open, x"#]
        );
    }

    #[test]
    fn params_with_lws_and_quotes() {
        let raw = " ;   tag    = 1918181833n ;\r\n  lr; q=\"a;b\"";
        let items: Vec<_> = Params::new(raw).collect();
        assert_eq!(
            items,
            vec![
                Ok(("tag", Some("1918181833n"))),
                Ok(("lr", None)),
                Ok(("q", Some("\"a;b\"")))
            ]
        );
        assert_eq!(find_param(raw, "Q"), Some(Some("a;b")));
        assert_eq!(find_param(raw, "LR"), Some(None));
        assert_eq!(find_param(raw, "x"), None);
    }

    #[test]
    fn bad_params_are_rejected() {
        assert!(!params_are_valid(";;"));
        assert!(!params_are_valid(";a=b c"));
        assert!(!params_are_valid(";a="));
        assert!(!params_are_valid(";a=\"open"));
        assert!(!params_are_valid("junk;a"));
        assert!(params_are_valid(""));
        assert!(params_are_valid(" ; a ; b = c "));
    }

    #[test]
    fn unquote_and_unfold() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(unquote("plain"), "plain");
        assert!(matches!(unquote("plain"), Cow::Borrowed(_)));
        assert_eq!(unquote("dangling\\"), "dangling");
        assert_eq!(unfold("a\r\n b\n\tc\r\nd"), "a b\tc\r\nd");
        assert!(matches!(unfold("a b"), Cow::Borrowed(_)));
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(quoted_len(br#""a\"b" rest"#), Some(6));
        assert_eq!(quoted_len(br#""a\"#), None);
        assert_eq!(quoted_len(b"\"\\"), None);
    }

    #[test]
    fn digits_saturate() {
        assert_eq!(parse_digits_saturating("0068"), Some(68));
        assert_eq!(
            parse_digits_saturating("99999999999999999999999"),
            Some(u64::MAX)
        );
        assert_eq!(parse_digits_saturating("-1"), None);
        assert_eq!(parse_digits_saturating(""), None);
    }
}
