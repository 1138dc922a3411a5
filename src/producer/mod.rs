//! The ingest pipeline: accepted calls → bounded queue → per-partition batches → Kafka.
//!
//! ```text
//!  HTTP handlers ──submit()──► [size] ─► [budget: calls+bytes] ──send──► dispatcher task
//!   (never wait)      too large → 413   full or ACL share → overload  │ routes by (topic, partition)
//!                                                              ▼
//!                                 one writer task per partition: rskafka BatchProducer
//!                                 (linger, batch bytes, acks=all), retries with backoff
//!                                 until the call's deadline, then counts deliveryFail
//!                                 ("too large" is final: failed at once)
//! ```
//!
//! Handlers only do non-blocking work: choose the partition, encode the Go
//! record JSON, check that the record can ever be written (see
//! [`crate::kafka::record_size`]), take room in the [`budget::QueueBudget`]
//! (shared fairly between ACLs, see [`fair`]) and hand the call to the
//! dispatcher. A call keeps its budget permit until Kafka has acknowledged it,
//! so the budget bounds all memory held for calls not yet in Kafka.

pub mod aggregator;
pub mod budget;
pub mod fair;
pub mod partitioner;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use slog::{Logger, info, warn};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::kafka::client::KafkaClient;
use crate::kafka::record_size::{self, TooLarge};
use crate::kafka::topic_limits::TopicLimits;
use crate::message::CallMessage;
use crate::stats::Stats;

use crate::kafka::metadata::PartitionTable;
use budget::{BudgetLimits, QueueBudget};
pub use fair::Refusal;
use partitioner::Partitioner;
pub use writer::{AckResult, AttemptError, ProduceError, TooLargeCause};
use writer::{Pending, QueuedRecord, WriterContext};

/// Bytes charged to the ingest queue for each call on top of its record: the queued
/// [`writer::Pending`] with its call id, topic and key, and, once the call is handed to the
/// batch producer, its produce future (~1.1 KB, measured with heaptrack) and the header map of
/// its record. Without it 500,000 queued 100 B calls held ~500 MB while `queue.bytes` counted
/// 140 MB (issue 12).
pub const QUEUED_CALL_OVERHEAD: usize = 1024;

/// Settings of the ingest pipeline.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Most calls held in memory.
    pub queue_calls: usize,
    /// Most record bytes held in memory.
    pub queue_bytes: usize,
    /// Fraction of both queue limits reserved, split equally among `acls`.
    pub queue_reserved: f64,
    /// The configured ACL names, each with a reserve of the queue.
    pub acls: Vec<String>,
    /// Batch linger.
    pub linger: Duration,
    /// Largest batch in bytes.
    pub batch_bytes: usize,
    /// How long a call may be retried before it counts as failed.
    pub message_timeout: Duration,
}

impl ProducerConfig {
    /// The queue's limits as the budget takes them.
    pub fn budget_limits(&self) -> BudgetLimits {
        BudgetLimits {
            calls: self.queue_calls,
            bytes: self.queue_bytes,
            reserved: self.queue_reserved,
            acls: self.acls.clone(),
        }
    }
}

/// A call ready to be queued.
#[derive(Debug)]
pub struct Call {
    /// The call id.
    pub id: String,
    /// The caller's ACL name, whose share of the queue the call takes.
    pub acl: String,
    /// The record key (`partition_key`), may be empty.
    pub key: String,
    /// The record value; `partition` is filled in by [`ProducerHandle::submit`].
    pub message: CallMessage,
    /// Whether the caller waits for Kafka's acknowledgement.
    pub want_ack: bool,
}

/// Why a call was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full (in calls or in bytes), or the ACL's share of it is.
    #[error(transparent)]
    Overload(#[from] Refusal),
    /// The record could never be written to Kafka.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// bigpipe is shutting down and takes no more calls.
    #[error("bigpipe is shutting down")]
    ShuttingDown,
    /// The topic has no known partition count (not configured).
    #[error("topic {0} is unknown")]
    UnknownTopic(String),
}

/// The handlers' side of the pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProducerHandle {
    /// Unbounded on purpose: the budget is the bound (it admits a call before
    /// it is sent here), and its limits can change at run time, which a
    /// channel's capacity cannot.
    tx: mpsc::UnboundedSender<Pending>,
    budget: QueueBudget,
    table: Arc<PartitionTable>,
    /// Shared by every clone, so calls without a key go round-robin across them all.
    partitioner: Arc<Partitioner>,
    /// Each topic's `max.message.bytes`, one of the two limits a record must fit.
    limits: Arc<TopicLimits>,
    /// `kafka.producer.batch.bytes`, the other one (fixed until restart).
    batch_bytes: usize,
    /// Milliseconds; reloadable.
    message_timeout_ms: Arc<AtomicU64>,
}

impl ProducerHandle {
    /// Queues a call without waiting. Returns the receiver of Kafka's answer
    /// when the call asked for it.
    ///
    /// # Errors
    /// [`SubmitError::TooLarge`] when the record, with room for a dead letter, is larger
    /// than a batch (`batch.bytes`) or the topic's `max.message.bytes`: nothing is queued.
    /// [`SubmitError::Overload`] at once when the queue, or the ACL's share of it, is full.
    pub fn submit(&self, call: Call) -> Result<Option<oneshot::Receiver<AckResult>>, SubmitError> {
        let Call {
            id,
            acl,
            key,
            mut message,
            want_ack,
        } = call;
        let partition = self
            .partitioner
            .choose(&self.table, &message.topic, &key)
            .ok_or_else(|| SubmitError::UnknownTopic(message.topic.clone()))?;
        message.partition = partition;
        let record = QueuedRecord::new((!key.is_empty()).then(|| key.into_bytes()), message.encode(), &id);
        let size = record.size;
        let limit = record_size::batch_limit(self.batch_bytes, self.limits.max_message_bytes(&message.topic));
        record_size::check_fits(size, limit)?;
        // The encoded size plus what a queued call holds besides its record, so that
        // `queue.bytes` bounds memory for small calls too (issue 12).
        let permit = self.budget.try_acquire(&acl, size + QUEUED_CALL_OVERHEAD)?;
        let (ack, rx) = if want_ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let pending = Pending {
            id,
            topic: Arc::from(message.topic.as_str()),
            partition,
            record,
            permit,
            ack,
            deadline: Instant::now() + Duration::from_millis(self.message_timeout_ms.load(Ordering::Relaxed)),
        };
        self.tx.send(pending).map_err(|_| SubmitError::ShuttingDown)?;
        Ok(rx)
    }

    /// Applies reloaded limits: queue size in calls and bytes with the ACLs' reserves, and
    /// the retry budget of new calls.
    pub fn reconfigure(&self, queue: &BudgetLimits, message_timeout: Duration) {
        self.budget.set_limits(queue);
        let ms = u64::try_from(message_timeout.as_millis()).unwrap_or(u64::MAX);
        self.message_timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// The partition table, refreshed from metadata.
    pub fn partitions(&self) -> &Arc<PartitionTable> {
        &self.table
    }
}

/// The owner of the pipeline's tasks.
#[derive(Debug)]
pub struct Producer {
    handle: ProducerHandle,
    stop: CancellationToken,
    tracker: TaskTracker,
    log: Logger,
}

impl Producer {
    /// Starts the dispatcher on the current runtime.
    pub fn start(
        config: &ProducerConfig,
        client: Arc<KafkaClient>,
        table: Arc<PartitionTable>,
        limits: Arc<TopicLimits>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = QueueBudget::new(
            &config.budget_limits(),
            Arc::clone(&stats.queue.calls),
            Arc::clone(&stats.queue.bytes),
        );
        let ctx = Arc::new(WriterContext {
            client,
            linger: config.linger,
            batch_bytes: config.batch_bytes,
            message_timeout: config.message_timeout,
            limits: Arc::clone(&limits),
            log: log.clone(),
        });
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(dispatch(rx, ctx, stats, tracker.clone(), stop.clone()));
        let ms = u64::try_from(config.message_timeout.as_millis()).unwrap_or(u64::MAX);
        let handle = ProducerHandle {
            tx,
            budget,
            table,
            partitioner: Arc::new(Partitioner::default()),
            limits,
            batch_bytes: config.batch_bytes,
            message_timeout_ms: Arc::new(AtomicU64::new(ms)),
        };
        Self {
            handle,
            stop,
            tracker,
            log,
        }
    }

    /// A handle for the HTTP handlers.
    pub fn handle(&self) -> ProducerHandle {
        self.handle.clone()
    }

    /// Stops taking calls, then waits up to `grace` for every queued call to
    /// be written to Kafka. Returns how many calls were still unwritten when
    /// the grace period ran out (they are lost: the caller was told "accepted";
    /// `"ack": "kafka"` exists for callers that cannot accept that).
    pub async fn shutdown(self, grace: Duration) -> i64 {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            let left = self.handle.budget.calls();
            warn!(self.log, "calls not written to kafka before the grace period ended"; "calls" => left);
            return left;
        }
        info!(self.log, "ingest queue flushed to kafka");
        0
    }
}

/// Routes queued calls to their partition's writer, starting writers on first use.
async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<Pending>,
    ctx: Arc<WriterContext>,
    stats: Arc<Stats>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let mut writers: HashMap<(Arc<str>, i32), mpsc::UnboundedSender<Pending>> = HashMap::new();
    let mut route = |p: Pending| {
        let key = (Arc::clone(&p.topic), p.partition);
        let tx = writers.entry(key).or_insert_with(|| {
            // Unbounded on purpose: the ingest budget already bounds what can be
            // queued, and a bounded channel here would let one stuck partition
            // stall the dispatcher and with it every other partition.
            let (tx, rx) = mpsc::unbounded_channel();
            let stats = stats.producer(&p.topic);
            tracker.spawn(writer::run(
                Arc::clone(&ctx),
                stats,
                Arc::clone(&p.topic),
                p.partition,
                rx,
            ));
            tx
        });
        if let Err(mpsc::error::SendError(p)) = tx.send(p) {
            // A writer only ends when its sender is dropped, which happens below.
            fail(p, ProduceError::ShutDown);
        }
    };
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some(p) => route(p),
                None => break,
            },
            () = stop.cancelled() => {
                // Refuse new calls, but route every call already accepted.
                rx.close();
                while let Some(p) = rx.recv().await {
                    route(p);
                }
                break;
            }
        }
    }
    // Dropping the senders lets each writer finish its queue and end.
}

fn fail(mut p: Pending, error: ProduceError) {
    if let Some(ack) = p.ack.take() {
        // The caller may have stopped waiting; nothing else to tell.
        ack.send(Err(error)).ok();
    }
}
