//! HTTP digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760).
//!
//! Nonces are stateless: a nonce carries its creation time and a sequence number, sealed with an
//! HMAC-SHA256 under a secret shared by every node, so any node can verify any nonce without a
//! lookup. Replay protection (the nonce-count, `nc`) is per node: a fixed table of slots indexed
//! by the nonce's sequence number remembers the highest `nc` seen. A nonce whose slot was reused
//! by a newer nonce is answered as stale, which costs the phone one more round trip and nothing
//! else.
//!
//! Responses are compared in constant time. Nothing here logs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// A digest hash algorithm (RFC 7616 §6.1 / RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// Parses the `algorithm` parameter; absent means MD5 (RFC 2617 §3.2.1).
    pub fn parse(text: Option<&str>) -> Option<Self> {
        let Some(text) = text else {
            return Some(Algorithm::Md5);
        };
        let text = text.trim_matches('"');
        if text.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if text.eq_ignore_ascii_case("MD5-sess") {
            Some(Algorithm::Md5Sess)
        } else if text.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if text.eq_ignore_ascii_case("SHA-256-sess") {
            Some(Algorithm::Sha256Sess)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_sha256(self) -> bool {
        matches!(self, Algorithm::Sha256 | Algorithm::Sha256Sess)
    }

    fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Length of the lower-case hex digest.
    fn hex_len(self) -> usize {
        if self.is_sha256() { 64 } else { 32 }
    }
}

/// A lower-case hex digest on the stack (up to SHA-256).
#[derive(Clone, Copy)]
pub struct HexDigest {
    bytes: [u8; 64],
    len: u8,
}

impl std::fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Digests of secrets are secrets too (an HA1 is as good as the password).
        f.write_str("HexDigest(<redacted>)")
    }
}

impl HexDigest {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ever filled with ASCII hex digits.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    fn from_raw(raw: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 64];
        let mut len = 0;
        for byte in raw.iter().take(32) {
            bytes[len] = HEX[usize::from(byte >> 4)];
            bytes[len + 1] = HEX[usize::from(byte & 0x0f)];
            len += 2;
        }
        HexDigest {
            bytes,
            len: len as u8,
        }
    }
}

/// Hashes the colon-joined parts with the algorithm's hash function, without allocating.
fn hash_parts(algorithm: Algorithm, parts: &[&[u8]]) -> HexDigest {
    if algorithm.is_sha256() {
        let mut hasher = Sha256::new();
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                hasher.update(b":");
            }
            hasher.update(part);
        }
        HexDigest::from_raw(&hasher.finalize())
    } else {
        let mut hasher = Md5::new();
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                hasher.update(b":");
            }
            hasher.update(part);
        }
        HexDigest::from_raw(&hasher.finalize())
    }
}

/// HA1 = H(username:realm:password), the value a credential store may keep instead of the
/// password.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> HexDigest {
    hash_parts(
        algorithm,
        &[username.as_bytes(), realm.as_bytes(), password.as_bytes()],
    )
}

/// The parameters of one Authorization header the response depends on.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    pub algorithm: Algorithm,
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    /// `Some(("auth", nc, cnonce))` with qop, `None` for RFC 2069 style.
    pub qop: Option<(&'a str, &'a str, &'a str)>,
}

/// Computes the expected `response` from HA1 (plain, not `-sess`).
pub fn expected_response(ha1_plain: &HexDigest, input: &ResponseInput<'_>) -> HexDigest {
    let algorithm = input.algorithm;
    let session_ha1;
    let ha1_bytes = if algorithm.is_session() {
        let cnonce = input.qop.map(|(_, _, cnonce)| cnonce).unwrap_or("");
        session_ha1 = hash_parts(
            algorithm,
            &[
                ha1_plain.as_bytes(),
                input.nonce.as_bytes(),
                cnonce.as_bytes(),
            ],
        );
        session_ha1.as_bytes()
    } else {
        ha1_plain.as_bytes()
    };
    let ha2 = hash_parts(algorithm, &[input.method.as_bytes(), input.uri.as_bytes()]);
    match input.qop {
        Some((qop, nc, cnonce)) => hash_parts(
            algorithm,
            &[
                ha1_bytes,
                input.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                qop.as_bytes(),
                ha2.as_bytes(),
            ],
        ),
        None => hash_parts(
            algorithm,
            &[ha1_bytes, input.nonce.as_bytes(), ha2.as_bytes()],
        ),
    }
}

/// Constant-time comparison of the client's hex response with the expected one; the client's
/// hex may be upper-case.
pub fn response_matches(expected: &HexDigest, given: &str, algorithm: Algorithm) -> bool {
    let given = given.as_bytes();
    if given.len() != algorithm.hex_len() || expected.as_bytes().len() != given.len() {
        return false;
    }
    let mut lowered = [0u8; 64];
    for (slot, byte) in lowered.iter_mut().zip(given) {
        *slot = byte.to_ascii_lowercase();
    }
    bool::from(lowered[..given.len()].ct_eq(expected.as_bytes()))
}

type HmacSha256 = Hmac<Sha256>;

const NONCE_VERSION: u8 = 1;
const NONCE_RAW_LEN: usize = 1 + 8 + 4 + 16;
/// Base64url (no padding) of the raw nonce.
const NONCE_TEXT_LEN: usize = 39;

/// Issues and verifies stateless nonces and tracks nonce-counts on this node.
pub struct NonceManager {
    secret: [u8; 32],
    lifetime_ms: i64,
    sequence: AtomicU32,
    /// Slot `seq % len` holds `(seq << 32) | highest nc seen`.
    counts: Box<[AtomicU64]>,
}

impl std::fmt::Debug for NonceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceManager")
            .field("lifetime_ms", &self.lifetime_ms)
            .field("slots", &self.counts.len())
            .finish_non_exhaustive()
    }
}

/// What a presented nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by us for this realm and still fresh.
    Fresh { sequence: u32 },
    /// Issued by us for this realm but older than the lifetime.
    Stale,
    /// Not ours, tampered with, or for another realm.
    Invalid,
}

/// The outcome of recording a nonce-count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountCheck {
    Accepted,
    /// The `nc` was not higher than one already seen for this nonce.
    Replayed,
    /// The nonce's slot now belongs to a newer nonce: ask for a fresh one.
    Evicted,
}

impl NonceManager {
    /// `slots` bounds the replay-tracking memory (8 bytes a slot).
    pub fn new(secret: [u8; 32], lifetime_secs: u32, slots: usize, first_sequence: u32) -> Self {
        let counts = (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect();
        NonceManager {
            secret,
            lifetime_ms: i64::from(lifetime_secs) * 1000,
            sequence: AtomicU32::new(first_sequence),
            counts,
        }
    }

    fn seal(&self, raw: &[u8], realm: &str) -> [u8; 16] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(raw);
        mac.update(realm.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    /// A new nonce for `realm`, issued at `now_ms`.
    pub fn issue(&self, realm: &str, now_ms: i64) -> NonceText {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; NONCE_RAW_LEN];
        raw[0] = NONCE_VERSION;
        raw[1..9].copy_from_slice(&now_ms.to_be_bytes());
        raw[9..13].copy_from_slice(&sequence.to_be_bytes());
        let tag = self.seal(&raw[..13], realm);
        raw[13..].copy_from_slice(&tag);
        let mut text = [0u8; NONCE_TEXT_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(raw, &mut text)
            .unwrap_or_default();
        debug_assert_eq!(written, NONCE_TEXT_LEN);
        // A fresh nonce clears whatever count an older nonce left in its slot.
        let slot = self.slot(sequence);
        slot.store(u64::from(sequence) << 32, Ordering::Relaxed);
        NonceText(text)
    }

    fn slot(&self, sequence: u32) -> &AtomicU64 {
        let index = sequence as usize % self.counts.len();
        &self.counts[index]
    }

    /// Verifies a nonce presented for `realm` at `now_ms`.
    pub fn check(&self, nonce: &str, realm: &str, now_ms: i64) -> NonceCheck {
        let mut raw = [0u8; NONCE_RAW_LEN + 3];
        if nonce.len() != NONCE_TEXT_LEN {
            return NonceCheck::Invalid;
        }
        match URL_SAFE_NO_PAD.decode_slice(nonce.as_bytes(), &mut raw) {
            Ok(NONCE_RAW_LEN) => {}
            _ => return NonceCheck::Invalid,
        }
        if raw[0] != NONCE_VERSION {
            return NonceCheck::Invalid;
        }
        let expected = self.seal(&raw[..13], realm);
        if !bool::from(expected.ct_eq(&raw[13..NONCE_RAW_LEN])) {
            return NonceCheck::Invalid;
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&raw[1..9]);
        let issued_ms = i64::from_be_bytes(time);
        let mut seq = [0u8; 4];
        seq.copy_from_slice(&raw[9..13]);
        let sequence = u32::from_be_bytes(seq);
        let age = now_ms.saturating_sub(issued_ms);
        // A nonce from the future (clock step between nodes) is accepted within a second.
        if age > self.lifetime_ms || age < -1000 {
            return NonceCheck::Stale;
        }
        NonceCheck::Fresh { sequence }
    }

    /// Records `nc` for a fresh nonce; each count may be used once and must grow.
    pub fn record_count(&self, sequence: u32, nc: u32) -> CountCheck {
        let slot = self.slot(sequence);
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let owner = (current >> 32) as u32;
            let seen = current as u32;
            if owner != sequence {
                // Another node issued it (empty slot) or a newer nonce took the slot.
                if current == 0 {
                    let next = (u64::from(sequence) << 32) | u64::from(nc);
                    match slot.compare_exchange(current, next, Ordering::AcqRel, Ordering::Relaxed)
                    {
                        Ok(_) => return CountCheck::Accepted,
                        Err(actual) => {
                            current = actual;
                            continue;
                        }
                    }
                }
                return CountCheck::Evicted;
            }
            if nc <= seen {
                return CountCheck::Replayed;
            }
            let next = (u64::from(sequence) << 32) | u64::from(nc);
            match slot.compare_exchange(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return CountCheck::Accepted,
                Err(actual) => current = actual,
            }
        }
    }
}

/// A nonce as it goes on the wire.
#[derive(Clone, Copy)]
pub struct NonceText([u8; NONCE_TEXT_LEN]);

impl NonceText {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for NonceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceText(<redacted>)")
    }
}

/// Writes one challenge value (`Digest realm=…, nonce=…, algorithm=…, qop="auth"`).
pub fn write_challenge(
    out: &mut String,
    realm: &str,
    nonce: &NonceText,
    algorithm: Algorithm,
    stale: bool,
) {
    let _ = write!(
        out,
        "Digest realm=\"{realm}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
        nonce.as_str(),
        algorithm.as_str()
    );
    if stale {
        out.push_str(", stale=true");
    }
}

/// Parses an 8-hex-digit nonce-count (RFC 2617 `nc`), which is hexadecimal, not decimal.
pub fn parse_nonce_count(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 §3.5 (HTTP example; method GET).
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let expected = expected_response(
            &ha1,
            &ResponseInput {
                algorithm: Algorithm::Md5,
                method: "GET",
                uri: "/dir/index.html",
                nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                qop: Some(("auth", "00000001", "0a4f113b")),
            },
        );
        assert_eq!(expected.as_str(), "6629fae49393a05397450978507c4ef1");
        assert!(response_matches(
            &expected,
            "6629FAE49393A05397450978507C4EF1",
            Algorithm::Md5
        ));
        assert!(!response_matches(
            &expected,
            "6629fae49393a05397450978507c4ef2",
            Algorithm::Md5
        ));
        assert!(!response_matches(&expected, "6629", Algorithm::Md5));
    }

    #[test]
    fn rfc7616_sha256_example_response() {
        // RFC 7616 §3.9.1.
        let ha1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let expected = expected_response(
            &ha1,
            &ResponseInput {
                algorithm: Algorithm::Sha256,
                method: "GET",
                uri: "/dir/index.html",
                nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                qop: Some((
                    "auth",
                    "00000001",
                    "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                )),
            },
        );
        assert_eq!(
            expected.as_str(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::parse(None), Some(Algorithm::Md5));
        assert_eq!(Algorithm::parse(Some("sha-256")), Some(Algorithm::Sha256));
        assert_eq!(
            Algorithm::parse(Some("\"MD5-sess\"")),
            Some(Algorithm::Md5Sess)
        );
        assert_eq!(Algorithm::parse(Some("SHA-512-256")), None);
    }

    #[test]
    fn nonce_lifecycle() {
        let manager = NonceManager::new([7; 32], 300, 16, 1);
        let nonce = manager.issue("acme.example", 1_000_000);
        let text = nonce.as_str().to_owned();
        assert_eq!(
            manager.check(&text, "acme.example", 1_000_000 + 299_000),
            NonceCheck::Fresh { sequence: 1 }
        );
        assert_eq!(
            manager.check(&text, "acme.example", 1_000_000 + 301_000),
            NonceCheck::Stale
        );
        assert_eq!(
            manager.check(&text, "other.example", 1_000_000),
            NonceCheck::Invalid
        );
        let mut tampered = text.clone().into_bytes();
        tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(
            manager.check(&tampered, "acme.example", 1_000_000),
            NonceCheck::Invalid
        );
        assert_eq!(
            manager.check("short", "acme.example", 1_000_000),
            NonceCheck::Invalid
        );
        // Another node with the same secret verifies it.
        let other_node = NonceManager::new([7; 32], 300, 16, 99);
        assert_eq!(
            other_node.check(&text, "acme.example", 1_000_000),
            NonceCheck::Fresh { sequence: 1 }
        );
        let stranger = NonceManager::new([8; 32], 300, 16, 1);
        assert_eq!(
            stranger.check(&text, "acme.example", 1_000_000),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn nonce_counts_must_grow_once_each() {
        let manager = NonceManager::new([7; 32], 300, 4, 10);
        let _ = manager.issue("r", 0);
        assert_eq!(manager.record_count(10, 1), CountCheck::Accepted);
        assert_eq!(manager.record_count(10, 1), CountCheck::Replayed);
        assert_eq!(manager.record_count(10, 3), CountCheck::Accepted);
        assert_eq!(manager.record_count(10, 2), CountCheck::Replayed);
        // Four more nonces wrap the 4-slot table: the old nonce is evicted, not replayable.
        for _ in 0..4 {
            let _ = manager.issue("r", 0);
        }
        assert_eq!(manager.record_count(10, 4), CountCheck::Evicted);
        // A nonce issued by another node lands in an empty slot here.
        let fresh_table = NonceManager::new([7; 32], 300, 4, 0);
        assert_eq!(fresh_table.record_count(2, 1), CountCheck::Accepted);
    }

    #[test]
    fn nonce_count_is_hex() {
        assert_eq!(parse_nonce_count("00000001"), Some(1));
        assert_eq!(parse_nonce_count("0000000a"), Some(10));
        assert_eq!(parse_nonce_count("00000010"), Some(16));
        assert_eq!(parse_nonce_count("ffffffff"), Some(u32::MAX));
        assert_eq!(parse_nonce_count("100000000"), None);
        assert_eq!(parse_nonce_count("zz"), None);
        assert_eq!(parse_nonce_count(""), None);
    }

    #[test]
    fn challenge_text() {
        let manager = NonceManager::new([1; 32], 300, 4, 0);
        let nonce = manager.issue("acme.example", 5);
        let mut out = String::new();
        write_challenge(&mut out, "acme.example", &nonce, Algorithm::Sha256, true);
        assert!(out.starts_with("Digest realm=\"acme.example\", nonce=\""));
        assert!(out.ends_with("algorithm=SHA-256, qop=\"auth\", stale=true"));
    }
}
