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
    /// The call did not finish in time.
    #[error("kafka {what} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// The bound that ran out.
        after: Duration,
    },
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

    /// Returns the connected client, connecting first if needed.
    ///
    /// # Errors
    /// When no bootstrap broker answers within the timeout.
    pub async fn get(&self) -> Result<Arc<Client>> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let mut builder = ClientBuilder::new(self.bootstrap().to_vec())
                    .client_id(self.client_id().to_owned())
                    .backoff_config(self.backoff_config());
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
