//! Arbitrary text as the `Authorization` header of an otherwise valid REGISTER (`@N` in it is
//! replaced by a nonce the registrar issued, so the check goes past the nonce): the digest
//! credentials parser, then the registrar's digest check for a known user (with and without a
//! precomputed HA1, enabled and disabled) and for an unknown one. Properties: nothing panics,
//! nothing authenticates without the password, an unknown user never authenticates, and an
//! unknown user's answer is a known user's wrong-password answer.
#![no_main]
#![forbid(unsafe_code)]

mod common;

use common::{device, origin, registrar, NOW, REALM};
use libfuzzer_sys::fuzz_target;
use switchboard_registrar::{AuthOutcome, Ha1Cache, Refusal};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if value.contains(['\r', '\n']) {
        return;
    }
    let registrar = registrar(1);
    let (_, challenges) = registrar.challenges(REALM, false, NOW);
    let nonce = challenges
        .first()
        .and_then(|c| c.split("nonce=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    let value = value.replace("@N", &nonce);
    let text = format!(
        "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKf\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=1\r\nTo: <sip:alice@{REALM}>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@192.0.2.10:5062>\r\nAuthorization: {value}\r\nContent-Length: 0\r\n\r\n"
    );
    let Ok(message) = switchboard_sip::parse(text.as_bytes()) else {
        return;
    };
    for credentials in message.authorizations(false) {
        let _ = credentials.digest();
    }
    let mut device = device();
    let cache = Ha1Cache::new("alice", REALM, "secret");
    let known = registrar.authenticate(&message, &origin(), &device, REALM, None, NOW);
    let cached = registrar.authenticate(&message, &origin(), &device, REALM, Some(&cache), NOW);
    // A nonce-count is spent by the first success: the second may only be stale.
    if known != AuthOutcome::Authenticated {
        assert_eq!(known, cached);
    }
    device.enabled = false;
    let disabled = registrar.authenticate(&message, &origin(), &device, REALM, None, NOW);
    assert_ne!(disabled, AuthOutcome::Authenticated);
    let unknown = registrar.authenticate_unknown(&message, REALM, NOW);
    match (&unknown, &known) {
        (AuthOutcome::Authenticated, _) => panic!("an unknown user authenticated"),
        (AuthOutcome::Refused { refusal, .. }, AuthOutcome::Refused { refusal: theirs, .. }) => {
            // Same answer on the wire, except what only the right password can reach.
            if !matches!(theirs, Refusal::Challenge { stale: true }) {
                assert_eq!(refusal, theirs);
            }
        }
        _ => {}
    }
});
