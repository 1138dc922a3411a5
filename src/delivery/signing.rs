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

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header with the message id.
pub const ID_HEADER: &str = "webhook-id";
/// Header with the attempt's unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header with the signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix of a Standard Webhooks secret.
const PREFIX: &str = "whsec_";

/// Shortest key, in bytes: the spec asks for 24 to 64 (a 24-byte key is 192 bits,
/// far beyond guessing); shorter is refused.
pub const MIN_KEY_BYTES: usize = 24;
/// Longest key, in bytes (the spec's upper bound).
pub const MAX_KEY_BYTES: usize = 64;

/// Base64 with or without padding, as the reference libraries accept.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a key was refused. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not `whsec_...`.
    #[error("must be a Standard Webhooks secret, 'whsec_' followed by base64")]
    Prefix,
    /// The part after `whsec_` is not base64.
    #[error("the part after 'whsec_' is not valid base64")]
    Base64,
    /// Too short or too long.
    #[error("decodes to {0} bytes; a key must have {MIN_KEY_BYTES} to {MAX_KEY_BYTES}")]
    Length(usize),
}

/// One signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({PREFIX}***, {} bytes)", self.bytes.len())
    }
}

impl SigningKey {
    /// Parses `whsec_<base64>` (surrounding white space ignored).
    ///
    /// # Errors
    /// When the prefix is missing, the rest is not base64, or the key is not
    /// [`MIN_KEY_BYTES`] to [`MAX_KEY_BYTES`] long.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(KeyError::Prefix)?;
        let bytes = LENIENT.decode(encoded).map_err(|_| KeyError::Base64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(KeyError::Length(bytes.len()));
        }
        Ok(Self { bytes })
    }

    /// `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // new_from_slice fails only for fixed-size-key MACs; HMAC takes any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.bytes) else {
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
