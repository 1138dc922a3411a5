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
use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::client::partition::OffsetAt;
use slog::{Logger, debug, info, warn};
use tokio::task::JoinHandle;

use super::partition::PartitionRun;
use super::stall::{Change, StallDetector, reason};
use crate::kafka::client::{self, KafkaClient, bounded};
use crate::kafka::partitions::{PartitionKey, Purpose};
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
                topic: topic.into(),
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
            let in_flight = run.in_flight();
            let detector = self
                .detectors
                .entry(p)
                .or_insert_with(|| StallDetector::new(self.stall_after));
            let mut change = None;
            self.stats.update_partition(p, |v| {
                v.position = position;
                v.in_flight = in_flight;
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

/// ListOffsets on the entry's topic, through the shared client's cached partition clients
/// (their own, [`Purpose::Offsets`]: a fetch's long poll would hold these requests up).
#[derive(Debug)]
struct LogEnds {
    client: Arc<KafkaClient>,
    topic: Arc<str>,
}

impl LogEnds {
    /// The partition's log-end offset (ListOffsets latest), bounded by the client timeout.
    async fn latest(&self, partition: i32) -> Result<i64, client::Error> {
        let key = PartitionKey::new(Arc::clone(&self.topic), partition, Purpose::Offsets);
        let pc = self.client.partition(&key).await?;
        let got = bounded(
            "log-end offset",
            self.client.timeout(),
            pc.get_offset(OffsetAt::Latest),
        )
        .await
        .and_then(|r| r.map_err(client::Error::from));
        if let Err(e) = &got {
            self.client.partition_failed(&key, &pc, e);
        }
        got
    }
}
