//! PEM files named by the config (`delivery.tls.ca.file`), read and checked when the config
//! is loaded, so `check-config` refuses a file TLS setup would refuse later.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The certificates of a PEM bundle; other PEM sections (keys, CRLs) are skipped.
///
/// # Errors
/// A malformed certificate section, or none at all.
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not a valid PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    Ok(certs)
}
