//! Outbound signing, Standard Webhooks (<https://www.standardwebhooks.com/>), so a
//! target can check that a call came through bigpipe and was not changed on the way.
//!
//! Each attempt carries three headers:
//! - `webhook-id`: the call id (the same on every attempt, so targets can deduplicate);
//! - `webhook-timestamp`: the attempt's time, in unix seconds (verifiers refuse one
//!   more than 5 minutes away, which bounds replays);
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per
//!   key, separated by spaces. During a key rotation both keys sign, so a target
//!   that knows either accepts the call.
//!
//! Keys are in the Standard Webhooks form `whsec_<base64>`. A key is never logged:
//! [`SigningKey`]'s `Debug` hides it, and [`KeyError`] never quotes it.
//!
//! The keys are parsed with the config ([`SigningKey`] is a config value); this module signs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::config::values::signing::{KeyError, MAX_KEY_BYTES, MIN_KEY_BYTES, SigningKey};

/// Header with the message id.
pub const ID_HEADER: &str = "webhook-id";
/// Header with the attempt's unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header with the signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

impl SigningKey {
    /// `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // new_from_slice fails only for fixed-size-key MACs; HMAC takes any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.secret()) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The three Standard Webhooks headers for one attempt, signed with every key;
/// `None` without keys (the entry does not sign).
pub fn signature_headers(
    keys: &[SigningKey],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<[(String, String); 3]> {
    if keys.is_empty() {
        return None;
    }
    let signatures: Vec<String> = keys.iter().map(|k| k.sign(id, timestamp, body)).collect();
    Some([
        (ID_HEADER.to_owned(), id.to_owned()),
        (TIMESTAMP_HEADER.to_owned(), timestamp.to_string()),
        (SIGNATURE_HEADER.to_owned(), signatures.join(" ")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of the standardwebhooks Python library's own tests
    /// (`test_sign_function` in standard-webhooks/standard-webhooks, libraries/python).
    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_reference_vector() {
        let key = SigningKey::parse(KEY).unwrap();
        assert_eq!(key.sign(ID, TIMESTAMP, PAYLOAD), EXPECTED);
    }

    #[test]
    fn a_changed_byte_changes_the_signature() {
        let key = SigningKey::parse(KEY).unwrap();
        assert_ne!(key.sign(ID, TIMESTAMP, br#"{"test": 2432232315}"#), EXPECTED);
        assert_ne!(key.sign(ID, TIMESTAMP + 1, PAYLOAD), EXPECTED);
        assert_ne!(key.sign("msg_other", TIMESTAMP, PAYLOAD), EXPECTED);
    }

    #[test]
    fn two_keys_give_two_signatures_in_one_header() {
        let old = SigningKey::parse(KEY).unwrap();
        let new = SigningKey::parse(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).unwrap();
        let headers = signature_headers(&[old, new.clone()], ID, TIMESTAMP, PAYLOAD).unwrap();
        assert_eq!(headers[0], ("webhook-id".into(), ID.into()));
        assert_eq!(headers[1], ("webhook-timestamp".into(), "1614265330".into()));
        let sigs: Vec<&str> = headers[2].1.split(' ').collect();
        assert_eq!(sigs, [EXPECTED, new.sign(ID, TIMESTAMP, PAYLOAD).as_str()]);
        assert!(signature_headers(&[], ID, TIMESTAMP, PAYLOAD).is_none());
    }

    #[test]
    fn bad_keys_are_refused_without_being_quoted() {
        let short = format!("whsec_{}", STANDARD.encode([1u8; 16]));
        let long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        let cases = [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", KeyError::Prefix),
            ("", KeyError::Prefix),
            ("whsec_", KeyError::Length(0)),
            ("whsec_not base64!", KeyError::Base64),
            (short.as_str(), KeyError::Length(16)),
            (long.as_str(), KeyError::Length(65)),
        ];
        for (text, want) in cases {
            let got = SigningKey::parse(text).unwrap_err();
            assert_eq!(got, want, "{text}");
            let shown = got.to_string();
            assert!(text.len() < 8 || !shown.contains(&text[6..]), "{shown}");
        }
        // Unpadded base64 is accepted, as the reference libraries do.
        assert!(
            SigningKey::parse(&format!(
                "whsec_{}",
                STANDARD.encode([2u8; 25]).trim_end_matches('=')
            ))
            .is_ok()
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let key = SigningKey::parse(KEY).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
        assert_eq!(shown, "SigningKey(whsec_***, 24 bytes)");
    }
}
