//! RFC 5627 GRUUs (Globally Routable User Agent URIs) for contacts that carry
//! `+sip.instance`, handed out in the 200 when the UA says `Supported: gruu`.
//!
//! - The public GRUU is the address-of-record with the instance as `gr`:
//!   `sip:alice@acme.test;gr=urn:uuid:f81d4fae-…` (§5.3), stable across registrations.
//! - The temporary GRUU hides the AOR: `sip:tgruu.<32 hex>@acme.test;gr`, an HMAC under the
//!   cluster's secret of (AOR, instance, Call-ID), so every node computes the same one, and a
//!   new Call-ID (a new registration) yields a new one while the binding lives (§5.4).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a temporary GRUU's user part.
pub const TEMP_PREFIX: &str = "tgruu.";

/// The instance as a `gr` value: `<urn:uuid:…>` without its angle brackets.
pub fn gr_value(instance: &str) -> &str {
    instance
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
}

/// `sip:AOR;gr=INSTANCE`.
pub fn public_gruu(aor: &str, instance: &str) -> String {
    format!("sip:{aor};gr={}", gr_value(instance))
}

/// Mints temporary GRUUs under a secret derived from the cluster's nonce secret.
#[derive(Clone)]
pub struct TempGruus {
    key: [u8; 32],
}

impl std::fmt::Debug for TempGruus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TempGruus")
    }
}

impl TempGruus {
    /// A key of its own, derived from `secret` (never the nonce key itself).
    pub fn new(secret: &[u8; 32]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
        mac.update(b"switchboard temp-gruu v1");
        let mut key = [0u8; 32];
        key.copy_from_slice(&mac.finalize().into_bytes());
        TempGruus { key }
    }

    /// `sip:tgruu.<hex>@REALM;gr` for the binding of `instance` under `aor` registered with
    /// `call_id`; `realm` is the AOR's host.
    pub fn temp_gruu(&self, aor: &str, instance: &str, call_id: &str) -> String {
        let realm = aor.split_once('@').map_or(aor, |(_, realm)| realm);
        format!("sip:{}@{realm};gr", self.temp_user(aor, instance, call_id))
    }

    /// The user part of [`TempGruus::temp_gruu`], to compare with a Request-URI's.
    pub fn temp_user(&self, aor: &str, instance: &str, call_id: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        for part in [aor, gr_value(instance), call_id] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        let tag = mac.finalize().into_bytes();
        let mut user = String::with_capacity(TEMP_PREFIX.len() + 32);
        user.push_str(TEMP_PREFIX);
        for byte in &tag[..16] {
            user.push_str(&format!("{byte:02x}"));
        }
        user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCE: &str = "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";

    #[test]
    fn the_public_gruu_is_the_aor_with_the_instance() {
        assert_eq!(
            public_gruu("alice@acme.test", INSTANCE),
            "sip:alice@acme.test;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
        );
    }

    #[test]
    fn temporary_gruus_hide_the_aor_and_change_with_the_call_id() {
        let gruus = TempGruus::new(&[7; 32]);
        let first = gruus.temp_gruu("alice@acme.test", INSTANCE, "call-1");
        assert!(first.starts_with("sip:tgruu."), "{first}");
        assert!(first.ends_with("@acme.test;gr"), "{first}");
        assert!(!first.contains("alice"));
        assert_eq!(
            first,
            gruus.temp_gruu("alice@acme.test", INSTANCE, "call-1")
        );
        assert_ne!(
            first,
            gruus.temp_gruu("alice@acme.test", INSTANCE, "call-2")
        );
        assert_ne!(
            first,
            TempGruus::new(&[8; 32]).temp_gruu("alice@acme.test", INSTANCE, "call-1")
        );
    }
}
