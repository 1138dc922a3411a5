//! Writes single records to topics the consumer side owns (retry tiers, dead
//! letters), with one cached partition client per partition and a bound on
//! every attempt.
//!
//! One call of [`RecordWriter::write`] is one attempt: callers decide how often
//! to try again, and [`WriteError::fault`] says whether trying again can help.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::error::{Error as KafkaError, ProtocolError, RequestError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::sync::Mutex;

use super::client::{self, KafkaClient, bounded};

/// Why one write of a record failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The shared client could not connect.
    #[error("kafka client unavailable: {0}")]
    Client(#[source] client::Error),
    /// The partition's leader could not be found.
    #[error("partition lookup failed: {0}")]
    Lookup(#[source] KafkaError),
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
    /// Classifies the failure (a `match` on rskafka's error, never its text).
    pub fn fault(&self) -> Fault {
        match self {
            Self::Produce(e) if is_too_large(e) => Fault::TooLarge,
            _ => Fault::Transient,
        }
    }

    fn from_bounded(e: client::Error, wrap: fn(KafkaError) -> Self) -> Self {
        match e {
            client::Error::Timeout { what, after } => Self::Timeout { what, after },
            client::Error::Kafka(e) => wrap(e),
        }
    }
}

/// True when Kafka (or rskafka) refuses the record for its size.
fn is_too_large(e: &KafkaError) -> bool {
    match e {
        KafkaError::ServerError {
            protocol_error: ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge,
            ..
        } => true,
        // rskafka refuses to frame a request over i32::MAX bytes. Its error type is private;
        // of its two variants only that one (`TooLarge`) has no source (the other wraps I/O).
        KafkaError::Request(RequestError::WriteMessageError(w)) => std::error::Error::source(w).is_none(),
        _ => false,
    }
}

/// Writes records to one topic.
#[derive(Debug)]
pub struct RecordWriter {
    topic: String,
    client: Arc<KafkaClient>,
    partitions: Mutex<BTreeMap<i32, Arc<PartitionClient>>>,
}

impl RecordWriter {
    /// A writer for `topic`.
    pub fn new(topic: String, client: Arc<KafkaClient>) -> Self {
        Self {
            topic,
            client,
            partitions: Mutex::new(BTreeMap::new()),
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
        let pc = self.partition(partition).await?;
        let produced = bounded(
            "record produce",
            bound,
            pc.produce(vec![record], Compression::Snappy),
        )
        .await;
        let error = match produced {
            Ok(Ok(offsets)) => return Ok(offsets.first().copied().unwrap_or_default()),
            Ok(Err(e)) => WriteError::Produce(e),
            Err(e) => WriteError::from_bounded(e, WriteError::Produce),
        };
        // A too-large refusal says nothing about the connection; anything else may mean
        // the leader moved, so look it up again next time.
        if error.fault() == Fault::Transient {
            self.partitions.lock().await.remove(&partition);
        }
        Err(error)
    }

    async fn partition(&self, partition: i32) -> Result<Arc<PartitionClient>, WriteError> {
        let mut cache = self.partitions.lock().await;
        if let Some(pc) = cache.get(&partition) {
            return Ok(Arc::clone(pc));
        }
        let client = self.client.get().await.map_err(WriteError::Client)?;
        let pc = bounded(
            "partition lookup",
            self.client.timeout(),
            client.partition_client(self.topic.clone(), partition, UnknownTopicHandling::Retry),
        )
        .await
        .map_err(|e| WriteError::from_bounded(e, WriteError::Lookup))?
        .map_err(WriteError::Lookup)?;
        let pc = Arc::new(pc);
        cache.insert(partition, Arc::clone(&pc));
        Ok(pc)
    }
}
