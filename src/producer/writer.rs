//! One writer task per (topic, partition): batches calls through rskafka's
//! `BatchProducer` and retries Kafka errors until each call's deadline, except
//! "too large", which no retry can cure: such a call fails at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rskafka::client::partition::{Compression, PartitionClient};
use rskafka::client::producer::{BatchProducer, BatchProducerBuilder, Error as BatchError};
use rskafka::record::Record;
use slog::{Logger, error, warn};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffConfig};
use crate::kafka::client::{self, KafkaClient};
use crate::kafka::fault;
use crate::kafka::partitions::{PartitionKey, Purpose};
use crate::kafka::record_size::{batch_limit, parts_size};
use crate::kafka::topic_limits::TopicLimits;
use crate::message::CALL_ID_HEADER;
use crate::stats::{ProducerStats, inc};

pub use super::aggregator::TooLargeCause;
use super::aggregator::{SizedAggregator, too_large};
use super::budget::Permit;

/// What a caller waiting for Kafka's acknowledgement gets back.
pub type AckResult = Result<i64, ProduceError>;

/// Why a call could not be written to Kafka.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// Every attempt failed until the call's deadline; the last error is kept.
    #[error("not written to kafka within {budget:?}: {last_error}")]
    GaveUp {
        /// The retry budget that ran out.
        budget: Duration,
        /// The last error seen.
        #[source]
        last_error: AttemptError,
    },
    /// bigpipe shut down before the call was written.
    #[error("bigpipe shut down before the call was written to kafka")]
    ShutDown,
    /// The record can never be written as it is; it was not retried.
    #[error("kafka cannot take the record: {0}")]
    TooLarge(TooLargeCause),
}

/// Why one produce attempt failed. Cheap to clone (a [`ProduceError`] is), so the client error
/// is shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    /// No partition client: the shared client could not connect, or the leader lookup failed.
    #[error(transparent)]
    Lookup(Arc<client::Error>),
    /// rskafka's batch producer failed the batch.
    #[error(transparent)]
    Produce(#[from] BatchError),
    /// The attempt (lookup, linger and produce) did not finish in time.
    #[error("produce timed out after {0:?}")]
    Timeout(Duration),
}

impl From<client::Error> for AttemptError {
    fn from(e: client::Error) -> Self {
        Self::Lookup(Arc::new(e))
    }
}

/// An accepted call on its way to Kafka.
#[derive(Debug)]
pub struct Pending {
    /// The call id, for logs.
    pub id: String,
    /// Destination topic.
    pub topic: Arc<str>,
    /// Destination partition.
    pub partition: i32,
    /// The record to write, without its header map: that is built for each attempt
    /// ([`QueuedRecord::to_record`]), so a queued call does not hold a `BTreeMap` leaf
    /// (~540 B) for its one header.
    pub record: QueuedRecord,
    /// The call's share of the ingest budget, released when the call is done.
    pub permit: Permit,
    /// Who waits for the outcome, in `"ack": "kafka"` mode.
    pub ack: Option<oneshot::Sender<AckResult>>,
    /// When retrying stops.
    pub deadline: Instant,
}

/// A record's parts as a queued call holds them.
#[derive(Debug)]
pub struct QueuedRecord {
    /// The partition key, if any.
    pub key: Option<Vec<u8>>,
    /// The call message, encoded.
    pub value: Vec<u8>,
    /// When the call was accepted.
    pub timestamp: chrono::DateTime<chrono::Utc>,
    /// [`record_size`](crate::kafka::record_size::record_size) of the whole record, for logs.
    pub size: usize,
}

impl QueuedRecord {
    /// The record of call `call_id`, accepted now; its size counts the call id header that
    /// [`to_record`](Self::to_record) adds.
    pub fn new(key: Option<Vec<u8>>, value: Vec<u8>, call_id: &str) -> Self {
        let size = parts_size(
            key.as_ref().map_or(0, Vec::len),
            value.len(),
            [(CALL_ID_HEADER.len(), call_id.len())],
        );
        Self {
            key,
            value,
            timestamp: chrono::Utc::now(),
            size,
        }
    }

    /// The record to hand to the batch producer, with the call id header; rskafka takes the
    /// record and does not give it back on failure, so every attempt builds its own.
    pub fn to_record(&self, call_id: &str) -> Record {
        Record {
            key: self.key.clone(),
            value: Some(self.value.clone()),
            headers: BTreeMap::from([(CALL_ID_HEADER.to_owned(), call_id.as_bytes().to_vec())]),
            timestamp: self.timestamp,
        }
    }
}

/// What every writer needs; shared.
#[derive(Debug)]
pub struct WriterContext {
    /// The shared rskafka client.
    pub client: Arc<KafkaClient>,
    /// How long a batch waits for more records.
    pub linger: Duration,
    /// Largest batch, in bytes.
    pub batch_bytes: usize,
    /// The whole retry budget of a call.
    pub message_timeout: Duration,
    /// Each topic's `max.message.bytes`, which caps batches next to `batch_bytes`.
    pub limits: Arc<TopicLimits>,
    /// Logger.
    pub log: Logger,
}

type Producer = BatchProducer<SizedAggregator>;

/// The partition's batch producer, rebuilt after an error (so it reads the topic's current
/// size limit) over the shared client's cached partition client, which is dropped too when
/// the error means it may be stale ([`fault::stale_after_produce`]).
#[derive(Debug)]
struct ProducerSlot {
    ctx: Arc<WriterContext>,
    topic: Arc<str>,
    key: PartitionKey,
    current: Mutex<Option<(Arc<Producer>, Arc<PartitionClient>)>>,
}

impl ProducerSlot {
    async fn get(&self) -> Result<Arc<Producer>, AttemptError> {
        let mut current = self.current.lock().await;
        if let Some((p, _)) = current.as_ref() {
            return Ok(Arc::clone(p));
        }
        // Boxed: the lookup's state machine is large and rarely runs, and every in-flight
        // call's future would otherwise have room for it (issue 12: ~16 KB per call).
        let pc = Box::pin(self.ctx.client.partition(&self.key)).await?;
        // Snappy: cheap, pure Rust, and what the topics bigpipe creates are set to,
        // so the broker stores our batches without recompressing them.
        let limit = batch_limit(
            self.ctx.batch_bytes,
            self.ctx.limits.max_message_bytes(&self.topic),
        );
        let producer = BatchProducerBuilder::new(Arc::clone(&pc))
            .with_linger(self.ctx.linger)
            .with_compression(Compression::Snappy)
            .build(SizedAggregator::new(limit));
        let producer = Arc::new(producer);
        *current = Some((Arc::clone(&producer), pc));
        Ok(producer)
    }

    /// After `failed` returned `error`: the next attempt builds a new producer, on a freshly
    /// looked-up partition client if the error means the cached one may be stale.
    async fn invalidate(&self, failed: &Arc<Producer>, error: &BatchError) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(p, _)| Arc::ptr_eq(p, failed))
            && let Some((_, pc)) = current.take()
            && fault::stale_after_produce(error)
        {
            self.ctx.client.forget_partition(&self.key, &pc);
        }
    }

    /// After an attempt ran out of time: the connection may be wedged (rskafka has no
    /// timeout to notice), so both the producer and its partition client go.
    async fn timed_out(&self) {
        if let Some((_, pc)) = self.current.lock().await.take() {
            self.ctx.client.forget_partition(&self.key, &pc);
        }
    }
}

/// Runs the writer of one partition until its queue closes and every call in
/// it has finished (written, or failed after its retry budget).
pub async fn run(
    ctx: Arc<WriterContext>,
    stats: Arc<ProducerStats>,
    topic: Arc<str>,
    partition: i32,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let slot = ProducerSlot {
        ctx: Arc::clone(&ctx),
        key: PartitionKey::new(Arc::clone(&topic), partition, Purpose::Produce),
        topic,
        current: Mutex::new(None),
    };
    // Calls are produced concurrently so that one batch can fill while the
    // previous one is in flight. At most MAX_IN_FLIGHT at a time: each in-flight call is a
    // future of its own (about a kilobyte, more than most records), and the rest wait in the
    // channel as plain data, which is what the ingest budget counts (issue 12: a burst held
    // every queued call as a future).
    // Each in-flight call also has a copy of its record in the batch producer, so they are
    // bounded in bytes too: two batches, one filling while the other is written.
    let max_bytes = ctx.batch_bytes.saturating_mul(2);
    let mut in_flight = FuturesUnordered::new();
    let mut in_flight_bytes = 0usize;
    loop {
        let room = has_room(in_flight.len(), in_flight_bytes, max_bytes);
        tokio::select! {
            Some(done) = in_flight.next() => in_flight_bytes -= done,
            next = rx.recv(), if room => match next {
                Some(p) => {
                    in_flight_bytes += p.record.size;
                    in_flight.push(produce(&slot, &stats, p));
                }
                None => break,
            },
        }
    }
    while in_flight.next().await.is_some() {}
}

/// Most calls of one partition handed to the batch producer at once: more than a full batch
/// of the smallest records (`batch.bytes` 1 MiB / ~300 B), so batches still fill while one is
/// in flight, and a bound on the futures a burst can create. Bytes are bounded too, at two
/// batches (`run`).
pub const MAX_IN_FLIGHT: usize = 4096;

/// Whether a writer with `calls` in flight holding `bytes` of records may hand over one more:
/// under both bounds, and always when nothing is in flight, so a record larger than the byte
/// bound still goes.
fn has_room(calls: usize, bytes: usize, max_bytes: usize) -> bool {
    calls == 0 || (calls < MAX_IN_FLIGHT && bytes < max_bytes)
}

/// How one produce attempt failed.
enum Failure {
    /// Retrying cannot help; the error is for the log.
    Final(TooLargeCause, BatchError),
    /// Worth another attempt after a backoff.
    Retry(AttemptError),
}

/// Writes one call, retrying within its budget; returns its record size when it is done.
async fn produce(slot: &ProducerSlot, stats: &ProducerStats, mut p: Pending) -> usize {
    let ctx = &slot.ctx;
    let mut backoff = Backoff::new(BackoffConfig::default());
    // One attempt may include rskafka's own bounded retries and the linger.
    let attempt_bound = ctx.client.timeout() * 2 + ctx.linger;
    let outcome = loop {
        let remaining = p.deadline.saturating_duration_since(Instant::now());
        let attempt = async {
            let producer = slot.get().await.map_err(Failure::Retry)?;
            // From the hand-over to the batch producer (which includes the linger) to
            // Kafka's acknowledgement: what the caller of an acknowledged call waits for.
            let sent = Instant::now();
            match producer.produce(p.record.to_record(&p.id)).await {
                Ok(offset) => {
                    stats.duration.observe(sent.elapsed());
                    Ok(offset)
                }
                Err(e) => {
                    // Also after "too large": the next producer reads the topic's current limit.
                    slot.invalidate(&producer, &e).await;
                    Err(match too_large(&e) {
                        Some(cause) => Failure::Final(cause, e),
                        None => Failure::Retry(e.into()),
                    })
                }
            }
        };
        let error = match tokio::time::timeout(attempt_bound.min(remaining), attempt).await {
            Ok(Ok(offset)) => break Ok(offset),
            Ok(Err(Failure::Final(cause, error))) => {
                inc(&stats.too_large);
                error!(ctx.log, "kafka cannot take the call's record, not retrying";
                    "call_id" => &p.id, "topic" => &*p.topic, "partition" => p.partition,
                    "record_bytes" => p.record.size,
                    "error" => %error);
                break Err(ProduceError::TooLarge(cause));
            }
            Ok(Err(Failure::Retry(e))) => e,
            Err(_) => {
                slot.timed_out().await;
                AttemptError::Timeout(attempt_bound.min(remaining))
            }
        };
        let delay = backoff.next_delay();
        if Instant::now() + delay >= p.deadline {
            break Err(ProduceError::GaveUp {
                budget: ctx.message_timeout,
                last_error: error,
            });
        }
        inc(&stats.retries);
        warn!(ctx.log, "kafka produce failed, retrying";
            "call_id" => &p.id, "topic" => &*p.topic, "partition" => p.partition,
            "attempt" => backoff.attempts(), "retry_in_ms" => delay.as_millis(), "error" => %error);
        tokio::time::sleep(delay).await;
    };
    match &outcome {
        Ok(_) => inc(&stats.delivery_success),
        // Logged above, with the record's size.
        Err(ProduceError::TooLarge(_)) => inc(&stats.delivery_fail),
        Err(e) => {
            inc(&stats.delivery_fail);
            error!(ctx.log, "call not written to kafka";
                "call_id" => &p.id, "topic" => &*p.topic, "partition" => p.partition, "error" => %e);
        }
    }
    if let Some(ack) = p.ack.take() {
        // The caller may have given up waiting; the outcome is logged and counted either way.
        ack.send(outcome).ok();
    }
    p.record.size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_charge_per_call_covers_what_a_queued_call_holds() {
        // Pending itself (in the channel), the call id, topic and key strings (36 B or less
        // each, rounded up by the allocator). The header map is built only for an attempt.
        let held = std::mem::size_of::<Pending>() + 3 * 48;
        assert!(
            held <= super::super::QUEUED_CALL_OVERHEAD / 2,
            "{held} B per queued call"
        );
    }

    #[test]
    fn a_queued_record_knows_the_size_of_the_record_it_becomes() {
        let id = "0190a2b4-8c1e-7d3f-9a6b-2c4d6e8f0a1b";
        for key in [None, Some(b"k42".to_vec())] {
            let queued = QueuedRecord::new(key, vec![b'v'; 1000], id);
            assert_eq!(
                queued.size,
                crate::kafka::record_size::record_size(&queued.to_record(id))
            );
        }
    }

    #[test]
    fn in_flight_calls_are_bounded_by_count_and_by_bytes() {
        let max = 2 << 20;
        assert!(has_room(0, 0, max));
        assert!(has_room(0, 10 * max, max), "an empty writer takes any record");
        assert!(has_room(1, max - 1, max));
        assert!(!has_room(1, max, max), "two batches' bytes are in flight");
        assert!(has_room(MAX_IN_FLIGHT - 1, 0, max));
        assert!(
            !has_room(MAX_IN_FLIGHT, 0, max),
            "{MAX_IN_FLIGHT} calls are in flight"
        );
    }

    #[test]
    fn a_call_that_gave_up_keeps_its_last_error_typed_and_its_text_unchanged() {
        let gave_up = ProduceError::GaveUp {
            budget: Duration::from_secs(5),
            last_error: AttemptError::Timeout(Duration::from_secs(1)),
        };
        assert_eq!(
            gave_up.to_string(),
            "not written to kafka within 5s: produce timed out after 1s"
        );
        let source = std::error::Error::source(&gave_up).expect("the last error is the source");
        assert!(matches!(
            source.downcast_ref::<AttemptError>(),
            Some(AttemptError::Timeout(_))
        ));
        let lookup = AttemptError::from(client::Error::Timeout {
            what: "partition lookup",
            after: Duration::from_secs(2),
        });
        assert_eq!(lookup.to_string(), "kafka partition lookup timed out after 2s");
    }
}
