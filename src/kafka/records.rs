//! Writes single records to topics the consumer side owns (retry tiers, dead
//! letters), through the shared client's cached partition clients, with a bound on
//! every attempt.
//!
//! One call of [`RecordWriter::write`] is one attempt: callers decide how often
//! to try again, and [`WriteError::fault`] says whether trying again can help.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::error::Error as KafkaError;
use rskafka::client::partition::Compression;
use rskafka::record::Record;

use super::client::{self, KafkaClient, bounded};
use super::fault;
use super::partitions::{PartitionKey, Purpose};

/// Why one write of a record failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The shared client could not connect, or the partition's leader could not be found
    /// (in time).
    #[error("partition lookup failed: {0}")]
    Lookup(#[source] client::Error),
    /// Kafka failed or refused the produce.
    #[error("produce failed: {0}")]
    Produce(#[source] KafkaError),
    /// A step did not finish within its bound.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// The bound that ran out.
        after: Duration,
    },
}

/// What a failed write means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The record itself is refused; the same record will never be accepted.
    TooLarge,
    /// Anything else: the broker may come back, the leader may settle.
    Transient,
}

impl WriteError {
    /// Classifies the failure ([`fault::fault`]: a `match` on rskafka's error, never its text).
    pub fn fault(&self) -> Fault {
        match self {
            Self::Produce(e) if fault::fault(e) == fault::Fault::TooLarge => Fault::TooLarge,
            _ => Fault::Transient,
        }
    }

    fn from_bounded(e: client::Error, wrap: fn(KafkaError) -> Self) -> Self {
        match e {
            client::Error::Timeout { what, after } => Self::Timeout { what, after },
            client::Error::Kafka(e) => wrap(e),
            // Not produced by the bounded calls (only by `KafkaClient::get`); kept whole.
            e @ client::Error::Connect(_) => Self::Lookup(e),
        }
    }
}

/// Writes records to one topic.
#[derive(Debug)]
pub struct RecordWriter {
    topic: Arc<str>,
    client: Arc<KafkaClient>,
}

impl RecordWriter {
    /// A writer for `topic`.
    pub fn new(topic: String, client: Arc<KafkaClient>) -> Self {
        Self {
            topic: topic.into(),
            client,
        }
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `record` to `partition` once, the produce bounded by `bound`, and returns
    /// its offset once Kafka has it.
    ///
    /// # Errors
    /// Any failure of the attempt; [`WriteError::fault`] tells the final ones.
    pub async fn write(&self, partition: i32, record: Record, bound: Duration) -> Result<i64, WriteError> {
        let key = PartitionKey::new(Arc::clone(&self.topic), partition, Purpose::Produce);
        let pc = self.client.partition(&key).await.map_err(WriteError::Lookup)?;
        let produced = bounded(
            "record produce",
            bound,
            pc.produce(vec![record], Compression::Snappy),
        )
        .await
        .and_then(|r| r.map_err(client::Error::from));
        match produced {
            Ok(offsets) => Ok(offsets.first().copied().unwrap_or_default()),
            Err(e) => {
                self.client.partition_failed(&key, &pc, &e);
                Err(WriteError::from_bounded(e, WriteError::Produce))
            }
        }
    }
}
