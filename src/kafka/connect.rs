//! One value that says how to reach Kafka: bootstrap brokers, client id, request timeout, TLS
//! and SASL. Built once from the config and handed to both clients (rskafka for produce and
//! fetch, [`super::wire`] for groups and admin), so a security setting is applied in one place.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{KafkaSettings, SaslMechanism, Secret};

use super::tls::{self, TlsSetupError};

/// SASL credentials for every new connection.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password; never printed.
    pub password: Secret,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How to reach Kafka. Cheap to clone (the TLS configuration is shared).
#[derive(Clone)]
pub struct KafkaConnect {
    bootstrap: Vec<String>,
    client_id: String,
    request_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<Sasl>,
}

impl KafkaConnect {
    /// Plaintext, unauthenticated connections (`security.protocol = PLAINTEXT`).
    pub fn plaintext(
        bootstrap: Vec<String>,
        client_id: impl Into<String>,
        request_timeout: Duration,
    ) -> Self {
        Self {
            bootstrap,
            client_id: client_id.into(),
            request_timeout,
            tls: None,
            sasl: None,
        }
    }

    /// The connection settings of `kafka.*`, with the TLS configuration built.
    ///
    /// # Errors
    /// When the TLS configuration cannot be built (see [`TlsSetupError`]).
    pub fn from_settings(kafka: &KafkaSettings) -> Result<Self, TlsSetupError> {
        let security = &kafka.security;
        let tls = security.tls.as_ref().map(tls::client_config).transpose()?;
        let sasl = security.sasl.as_ref().map(|s| Sasl {
            mechanism: s.mechanism,
            username: s.username.clone(),
            password: s.password.clone(),
        });
        Ok(Self {
            bootstrap: kafka.bootstrap_servers.clone(),
            client_id: kafka.client_id.clone(),
            request_timeout: kafka.request_timeout,
            tls,
            sasl,
        })
    }

    /// Connections use TLS with this configuration.
    #[must_use]
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connections authenticate with SASL.
    #[must_use]
    pub fn with_sasl(mut self, sasl: Sasl) -> Self {
        self.sasl = Some(sasl);
        self
    }

    /// Another bound for connecting and for each request.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The seed brokers, `host:port`.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// The client id sent with every request.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The bound for connecting (TCP, then TLS, then each handshake request) and each request.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The TLS configuration, when connections use TLS.
    pub fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// The SASL credentials, when connections authenticate.
    pub fn sasl(&self) -> Option<&Sasl> {
        self.sasl.as_ref()
    }

    /// The same SASL settings in rskafka's terms.
    pub fn rskafka_sasl(&self) -> Option<rskafka::client::SaslConfig> {
        use rskafka::client::{Credentials, SaslConfig};
        self.sasl.as_ref().map(|s| {
            let credentials = Credentials::new(s.username.clone(), s.password.expose().to_owned());
            match s.mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(credentials),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
            }
        })
    }

    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, for logs.
    pub fn protocol_name(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }
}

impl fmt::Debug for KafkaConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConnect")
            .field("bootstrap", &self.bootstrap)
            .field("client_id", &self.client_id)
            .field("request_timeout", &self.request_timeout)
            .field("protocol", &self.protocol_name())
            .field("sasl", &self.sasl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let connect =
            KafkaConnect::plaintext(vec!["a:1".into()], "c", Duration::from_secs(1)).with_sasl(Sasl {
                mechanism: SaslMechanism::ScramSha512,
                username: "alice".into(),
                password: Secret::new("hunter2"),
            });
        let shown = format!("{connect:?}");
        assert!(
            shown.contains("alice") && shown.contains("SASL_PLAINTEXT"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
