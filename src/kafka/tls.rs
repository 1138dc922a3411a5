//! The rustls client configuration for TLS to Kafka brokers (`kafka.ssl.*`), shared by the
//! rskafka client and the wire client so both verify brokers the same way.
//!
//! Crypto comes from the graviola provider, as for https targets (`crate::crypto`):
//! pure Rust and assembly, so the static musl build needs no C compiler. TLS 1.2 and 1.3 are
//! both offered (managed services still run 1.2-only listeners).

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::KafkaTlsSettings;

/// Why the TLS configuration for Kafka could not be built. Each names the config key.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The crypto provider cannot run on this CPU.
    #[error(
        "kafka.security.protocol: TLS to Kafka needs a CPU with AES-NI, PCLMULQDQ, AVX2, BMI1/2 \
         and ADX (the pure-Rust crypto provider's requirement), which this one lacks"
    )]
    CpuUnsupported,
    /// A certificate or key file did not parse (check-config normally catches this first).
    #[error("{key}: {problem}")]
    File {
        /// The config key naming the file.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the combination (e.g. a key that does not match the certificate).
    #[error("{key}: {source}")]
    Rustls {
        /// The config key most likely at fault.
        key: &'static str,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
}

/// Builds the client configuration: trust `ssl.ca.location` (or the built-in Mozilla roots),
/// present `ssl.certificate.location` + `ssl.key.location` when set, and verify broker
/// certificates against `ssl.endpoint.identification.hostname` when set.
///
/// # Errors
/// See [`TlsSetupError`].
pub fn client_config(settings: &KafkaTlsSettings) -> Result<Arc<ClientConfig>, TlsSetupError> {
    if !crate::crypto::cpu_supported() {
        return Err(TlsSetupError::CpuUnsupported);
    }
    let provider = crate::crypto::provider();
    let roots = roots(settings)?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .map_err(|e| TlsSetupError::File {
            key: "kafka.ssl.ca.location",
            problem: e.to_string(),
        })?;
    let verifier: Arc<dyn ServerCertVerifier> = match &settings.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone()).map_err(|e| TlsSetupError::File {
                key: "kafka.ssl.endpoint.identification.hostname",
                problem: e.to_string(),
            })?;
            Arc::new(ServerNameOverride {
                inner: verifier,
                name,
            })
        }
        None => verifier,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsSetupError::Rustls {
            key: "kafka.security.protocol",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&settings.certificate, &settings.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&cert.pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsSetupError::File {
                    key: "kafka.ssl.certificate.location",
                    problem: e.to_string(),
                })?;
            let key = PrivateKeyDer::from_pem_slice(&key.pem).map_err(|e| TlsSetupError::File {
                key: "kafka.ssl.key.location",
                problem: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsSetupError::Rustls {
                    key: "kafka.ssl.key.location",
                    source,
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn roots(settings: &KafkaTlsSettings) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    match &settings.ca {
        // A private CA replaces the public roots (as librdkafka's ssl.ca.location does): a
        // cluster behind a private CA should not also accept any publicly issued certificate.
        Some(ca) => {
            for cert in CertificateDer::pem_slice_iter(&ca.pem) {
                let cert = cert.map_err(|e| TlsSetupError::File {
                    key: "kafka.ssl.ca.location",
                    problem: e.to_string(),
                })?;
                roots.add(cert).map_err(|source| TlsSetupError::Rustls {
                    key: "kafka.ssl.ca.location",
                    source,
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// Verifies the broker's certificate against a configured name instead of the host it was
/// reached at: for brokers reached by IP or through a tunnel whose certificates name the
/// cluster. Chain, validity and signatures are checked exactly as without it.
///
/// Done in the verifier rather than by handing another `ServerName` to the TLS connection,
/// because rskafka derives the name from the broker address itself; this way both clients
/// behave alike and SNI still carries the address's host.
struct ServerNameOverride {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl fmt::Debug for ServerNameOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerNameOverride")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for ServerNameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::PemFile;

    /// A PEM file of `it/fixtures/kafka-tls` (the test CA, broker and client certificates),
    /// shared with the wire client's TLS tests.
    pub(crate) fn fixture(name: &str) -> PemFile {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("it/fixtures/kafka-tls")
            .join(name);
        PemFile {
            pem: std::fs::read(&path).expect("fixture"),
            path,
        }
    }

    #[test]
    fn builds_with_roots_ca_client_cert_and_override() {
        // No skip on an unsupported CPU: that would pass without testing anything.
        assert!(crate::crypto::cpu_supported(), "this CPU cannot run graviola");
        client_config(&KafkaTlsSettings::default()).expect("webpki roots");
        let full = KafkaTlsSettings {
            ca: Some(fixture("ca.pem")),
            certificate: Some(fixture("client.pem")),
            key: Some(fixture("client.key")),
            server_name: Some("broker.test".into()),
        };
        let config = client_config(&full).expect("full");
        assert!(config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_names_the_key() {
        let mismatched = KafkaTlsSettings {
            certificate: Some(fixture("client.pem")),
            key: Some(fixture("broker.key")),
            ..KafkaTlsSettings::default()
        };
        let err = client_config(&mismatched).unwrap_err().to_string();
        assert!(err.starts_with("kafka.ssl.key.location: "), "{err}");
    }
}
