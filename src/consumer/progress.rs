//! Per consumer entry: the owned partitions' log-end offsets and stall state,
//! for `/stats` and `/readyz`.
//!
//! ```text
//!  commit tick ──► Progress::on_tick ──► position (PartitionRun::committable) ─┐
//!                     │ every LOG_END_REFRESH                                  ├─► StallDetector ─► PartitionView.stall
//!                     └─► background ListOffsets(latest) ─► log_end_offset ────┘       │ warn once / info once
//! ```
//!
//! The log end is asked of Kafka on its own (ListOffsets), not taken from the
//! last fetch: a partition whose fetch fails forever has no fresh fetch, and
//! would otherwise show no lag at all.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use slog::{Logger, debug, info, warn};
use tokio::task::JoinHandle;

use super::partition::PartitionRun;
use super::stall::{Change, StallDetector, reason};
use crate::kafka::client::{self, KafkaClient, bounded};
use crate::stats::{ConsumerStats, Stall};

/// How often the owned partitions' log-end offsets are asked for. Stalls are counted in
/// tens of seconds (`stallAfter`), and one ListOffsets per partition every 2 s is
/// negligible for the broker; `/stats` lag is at most this old.
pub const LOG_END_REFRESH: Duration = Duration::from_secs(2);

/// Log ends and stall detectors of one entry's owned partitions. Dropping it stops the
/// refresh in progress.
#[derive(Debug)]
pub struct Progress {
    stall_after: Duration,
    log_ends: Arc<LogEnds>,
    detectors: BTreeMap<i32, StallDetector>,
    refresh: Option<JoinHandle<()>>,
    last_refresh: Option<Instant>,
    stats: Arc<ConsumerStats>,
    log: Logger,
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = &self.refresh {
            task.abort();
        }
    }
}

impl Progress {
    /// Tracks partitions of `topic`; a partition behind without moving for
    /// `stall_after` is reported as stalled.
    pub fn new(
        client: Arc<KafkaClient>,
        topic: String,
        stall_after: Duration,
        stats: Arc<ConsumerStats>,
        log: Logger,
    ) -> Self {
        Self {
            stall_after,
            log_ends: Arc::new(LogEnds {
                client,
                topic,
                partitions: Mutex::new(BTreeMap::new()),
            }),
            detectors: BTreeMap::new(),
            refresh: None,
            last_refresh: None,
            stats,
            log,
        }
    }

    /// Called on every commit tick (after the commit): records each owned partition's
    /// position, starts a log-end refresh when one is due, and updates the stall state.
    /// Never waits on Kafka: the refresh runs in the background and is read next tick.
    pub fn on_tick(&mut self, owned: &BTreeMap<i32, PartitionRun>) {
        let now = Instant::now();
        self.detectors.retain(|p, _| owned.contains_key(p));
        self.start_refresh(now, owned.keys().copied().collect());
        for (&p, run) in owned {
            let position = run.committable();
            let detector = self
                .detectors
                .entry(p)
                .or_insert_with(|| StallDetector::new(self.stall_after));
            let mut change = None;
            self.stats.update_partition(p, |v| {
                v.position = position;
                let position = position.or(v.committed);
                change = detector.observe(now, position, v.log_end_offset);
                v.stall = match (detector.stalled_since(), position, v.log_end_offset) {
                    (Some(since), Some(pos), Some(end)) => Some(Stall {
                        since,
                        reason: reason(
                            v.last_error.as_ref().map(|e| (e.message.as_str(), e.at)),
                            since,
                            pos,
                            end,
                        ),
                    }),
                    _ => None,
                };
            });
            self.log_change(p, change);
        }
    }

    fn log_change(&self, partition: i32, change: Option<Change>) {
        match change {
            Some(Change::Stalled { .. }) => {
                let view = self.stats.partition_views().remove(&partition);
                let reason = view
                    .as_ref()
                    .and_then(|v| v.stall.as_ref())
                    .map(|s| s.reason.clone());
                warn!(self.log, "partition stalled: behind and not moving";
                    "partition" => partition, "stall_after_ms" => self.stall_after.as_millis(),
                    "position" => ?view.as_ref().and_then(|v| v.position),
                    "log_end_offset" => ?view.as_ref().and_then(|v| v.log_end_offset),
                    "reason" => reason);
            }
            Some(Change::Recovered { stalled_for }) => {
                info!(self.log, "partition moving again"; "partition" => partition,
                    "stalled_for_ms" => stalled_for.as_millis());
            }
            None => {}
        }
    }

    fn start_refresh(&mut self, now: Instant, partitions: Vec<i32>) {
        let due = self
            .last_refresh
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_END_REFRESH);
        let running = self.refresh.as_ref().is_some_and(|t| !t.is_finished());
        if !due || running || partitions.is_empty() {
            return;
        }
        self.last_refresh = Some(now);
        let log_ends = Arc::clone(&self.log_ends);
        let stats = Arc::clone(&self.stats);
        let log = self.log.clone();
        self.refresh = Some(tokio::spawn(async move {
            let ends = futures::future::join_all(partitions.into_iter().map(|p| {
                let log_ends = &log_ends;
                async move { (p, log_ends.latest(p).await) }
            }))
            .await;
            for (p, end) in ends {
                match end {
                    // Only partitions still owned: a refresh may finish after a revoke.
                    Ok(end) => stats.update_partition(p, |v| v.log_end_offset = Some(end)),
                    // Kept at its last value: a broker that stops answering does not erase lag.
                    Err(e) => debug!(log, "log-end offset unavailable"; "partition" => p, "error" => %e),
                }
            }
        }));
    }
}

/// Cached partition clients for ListOffsets on the entry's topic.
#[derive(Debug)]
struct LogEnds {
    client: Arc<KafkaClient>,
    topic: String,
    partitions: Mutex<BTreeMap<i32, Arc<PartitionClient>>>,
}

impl LogEnds {
    /// The partition's log-end offset (ListOffsets latest), bounded by the client timeout.
    async fn latest(&self, partition: i32) -> Result<i64, client::Error> {
        let pc = self.partition(partition).await?;
        let got = bounded(
            "log-end offset",
            self.client.timeout(),
            pc.get_offset(OffsetAt::Latest),
        )
        .await;
        match got {
            Ok(Ok(end)) => Ok(end),
            Ok(Err(e)) => {
                self.forget(partition);
                Err(e.into())
            }
            Err(e) => {
                self.forget(partition);
                Err(e)
            }
        }
    }

    fn forget(&self, partition: i32) {
        self.cache().remove(&partition);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Arc<PartitionClient>>> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn partition(&self, partition: i32) -> Result<Arc<PartitionClient>, client::Error> {
        if let Some(pc) = self.cache().get(&partition) {
            return Ok(Arc::clone(pc));
        }
        let client = self.client.get().await?;
        let pc = bounded(
            "log-end partition lookup",
            self.client.timeout(),
            client.partition_client(self.topic.clone(), partition, UnknownTopicHandling::Retry),
        )
        .await??;
        let pc = Arc::new(pc);
        self.cache().insert(partition, Arc::clone(&pc));
        Ok(pc)
    }
}
