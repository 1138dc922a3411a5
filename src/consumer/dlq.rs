//! The dead-letter topic of a consumer entry.
//!
//! A call that used all its attempts (or cannot be decoded) is written here,
//! and only then counts as finished, so its offset can be committed. The
//! record keeps the original key and value (the Go JSON) and adds headers that
//! say why. Writing is retried until it succeeds or the partition is given up
//! (revoked), so nothing is dropped: an unwritten dead letter keeps its offset
//! uncommitted and the call is read again by the next owner.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use slog::{Logger, warn};
use tokio::sync::Mutex;

use crate::backoff::{Backoff, BackoffConfig};
use crate::kafka::client::{KafkaClient, bounded};
use crate::producer::partitioner::PartitionTable;

/// Why a call was dead-lettered, and what happened to it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Original record key.
    pub key: Option<Vec<u8>>,
    /// Original record value.
    pub value: Vec<u8>,
    /// Original record headers.
    pub headers: BTreeMap<String, Vec<u8>>,
    /// Source partition and offset.
    pub source: (i32, i64),
    /// Human-readable reason.
    pub reason: String,
    /// Last HTTP status, when there was a response.
    pub last_status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// First and last attempt, ms since the epoch.
    pub first_attempt_ms: i64,
    /// Last attempt, ms since the epoch.
    pub last_attempt_ms: i64,
}

impl DeadLetter {
    /// The record written to the dead-letter topic.
    pub fn to_record(&self, group: &str, topic: &str) -> Record {
        let mut headers = self.headers.clone();
        let mut put = |k: &str, v: String| {
            headers.insert(format!("bigpipe-dlq-{k}"), v.into_bytes());
        };
        put("reason", self.reason.clone());
        if let Some(status) = self.last_status {
            put("status", status.to_string());
        }
        put("attempts", self.attempts.to_string());
        put("first-attempt-ms", self.first_attempt_ms.to_string());
        put("last-attempt-ms", self.last_attempt_ms.to_string());
        put("group", group.to_owned());
        put("source", format!("{topic}/{}/{}", self.source.0, self.source.1));
        Record {
            key: self.key.clone(),
            value: Some(self.value.clone()),
            headers,
            timestamp: chrono::Utc::now(),
        }
    }
}

/// Writes dead letters of one consumer entry.
#[derive(Debug)]
pub struct DeadLetterWriter {
    /// Dead-letter topic.
    pub topic: String,
    /// Consumer group, recorded in a header.
    pub group: String,
    /// Source topic, recorded in a header.
    pub source_topic: String,
    client: Arc<KafkaClient>,
    table: Arc<PartitionTable>,
    partitions: Mutex<BTreeMap<i32, Arc<PartitionClient>>>,
    log: Logger,
}

impl DeadLetterWriter {
    /// Creates a writer for `topic`.
    pub fn new(
        topic: String,
        group: String,
        source_topic: String,
        client: Arc<KafkaClient>,
        table: Arc<PartitionTable>,
        log: Logger,
    ) -> Self {
        Self {
            topic,
            group,
            source_topic,
            client,
            table,
            partitions: Mutex::new(BTreeMap::new()),
            log,
        }
    }

    /// Writes `letter`, retrying with backoff until Kafka acknowledges it.
    /// Cancel the future to give up (the call then stays uncommitted).
    pub async fn write(&self, letter: &DeadLetter) {
        let record = letter.to_record(&self.group, &self.source_topic);
        let count = self.table.count(&self.topic).unwrap_or(1).max(1);
        let partition = letter.source.0.rem_euclid(count);
        let mut backoff = Backoff::new(BackoffConfig {
            max: Duration::from_secs(10),
            ..BackoffConfig::default()
        });
        loop {
            match self.try_write(partition, record.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(self.log, "dead letter not written, retrying";
                        "topic" => &self.topic, "partition" => partition, "error" => &e,
                        "retry_in_ms" => delay.as_millis());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn try_write(&self, partition: i32, record: Record) -> Result<(), String> {
        let pc = self.partition(partition).await?;
        let timeout = self.client.timeout() * 2;
        match bounded(
            "dead letter produce",
            timeout,
            pc.produce(vec![record], Compression::Snappy),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.partitions.lock().await.remove(&partition);
                Err(e.to_string())
            }
            Err(e) => {
                self.partitions.lock().await.remove(&partition);
                Err(e.to_string())
            }
        }
    }

    async fn partition(&self, partition: i32) -> Result<Arc<PartitionClient>, String> {
        let mut cache = self.partitions.lock().await;
        if let Some(pc) = cache.get(&partition) {
            return Ok(Arc::clone(pc));
        }
        let client = self.client.get().await.map_err(|e| e.to_string())?;
        let pc = bounded(
            "dead letter partition lookup",
            self.client.timeout(),
            client.partition_client(self.topic.clone(), partition, UnknownTopicHandling::Retry),
        )
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let pc = Arc::new(pc);
        cache.insert(partition, Arc::clone(&pc));
        Ok(pc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keeps_the_original_and_says_why() {
        let letter = DeadLetter {
            key: Some(b"k".to_vec()),
            value: b"{\"Url\":\"u\"}".to_vec(),
            headers: BTreeMap::from([("bigpipe-call-id".into(), b"id-1".to_vec())]),
            source: (2, 17),
            reason: "attempts exhausted: status 503".into(),
            last_status: Some(503),
            attempts: 3,
            first_attempt_ms: 1000,
            last_attempt_ms: 2000,
        };
        let r = letter.to_record("G1", "calls");
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"{\"Url\":\"u\"}"[..]));
        let h = |k: &str| String::from_utf8(r.headers[k].clone()).unwrap();
        assert_eq!(h("bigpipe-call-id"), "id-1");
        assert_eq!(h("bigpipe-dlq-reason"), "attempts exhausted: status 503");
        assert_eq!(h("bigpipe-dlq-status"), "503");
        assert_eq!(h("bigpipe-dlq-attempts"), "3");
        assert_eq!(h("bigpipe-dlq-first-attempt-ms"), "1000");
        assert_eq!(h("bigpipe-dlq-group"), "G1");
        assert_eq!(h("bigpipe-dlq-source"), "calls/2/17");
    }
}
