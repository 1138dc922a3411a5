//! Signing keys as written in a consumer entry's `signingKeys`: Standard Webhooks secrets,
//! `whsec_<base64>`, decoded and length-checked. A key is never logged: [`SigningKey`]'s
//! `Debug` hides it, and [`KeyError`] never quotes it.
//!
//! Signing with them is delivery's job (`delivery::signing`).

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

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

    /// The decoded key, for the HMAC.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.bytes
    }
}
