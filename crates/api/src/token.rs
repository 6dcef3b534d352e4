//! Signed auth tokens: a JWT (`HS256`) with the claims `account_id` and `exp` (Unix seconds),
//! so any node holding the same secret verifies a token another node issued, and nothing
//! about a session lives in one node's memory. A token issued for a scoped API key also
//! carries the key's `scopes` and its `key_id` (so it stops working when the key is revoked).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The fixed JOSE header of every token: `{"alg":"HS256","typ":"JWT"}`.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// What a token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub account_id: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// How the token was obtained (`api_key`, `user_auth`), as Kazoo's `method` claim.
    #[serde(default)]
    pub method: String,
    /// The user a `user_auth` token was issued to (Kazoo's `owner_id` claim). Absent from
    /// `api_auth` tokens, so their encoding (and older tokens) are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The scopes the token holds; absent holds every scope (tokens from an account's own key,
    /// from `user_auth`, and every token issued before scopes existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The stored API key the token was issued for; the token is refused once that key is
    /// revoked. Absent for the other logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Whether a credential has a token's shape (three dot-separated parts). API keys never
/// contain a dot, so a credential that is not token-shaped is looked up as a key.
pub fn is_token_shaped(credential: &str) -> bool {
    credential.trim().split('.').count() == 3
}

/// Why a token was refused. All of them answer 401 alike; the kind is for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("expired token")]
    Expired,
}

fn mac(secret: &[u8; 32]) -> HmacSha256 {
    // HMAC accepts keys of any length; a 32-byte key cannot fail.
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// Signs `claims`.
pub fn sign(secret: &[u8; 32], claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{HEADER}.{payload}");
    let mut mac = mac(secret);
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Checks the signature (in constant time) and the expiry against `now_secs`.
pub fn verify(secret: &[u8; 32], token: &str, now_secs: u64) -> Result<Claims, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if header != HEADER {
        return Err(TokenError::Malformed);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac = mac(secret);
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now_secs {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The key that signs API tokens, derived from the node secret with its own label so a
/// token can never be confused with a digest nonce sealed by the same secret.
pub fn derive_secret(node_secret: &[u8; 32]) -> [u8; 32] {
    let mut mac = mac(node_secret);
    mac.update(b"switchboard api token v1");
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&mac.finalize().into_bytes());
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    fn claims(exp: u64) -> Claims {
        Claims {
            account_id: "a".repeat(32),
            exp,
            method: "api_key".to_owned(),
            owner_id: None,
            scopes: None,
            key_id: None,
        }
    }

    #[test]
    fn header_constant_is_the_encoded_jose_header() {
        assert_eq!(
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            HEADER
        );
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let token = sign(&SECRET, &claims(1_000));
        assert_eq!(verify(&SECRET, &token, 999), Ok(claims(1_000)));
        assert_eq!(verify(&SECRET, &token, 1_000), Err(TokenError::Expired));
        assert_eq!(verify(&SECRET, &token, 5_000), Err(TokenError::Expired));
    }

    #[test]
    fn another_secret_or_a_changed_claim_fails() {
        let token = sign(&SECRET, &claims(1_000));
        assert_eq!(verify(&[8; 32], &token, 0), Err(TokenError::BadSignature));
        let forged_payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(u64::MAX)).expect("json"));
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(
            verify(&SECRET, &parts.join("."), 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for token in ["", "a.b", "a.b.c.d", "x.y.z", &format!("{HEADER}.!!.??")] {
            assert!(verify(&SECRET, token, 0).is_err(), "{token:?}");
        }
    }

    #[test]
    fn owner_id_round_trips_and_is_absent_from_api_key_tokens() {
        let mut with_owner = claims(1_000);
        with_owner.owner_id = Some("b".repeat(32));
        let token = sign(&SECRET, &with_owner);
        assert_eq!(verify(&SECRET, &token, 0), Ok(with_owner));
        let plain = sign(&SECRET, &claims(1_000));
        let payload = plain.split('.').nth(1).expect("payload");
        let decoded = URL_SAFE_NO_PAD.decode(payload).expect("base64");
        assert!(!String::from_utf8_lossy(&decoded).contains("owner_id"));
    }

    #[test]
    fn scopes_and_key_id_round_trip_and_are_absent_when_unset() {
        let mut scoped = claims(1_000);
        scoped.scopes = Some(vec![
            "devices:read".to_owned(),
            "pbx:phones:read".to_owned(),
        ]);
        scoped.key_id = Some("c".repeat(32));
        let token = sign(&SECRET, &scoped);
        assert_eq!(verify(&SECRET, &token, 0), Ok(scoped));
        let plain = sign(&SECRET, &claims(1_000));
        let payload = plain.split('.').nth(1).expect("payload");
        let decoded = URL_SAFE_NO_PAD.decode(payload).expect("base64");
        let text = String::from_utf8_lossy(&decoded);
        assert!(
            !text.contains("scopes") && !text.contains("key_id"),
            "{text}"
        );
        // A token signed before these claims existed still verifies, holding every scope.
        let old = format!(
            "{HEADER}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"account_id":"a","exp":1000,"method":"api_key"}"#)
        );
        let mut mac = mac(&SECRET);
        mac.update(old.as_bytes());
        let old = format!(
            "{old}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        let verified = verify(&SECRET, &old, 0).expect("old token");
        assert_eq!((verified.scopes, verified.key_id), (None, None));
    }

    #[test]
    fn tokens_and_keys_are_told_apart_by_shape() {
        assert!(is_token_shaped(&sign(&SECRET, &claims(1_000))));
        assert!(!is_token_shaped(
            "sbk_0123456789abcdefABCDEF0123456789abcdef"
        ));
        assert!(!is_token_shaped(&"0".repeat(64)));
    }

    #[test]
    fn derived_secrets_differ_from_the_node_secret() {
        let node = [1u8; 32];
        assert_ne!(derive_secret(&node), node);
        assert_eq!(derive_secret(&node), derive_secret(&node));
    }
}
