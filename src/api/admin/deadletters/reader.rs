//! Reading a topic (a dead-letter topic, or a main topic's log ends): one partition's bounds, one fetch from an offset, the record
//! at one offset. Every Kafka request is bounded by the client timeout, on a connection of
//! its own ([`Purpose::Fetch`] named for the admin API), so an operator's scan never queues
//! behind a consumer's long poll.

use std::ops::Range;
use std::sync::Arc;

use rskafka::client::partition::OffsetAt;
use rskafka::record::Record;

use crate::kafka::client::{self, KafkaClient, bounded};
use crate::kafka::partitions::{PartitionKey, Purpose};

/// Bytes asked of one fetch: enough for hundreds of letters, small enough to answer quickly.
const FETCH_BYTES: Range<i32> = 1..1_048_576;

/// Fetches return what is there at once: a scan never waits for new letters.
const FETCH_WAIT_MS: i32 = 10;

/// Reads one dead-letter topic.
#[derive(Debug, Clone)]
pub struct DlqReader {
    client: Arc<KafkaClient>,
    topic: Arc<str>,
}

impl DlqReader {
    /// A reader of `topic`.
    pub fn new(client: Arc<KafkaClient>, topic: &str) -> Self {
        Self {
            client,
            topic: Arc::from(topic),
        }
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn key(&self, partition: i32) -> PartitionKey {
        // The admin scans share one connection per partition, apart from the consumers'.
        PartitionKey::new(
            Arc::clone(&self.topic),
            partition,
            Purpose::Fetch(Arc::from("bigpipe-admin")),
        )
    }

    async fn offset(&self, partition: i32, at: OffsetAt) -> Result<i64, client::Error> {
        let key = self.key(partition);
        let pc = self.client.partition(&key).await?;
        let got = bounded("dead-letter offsets", self.client.timeout(), pc.get_offset(at))
            .await
            .and_then(|r| r.map_err(client::Error::from));
        if let Err(e) = &got {
            self.client.partition_failed(&key, &pc, e);
        }
        got
    }

    /// The partition's log end (the offset the next record will get).
    ///
    /// # Errors
    /// When Kafka cannot answer within the client timeout.
    pub async fn log_end(&self, partition: i32) -> Result<i64, client::Error> {
        self.offset(partition, OffsetAt::Latest).await
    }

    /// The partition's log start and log end.
    ///
    /// # Errors
    /// When Kafka cannot answer within the client timeout.
    pub async fn bounds(&self, partition: i32) -> Result<(i64, i64), client::Error> {
        let start = self.offset(partition, OffsetAt::Earliest).await?;
        let end = self.offset(partition, OffsetAt::Latest).await?;
        Ok((start, end.max(start)))
    }

    /// The records of one fetch from `offset` on (those before `offset` in a batch dropped),
    /// in offset order.
    ///
    /// # Errors
    /// When Kafka cannot answer within the client timeout.
    pub async fn fetch(&self, partition: i32, offset: i64) -> Result<Vec<(i64, Record)>, client::Error> {
        let key = self.key(partition);
        let pc = self.client.partition(&key).await?;
        let got = bounded(
            "dead-letter fetch",
            self.client.timeout(),
            pc.fetch_records(offset, FETCH_BYTES, FETCH_WAIT_MS),
        )
        .await
        .and_then(|r| r.map_err(client::Error::from));
        match got {
            Ok((records, _high_watermark)) => {
                let mut out: Vec<(i64, Record)> = records
                    .into_iter()
                    .filter(|r| r.offset >= offset)
                    .map(|r| (r.offset, r.record))
                    .collect();
                out.sort_by_key(|(o, _)| *o);
                Ok(out)
            }
            Err(e) => {
                self.client.partition_failed(&key, &pc, &e);
                Err(e)
            }
        }
    }

    /// The record at exactly `offset`, `None` when there is none (out of range, compacted).
    ///
    /// # Errors
    /// When Kafka cannot answer within the client timeout.
    pub async fn record_at(&self, partition: i32, offset: i64) -> Result<Option<Record>, client::Error> {
        let (start, end) = self.bounds(partition).await?;
        if offset < start || offset >= end {
            return Ok(None);
        }
        let records = self.fetch(partition, offset).await?;
        Ok(records.into_iter().find(|(o, _)| *o == offset).map(|(_, r)| r))
    }
}
