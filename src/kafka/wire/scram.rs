//! The client side of SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka runs it:
//! no channel binding (`n,,`), no SASLprep of the password (Kafka's own client does none
//! either, so non-ASCII passwords hash the same way as with the Java tools that created them).
//!
//! Pure: the caller carries the three messages over SaslAuthenticate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

/// Why a SCRAM exchange failed on our side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A server message did not have the expected attributes.
    #[error("malformed server message: {0}")]
    Malformed(&'static str),
    /// The server's nonce does not extend ours (a replay or a broken server).
    #[error("server nonce does not start with the client nonce")]
    NonceMismatch,
    /// The iteration count is below RFC 7677's minimum of 4096 or absurdly high.
    #[error("server asks for {0} iterations (accepted: 4096 to 1000000)")]
    Iterations(u32),
    /// The server answered `e=...`.
    #[error("server refused: {0}")]
    Refused(String),
    /// The server's signature is wrong: it does not know the password, so it is not the
    /// server the credentials were made for.
    #[error("server signature does not verify")]
    ServerSignature,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail.
        match self {
            Self::Sha256 => {
                let mut mac =
                    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
                data.iter().for_each(|d| mac.update(d));
                mac.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut mac =
                    <Hmac<Sha512> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
                data.iter().for_each(|d| mac.update(d));
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi()` of RFC 5802: PBKDF2 with this HMAC, one block.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut u = self.hmac(password, &[salt, &1u32.to_be_bytes()]);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &[&u]);
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        out
    }
}

/// One SCRAM exchange: [`Self::client_first`], then [`Self::client_final`] with the server's
/// first message, then [`Self::verify_server_final`] with its last.
#[derive(Debug)]
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// The server signature we expect, once `client_final` computed it.
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce.
    pub fn new(hash: ScramHash, username: &str, password: &str) -> Self {
        let mut bytes = [0u8; 24];
        rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
        Self::with_nonce(hash, username, password, &B64.encode(bytes))
    }

    /// Starts an exchange with a given nonce (tests use the RFC's).
    pub fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        // RFC 5802 5.1: "=" and "," in the user name are escaped.
        let user = username.replace('=', "=3D").replace(',', "=2C");
        Self {
            hash,
            password: password.to_owned(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_owned(),
            expected_server_signature: None,
        }
    }

    /// The client-first message: `n,,n=<user>,r=<nonce>`.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// The client-final message for the server-first message `server_first`.
    ///
    /// # Errors
    /// See [`ScramError`].
    pub fn client_final(&mut self, server_first: &str) -> Result<String, ScramError> {
        if let Some(e) = attribute(server_first, 'e') {
            return Err(ScramError::Refused(e.to_owned()));
        }
        let nonce = attribute(server_first, 'r').ok_or(ScramError::Malformed("no nonce (r=)"))?;
        let salt = attribute(server_first, 's').ok_or(ScramError::Malformed("no salt (s=)"))?;
        let iterations =
            attribute(server_first, 'i').ok_or(ScramError::Malformed("no iteration count (i=)"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::Malformed("salt is not base64"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed("iteration count is not a number"))?;
        if !(4096..=1_000_000).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }

        let h = self.hash;
        let salted = h.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, &[b"Client Key"]);
        let stored_key = h.hash(&client_key);
        // "biws" = base64("n,,"): no channel binding.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = h.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = h.hmac(&salted, &[b"Server Key"]);
        self.expected_server_signature = Some(h.hmac(&server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message: the server proves it knows the password too.
    ///
    /// # Errors
    /// [`ScramError::Refused`] for `e=...`, [`ScramError::ServerSignature`] for a wrong
    /// signature (or when called before [`Self::client_final`]), else malformed.
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), ScramError> {
        if let Some(e) = attribute(server_final, 'e') {
            return Err(ScramError::Refused(e.to_owned()));
        }
        let v = attribute(server_final, 'v').ok_or(ScramError::Malformed("no verifier (v=)"))?;
        let v = B64
            .decode(v)
            .map_err(|_| ScramError::Malformed("verifier is not base64"))?;
        match &self.expected_server_signature {
            Some(expected) if bool::from(expected.ct_eq(&v)) => Ok(()),
            _ => Err(ScramError::ServerSignature),
        }
    }
}

/// The value of attribute `name` (`name=value`) in a comma-separated SCRAM message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_sha256_exchange() {
        let mut client = ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            client.client_final(server_first).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert_eq!(
            client.verify_server_final("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::ServerSignature)
        );
    }

    /// There is no RFC exchange for SHA-512, so check its `Hi()` against PBKDF2-HMAC-SHA512
    /// (password "password", salt "salt", 4096 iterations; the value from Python's
    /// `hashlib.pbkdf2_hmac`); the rest of the exchange is shared with SHA-256.
    #[test]
    fn sha512_salted_password_is_pbkdf2() {
        let out = ScramHash::Sha512.salted_password(b"password", b"salt", 4096);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "d197b1b33db0143e018b12f3d1d1479e6cdebdcc97c5c0f87f6902e072f457b5\
             143f30602641b3d55cd335988cb36b84376060ecd532e039b742a239434af2d5"
        );
    }

    #[test]
    fn user_name_is_escaped_and_bad_servers_are_refused() {
        let mut client = ScramClient::with_nonce(ScramHash::Sha512, "a=b,c", "p", "abc");
        assert_eq!(client.client_first(), "n,,n=a=3Db=2Cc,r=abc");
        assert_eq!(
            client.client_final("r=xyz123,s=c2FsdA==,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(
            client.client_final("r=abc123,s=c2FsdA==,i=1"),
            Err(ScramError::Iterations(1))
        );
        assert_eq!(
            client.client_final("e=invalid-proof"),
            Err(ScramError::Refused("invalid-proof".into()))
        );
        assert!(matches!(
            client.client_final("r=abc123,i=4096"),
            Err(ScramError::Malformed(_))
        ));
        // Before client_final succeeded there is nothing to verify against.
        assert_eq!(
            client.verify_server_final("v=AAAA"),
            Err(ScramError::ServerSignature)
        );
    }
}
