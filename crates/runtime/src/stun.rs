//! STUN keepalives on the SIP UDP port (RFC 5626 §4.4.2, RFC 5389): a Binding request is
//! answered with a Binding success response carrying XOR-MAPPED-ADDRESS (the address the
//! request came from, so a client behind NAT sees its public mapping change), and
//! FINGERPRINT when the request had one. Pure: bytes in, bytes out.
//!
//! Telling STUN from SIP is cheap: a SIP message starts with a letter, a STUN message with
//! two zero bits, and carries the magic cookie at bytes 4..8 (RFC 5389 §6, RFC 7983).

use std::net::{IpAddr, SocketAddr};

/// RFC 5389 magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER_LEN: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// A Binding request, as far as answering it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRequest {
    pub transaction_id: [u8; 12],
    /// Whether the request ended with a FINGERPRINT attribute (then the answer has one too).
    pub fingerprint: bool,
}

/// Whether `data` looks like a STUN message at all (not SIP): first two bits zero and the
/// magic cookie in place.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && data[0] & 0xC0 == 0 && data[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// Decodes a Binding request; `None` for anything else (other methods or classes, a length
/// that does not match the datagram, malformed attributes, a wrong fingerprint).
pub fn parse_binding_request(data: &[u8]) -> Option<BindingRequest> {
    if !is_stun(data) {
        return None;
    }
    let message_type = u16::from_be_bytes([data[0], data[1]]);
    let length = usize::from(u16::from_be_bytes([data[2], data[3]]));
    if message_type != BINDING_REQUEST || length % 4 != 0 || data.len() != HEADER_LEN + length {
        return None;
    }
    let mut transaction_id = [0u8; 12];
    transaction_id.copy_from_slice(&data[8..20]);
    let mut fingerprint = false;
    let mut at = HEADER_LEN;
    while at < data.len() {
        let header = data.get(at..at + 4)?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = data.get(at + 4..at + 4 + len)?;
        let padded = (len + 3) & !3;
        if kind == FINGERPRINT {
            // The last attribute, over everything before it (RFC 5389 §15.5).
            if len != 4 || at + 8 != data.len() {
                return None;
            }
            let expected = crc32(&data[..at]) ^ FINGERPRINT_XOR;
            if u32::from_be_bytes([value[0], value[1], value[2], value[3]]) != expected {
                return None;
            }
            fingerprint = true;
        }
        at += 4 + padded;
    }
    if at != data.len() {
        return None;
    }
    Some(BindingRequest {
        transaction_id,
        fingerprint,
    })
}

/// The Binding success response to `request` telling the client it was seen at `source`.
pub fn binding_success(request: &BindingRequest, source: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 24 + 8);
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // length, set below
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(&request.transaction_id);

    let cookie = MAGIC_COOKIE.to_be_bytes();
    let x_port = source.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let (family, address): (u8, Vec<u8>) = match source.ip() {
        IpAddr::V4(ip) => (
            0x01,
            ip.octets()
                .iter()
                .zip(cookie.iter())
                .map(|(a, k)| a ^ k)
                .collect(),
        ),
        IpAddr::V6(ip) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&cookie);
            key[4..].copy_from_slice(&request.transaction_id);
            (
                0x02,
                ip.octets()
                    .iter()
                    .zip(key.iter())
                    .map(|(a, k)| a ^ k)
                    .collect(),
            )
        }
    };
    out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&(4 + address.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, family]);
    out.extend_from_slice(&x_port.to_be_bytes());
    out.extend_from_slice(&address);
    if request.fingerprint {
        // The length must already count the fingerprint when the CRC is computed.
        set_length(&mut out, 8);
        let crc = crc32(&out) ^ FINGERPRINT_XOR;
        out.extend_from_slice(&FINGERPRINT.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
    } else {
        set_length(&mut out, 0);
    }
    out
}

fn set_length(out: &mut [u8], extra: usize) {
    let length = u16::try_from(out.len() - HEADER_LEN + extra).unwrap_or(u16::MAX);
    out[2..4].copy_from_slice(&length.to_be_bytes());
}

/// The address in a Binding success response's XOR-MAPPED-ADDRESS (what a client reads).
pub fn parse_xor_mapped_address(data: &[u8]) -> Option<SocketAddr> {
    if !is_stun(data) || u16::from_be_bytes([data[0], data[1]]) != BINDING_SUCCESS {
        return None;
    }
    let mut at = HEADER_LEN;
    while at + 4 <= data.len() {
        let kind = u16::from_be_bytes([data[at], data[at + 1]]);
        let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        let value = data.get(at + 4..at + 4 + len)?;
        if kind == XOR_MAPPED_ADDRESS {
            let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(&data[8..20]);
            let ip: IpAddr = match (value[1], len) {
                (0x01, 8) => {
                    let mut octets = [0u8; 4];
                    for (i, octet) in octets.iter_mut().enumerate() {
                        *octet = value[4 + i] ^ key[i];
                    }
                    IpAddr::from(octets)
                }
                (0x02, 20) => {
                    let mut octets = [0u8; 16];
                    for (i, octet) in octets.iter_mut().enumerate() {
                        *octet = value[4 + i] ^ key[i];
                    }
                    IpAddr::from(octets)
                }
                _ => return None,
            };
            return Some(SocketAddr::new(ip, port));
        }
        at += 4 + ((len + 3) & !3);
    }
    None
}

/// CRC-32 (ISO 3309 / ITU-T V.42, as FINGERPRINT uses), bitwise: a keepalive is tiny.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.1 sample request (software, priority, ice-controlled, username,
    /// message-integrity, fingerprint): it must parse, its fingerprint verified.
    const RFC5769_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn the_rfc_5769_request_parses_with_its_fingerprint() {
        let data = unhex(RFC5769_REQUEST);
        let request = parse_binding_request(&data).expect("binding request");
        assert!(request.fingerprint);
        assert_eq!(request.transaction_id, data[8..20]);
        let mut broken = data.clone();
        let last = broken.len() - 1;
        broken[last] ^= 1;
        assert_eq!(parse_binding_request(&broken), None);
    }

    #[test]
    fn rfc_5769_xor_mapped_addresses_decode() {
        // §2.2 IPv4 response and §2.3 IPv6 response (their attributes, our decoder).
        let v4 = unhex(
            "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96",
        );
        assert_eq!(
            parse_xor_mapped_address(&v4),
            Some("192.0.2.1:32853".parse().expect("addr"))
        );
        let v6 = unhex(
            "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c",
        );
        assert_eq!(
            parse_xor_mapped_address(&v6),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .expect("addr")
            )
        );
    }

    #[test]
    fn a_bare_keepalive_gets_its_mapped_address_back() {
        let mut request = vec![0x00, 0x01, 0x00, 0x00];
        request.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        request.extend_from_slice(b"abcdefghijkl");
        let parsed = parse_binding_request(&request).expect("binding request");
        assert!(!parsed.fingerprint);
        for source in ["203.0.113.7:40123", "[2001:db8::7]:5060"] {
            let source: SocketAddr = source.parse().expect("addr");
            let answer = binding_success(&parsed, source);
            assert_eq!(&answer[0..2], &[0x01, 0x01]);
            assert_eq!(&answer[8..20], b"abcdefghijkl");
            assert_eq!(
                usize::from(u16::from_be_bytes([answer[2], answer[3]])),
                answer.len() - 20
            );
            assert_eq!(parse_xor_mapped_address(&answer), Some(source));
        }
        // With a fingerprint asked, the answer carries a valid one.
        let with_fingerprint = BindingRequest {
            fingerprint: true,
            ..parsed
        };
        let answer = binding_success(
            &with_fingerprint,
            "198.51.100.2:6000".parse().expect("addr"),
        );
        let split = answer.len() - 8;
        let crc = u32::from_be_bytes([
            answer[split + 4],
            answer[split + 5],
            answer[split + 6],
            answer[split + 7],
        ]);
        assert_eq!(crc, crc32(&answer[..split]) ^ FINGERPRINT_XOR);
    }

    #[test]
    fn sip_and_other_stun_messages_are_not_binding_requests() {
        assert!(!is_stun(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"));
        assert_eq!(parse_binding_request(b"\r\n\r\n"), None);
        // A Binding indication (class 01), a truncated length, a wrong cookie.
        let mut message = vec![0x00, 0x11, 0x00, 0x00];
        message.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        message.extend_from_slice(&[7; 12]);
        assert_eq!(parse_binding_request(&message), None);
        message[1] = 0x01;
        message[3] = 0x08;
        assert_eq!(parse_binding_request(&message), None);
        message[3] = 0x00;
        message[4] = 0;
        assert_eq!(parse_binding_request(&message), None);
    }
}
