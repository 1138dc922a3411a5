//! Writes single records to a topic the consumer side owns (retry tiers), with
//! one cached partition client per partition and a bound on every attempt.
//!
//! One call of [`RecordWriter::write`] is one attempt: callers decide how often
//! to try again, and errors say whether trying again can help.

use std::collections::BTreeMap;
use std::sync::Arc;

use rskafka::client::error::{Error as RsError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::sync::Mutex;

use super::client::{self, KafkaClient, bounded};

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The client, a lookup or the produce failed or timed out.
    #[error(transparent)]
    Kafka(#[from] client::Error),
    /// The produce request was answered with an error.
    #[error("produce to {topic}/{partition} failed")]
    Produce {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// rskafka's error.
        #[source]
        source: RsError,
    },
}

impl WriteError {
    /// Kafka refused the record for its size: writing it again cannot succeed.
    pub fn is_too_large(&self) -> bool {
        let source = match self {
            Self::Produce { source, .. } | Self::Kafka(client::Error::Kafka(source)) => source,
            Self::Kafka(_) => return false,
        };
        matches!(
            source,
            RsError::ServerError {
                protocol_error: ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge,
                ..
            }
        )
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

    /// Writes `record` to `partition` once and returns its offset once Kafka has it.
    ///
    /// # Errors
    /// Any failure of the attempt; [`WriteError::is_too_large`] tells the final ones.
    pub async fn write(&self, partition: i32, record: Record) -> Result<i64, WriteError> {
        let pc = self.partition(partition).await?;
        // Two request timeouts: rskafka may retry a leader change inside one produce.
        let produced = bounded(
            "record produce",
            self.client.timeout() * 2,
            pc.produce(vec![record], Compression::Snappy),
        )
        .await;
        let failed = match produced {
            Ok(Ok(offsets)) => return Ok(offsets.first().copied().unwrap_or_default()),
            Ok(Err(source)) => WriteError::Produce {
                topic: self.topic.clone(),
                partition,
                source,
            },
            Err(e) => WriteError::Kafka(e),
        };
        // A stale leader connection must not be reused.
        self.partitions.lock().await.remove(&partition);
        Err(failed)
    }

    async fn partition(&self, partition: i32) -> Result<Arc<PartitionClient>, WriteError> {
        let mut cache = self.partitions.lock().await;
        if let Some(pc) = cache.get(&partition) {
            return Ok(Arc::clone(pc));
        }
        let client = self.client.get().await?;
        let pc = bounded(
            "partition lookup",
            self.client.timeout(),
            client.partition_client(self.topic.clone(), partition, UnknownTopicHandling::Retry),
        )
        .await?
        .map_err(client::Error::Kafka)?;
        let pc = Arc::new(pc);
        cache.insert(partition, Arc::clone(&pc));
        Ok(pc)
    }
}
