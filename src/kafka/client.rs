//! The shared rskafka client, built on first use.

use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::{Client, ClientBuilder};
use tokio::sync::OnceCell;

use super::connect::KafkaConnect;

/// Errors of the shared client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rskafka reported an error.
    #[error("kafka: {0}")]
    Kafka(#[from] rskafka::client::error::Error),
    /// No bootstrap broker could be connected to, authenticated with, or trusted (found by
    /// the wire client before rskafka is asked: see [`KafkaClient::get`]).
    #[error("kafka: {}", super::wire::error_chain(.0))]
    Connect(#[source] super::wire::Error),
    /// The call did not finish in time.
    #[error("kafka {what} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// The bound that ran out.
        after: Duration,
    },
}

impl Error {
    /// The wire client's error when connecting failed there (for telling an authentication
    /// or certificate problem from an unreachable broker).
    pub fn connect_error(&self) -> Option<&super::wire::Error> {
        match self {
            Self::Connect(e) => Some(e),
            _ => None,
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A lazily connected rskafka [`Client`].
///
/// rskafka's `ClientBuilder::build` fails when no bootstrap broker answers, and
/// bigpipe must start anyway (readiness says not ready until Kafka is there),
/// so the connection is made on first use and retried by the callers.
#[derive(Debug)]
pub struct KafkaClient {
    connect: KafkaConnect,
    client: OnceCell<Arc<Client>>,
    /// The partition clients made through it (see [`super::partitions`]).
    pub(super) partitions: super::partitions::PartitionCache,
}

impl KafkaClient {
    /// Creates an unconnected client. The request timeout of `connect` bounds every call made
    /// through it.
    pub fn new(connect: KafkaConnect) -> Self {
        Self {
            connect,
            client: OnceCell::new(),
            partitions: super::partitions::PartitionCache::default(),
        }
    }

    /// The bound used for single Kafka calls.
    pub fn timeout(&self) -> Duration {
        self.connect.request_timeout()
    }

    /// The bootstrap servers.
    pub fn bootstrap(&self) -> &[String] {
        self.connect.bootstrap()
    }

    /// The client id sent to Kafka.
    pub fn client_id(&self) -> &str {
        self.connect.client_id()
    }

    /// How to reach Kafka, for the wire client's connections.
    pub fn connect(&self) -> &KafkaConnect {
        &self.connect
    }

    /// rskafka's internal retries, bounded so that they give up within our timeout
    /// (its default retries forever).
    pub fn backoff_config(&self) -> BackoffConfig {
        BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(self.timeout()),
        }
    }

    /// True once [`KafkaClient::get`] has connected (it stays connected: rskafka reconnects to
    /// brokers itself). Lets background readers wait for the topic upkeep's connection instead
    /// of each retrying their own while Kafka refuses or cannot be reached.
    pub fn is_connected(&self) -> bool {
        self.client.initialized()
    }

    /// Returns the connected client, connecting first if needed.
    ///
    /// Before rskafka connects, the wire client opens one connection the same way (TCP, TLS,
    /// ApiVersions, SASL): rskafka retries a refused login or certificate until its deadline
    /// and then reports only a timeout, while the wire client fails at once with
    /// [`wire::Error::Authentication`](super::wire::Error::Authentication) or
    /// [`wire::Error::Tls`](super::wire::Error::Tls), which `/readyz` and the log can name.
    ///
    /// # Errors
    /// [`Error::Connect`] when no bootstrap broker can be connected to (with the reason per
    /// broker); otherwise when rskafka cannot connect within the timeout.
    pub async fn get(&self) -> Result<Arc<Client>> {
        let client = self
            .client
            .get_or_try_init(|| async {
                super::wire::connect_any(&self.connect)
                    .await
                    .map_err(Error::Connect)?;
                let mut builder = ClientBuilder::new(self.bootstrap().to_vec())
                    .client_id(self.client_id().to_owned())
                    .backoff_config(self.backoff_config());
                if let Some(tls) = self.connect.tls() {
                    builder = builder.tls_config(Arc::clone(tls));
                }
                if let Some(sasl) = self.connect.rskafka_sasl() {
                    builder = builder.sasl_config(sasl);
                }
                let client = bounded("connect", self.timeout(), builder.build()).await??;
                Ok::<_, Error>(Arc::new(client))
            })
            .await?;
        Ok(Arc::clone(client))
    }
}

/// Runs `fut` with a deadline, naming what timed out.
pub async fn bounded<F: std::future::Future>(
    what: &'static str,
    after: Duration,
    fut: F,
) -> Result<F::Output> {
    tokio::time::timeout(after, fut)
        .await
        .map_err(|_| Error::Timeout { what, after })
}
