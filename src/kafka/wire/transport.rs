//! The byte stream under one broker connection: TCP, or TLS over TCP. Framing
//! ([`super::frame`]) works on either through `AsyncRead`/`AsyncWrite`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Error, Result};

/// A connected stream to a broker.
#[derive(Debug)]
pub(crate) enum Stream {
    /// `PLAINTEXT` / `SASL_PLAINTEXT`.
    Plain(TcpStream),
    /// `SSL` / `SASL_SSL`. Boxed: the TLS state is a few KiB, the enum moves around.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Opens TCP to `addr` with `TCP_NODELAY`, then TLS when `tls` is given; the whole of it
/// bounded by `timeout`.
///
/// # Errors
/// [`Error::Connect`] for TCP (and name resolution), [`Error::Tls`] for the handshake (an
/// untrusted or misnamed certificate, a refused client certificate, no common version).
pub(crate) async fn open(
    addr: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Stream> {
    let connect_error = |source| Error::Connect {
        addr: addr.to_owned(),
        source,
    };
    let timed_out =
        |what: &str| io::Error::new(io::ErrorKind::TimedOut, format!("no {what} after {timeout:?}"));
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(connect_error(e)),
        Err(_elapsed) => return Err(connect_error(timed_out("TCP connection"))),
    };
    // Requests are small and we wait for every answer; Nagle would only add latency.
    tcp.set_nodelay(true).map_err(connect_error)?;
    let Some(config) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let tls_error = |source| Error::Tls {
        addr: addr.to_owned(),
        source,
    };
    let name = ServerName::try_from(host(addr).to_owned())
        .map_err(|e| tls_error(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let handshake = TlsConnector::from(Arc::clone(config)).connect(name, tcp);
    match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(stream))),
        Ok(Err(e)) => Err(tls_error(e)),
        Err(_elapsed) => Err(tls_error(timed_out("TLS handshake"))),
    }
}

/// The host of `host:port`, without the brackets of an IPv6 literal.
fn host(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _port)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host;

    #[test]
    fn host_strips_port_and_ipv6_brackets() {
        assert_eq!(host("broker-1.example.com:9093"), "broker-1.example.com");
        assert_eq!(host("10.0.0.1:9092"), "10.0.0.1");
        assert_eq!(host("[::1]:9092"), "::1");
    }
}

/// The wire client over TLS against the fake broker serving `it/fixtures/kafka-tls`'s
/// `broker.test` certificate on 127.0.0.1, with a required client certificate.
#[cfg(test)]
mod tls_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use kafka_protocol::messages::{ApiKey, MetadataRequest};
    use kafka_protocol::protocol::VersionRange;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::super::testing::{Behaviour, FakeBroker, plain};
    use super::super::{BrokerConnection, Error};
    use crate::config::KafkaTlsSettings;
    use crate::kafka::tls::client_config;
    use crate::kafka::tls::tests::fixture;

    const T: Duration = Duration::from_secs(5);

    async fn tls_broker() -> FakeBroker {
        let provider = crate::crypto::provider();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&fixture("ca.pem").pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .unwrap();
        let chain = CertificateDer::pem_slice_iter(&fixture("broker.pem").pem)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(&fixture("broker.key").pem).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(clients)
            .with_single_cert(chain, key)
            .unwrap();
        let behaviour = Behaviour {
            tls: Some(Arc::new(config)),
            ..Behaviour::default()
        };
        FakeBroker::start_with(&[(ApiKey::Metadata, VersionRange { min: 0, max: 9 })], behaviour).await
    }

    fn settings(server_name: Option<&str>, ca: bool) -> KafkaTlsSettings {
        KafkaTlsSettings {
            ca: ca.then(|| fixture("ca.pem")),
            certificate: Some(fixture("client.pem")),
            key: Some(fixture("client.key")),
            server_name: server_name.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn mtls_with_the_server_name_override() {
        let broker = tls_broker().await;
        let connect = plain(T).with_tls(client_config(&settings(Some("broker.test"), true)).unwrap());
        let conn = BrokerConnection::connect(&broker.addr(), &connect).await.unwrap();
        conn.request(MetadataRequest::default()).await.unwrap();
    }

    #[tokio::test]
    async fn a_misnamed_or_untrusted_certificate_is_a_tls_error() {
        let broker = tls_broker().await;
        // The certificate names broker.test, not 127.0.0.1.
        let connect = plain(T).with_tls(client_config(&settings(None, true)).unwrap());
        let err = BrokerConnection::connect(&broker.addr(), &connect)
            .await
            .unwrap_err();
        let text = super::super::error_chain(&err);
        assert!(matches!(err, Error::Tls { .. }), "{text}");
        assert!(text.contains("not valid for name"), "{text}");
        // The built-in roots do not know the test CA.
        let connect = plain(T).with_tls(client_config(&settings(Some("broker.test"), false)).unwrap());
        let err = BrokerConnection::connect(&broker.addr(), &connect)
            .await
            .unwrap_err();
        let text = super::super::error_chain(&err);
        assert_eq!(err.security_failure(), Some("TLS handshake failed"), "{text}");
        assert!(text.contains("invalid peer certificate"), "{text}");
    }
}
