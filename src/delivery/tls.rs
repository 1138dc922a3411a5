//! TLS for `https://` targets: rustls with the graviola crypto provider, which is pure Rust
//! and assembly, so the static musl binary still builds without a C compiler (ring and
//! aws-lc-rs, rustls's usual providers, both compile C).
//!
//! Trust: Mozilla's root certificates, built in (`webpki-roots`), so https works on a bare
//! host with no CA bundle, plus the certificates of `delivery.tls.ca.file` for targets
//! behind a private CA.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

/// Parsed with the config, so `check-config` refuses a bad `delivery.tls.ca.file`.
pub use crate::config::values::pem::ca_certificates;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file did not parse or held no certificate.
    #[error("{0}")]
    CaFile(String),
    /// rustls refused a certificate or the protocol versions.
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client configuration for https targets, or `None` when this CPU lacks what the
/// crypto provider needs (https calls then fail as not retryable, saying so).
///
/// # Errors
/// When `extra_ca_pem` holds no valid certificate, or rustls refuses one.
pub fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        for cert in ca_certificates(pem).map_err(TlsError::CaFile)? {
            roots.add(cert)?;
        }
    }
    if !cpu_supported() {
        return Ok(None);
    }
    let mut config = ClientConfig::builder_with_provider(crate::crypto::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only: one POST per call gains nothing from HTTP/2's multiplexing, and
    // the plain-http path is HTTP/1.1 too.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Whether this CPU has what the crypto provider needs (see [`crate::crypto`]).
pub use crate::crypto::cpu_supported;

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_CA: &[u8] = include_bytes!("../../it/fixtures/tls/ca.pem");

    #[test]
    fn built_in_roots_alone_make_a_config() {
        let config = client_config(None).expect("config");
        assert_eq!(config.is_some(), cpu_supported());
    }

    #[test]
    fn a_private_ca_is_added() {
        assert_eq!(ca_certificates(TEST_CA).map(|c| c.len()), Ok(1));
        assert!(client_config(Some(TEST_CA)).is_ok());
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let err = ca_certificates(b"just text\n").unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let key_only = include_bytes!("../../it/fixtures/tls/server.key");
        assert!(ca_certificates(key_only).is_err());
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let err = ca_certificates(broken).unwrap_err();
        assert!(err.contains("not a valid PEM"), "{err}");
        assert!(matches!(client_config(Some(broken)), Err(TlsError::CaFile(_))));
    }

    #[test]
    fn a_certificate_that_is_not_a_ca_is_still_parsed() {
        // Trust anchors are taken as given (a pinned leaf works too); rustls checks the chain.
        let leaf = include_bytes!("../../it/fixtures/tls/server.pem");
        assert_eq!(ca_certificates(leaf).map(|c| c.len()), Ok(1));
    }
}
