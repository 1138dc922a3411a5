//! Delivery workers: one Kafka consumer group per consumer entry, whose
//! members are bigpipe processes, plus one group per retry tier of the entry.
//!
//! ```text
//!  group::start ──events──► run_lane(): Assigned → PartitionRun per partition (from the committed offset)
//!   (our own member)                    Revoke   → stop runs (drain, abandon after drainTimeout), commit, ack
//!        ▲                              Lost     → abort runs, commit nothing
//!        └──── commit(offsets) ◄─────── every commitInterval: the lowest unfinished offset per partition
//!                                       then progress: log-end offsets, stalled partitions (/stats, /readyz)
//! ```
//!
//! An entry is one [`EntryContext`] (settings, slots, rate, breakers, writers)
//! shared by its [`Lane`]s: its own topic, and each retry tier topic
//! (`<topic>.retry.<groupId>.<tier>`, group `<groupId>.retry.<tier>`). Offsets are
//! committed only for finished calls (delivered, parked in a tier, dead-lettered
//! or reported), so a crash re-delivers instead of losing (the Go version
//! committed at read time). One call's life is [`call`]; the fetch loop is
//! [`fetch`].

pub mod call;
pub mod dlq;
pub mod fetch;
pub mod hosts;
pub mod offsets;
pub mod partition;
pub mod progress;
pub mod rate;
pub mod stall;
pub mod tiers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use slog::{Logger, error, info, warn};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Assignor, ConsumerSettings};
use crate::delivery::DeliveryPool;
use crate::delivery::breaker::Breakers;
use crate::delivery::forward::HeaderPolicy;
use crate::delivery::retry::{RetryPolicy, SuccessCodes};
use crate::group::{self, AssignorKind, GroupConfig, GroupEvent, GroupHandle};
use crate::kafka::client::KafkaClient;
use crate::kafka::fallback::FallbackFetcher;
use crate::kafka::metadata::PartitionTable;
use crate::kafka::records::RecordWriter;
use crate::stats::{ConsumerStats, Stats};
use dlq::DeadLetterWriter;
use fetch::StartAt;
use hosts::HostSlots;
use partition::PartitionRun;
use progress::Progress;
use rate::GroupRate;

/// Everything the lanes and partitions of one consumer entry share.
#[derive(Debug)]
pub struct EntryContext {
    /// The entry's settings.
    pub settings: ConsumerSettings,
    /// The shared rskafka client (fetching uses its own partition connections).
    pub client: Arc<KafkaClient>,
    /// Partition counts (for the rate share, dead-letter and tier partitions).
    pub table: Arc<PartitionTable>,
    /// The awc delivery threads.
    pub pool: Arc<DeliveryPool>,
    /// What counts as success, and when to retry.
    pub policy: RetryPolicy,
    /// This member's share of the group rate.
    pub rate: GroupRate,
    /// Calls in flight for this entry in this process, all lanes together.
    pub concurrency: Arc<Semaphore>,
    /// Calls in flight per target host (`hostConcurrency`).
    pub hosts: HostSlots,
    /// Circuit breakers per target host (pass-through without `circuitBreaker`).
    pub breakers: Breakers,
    /// Where exhausted calls go; `None` when disabled.
    pub dlq: Option<DeadLetterWriter>,
    /// One writer per retry tier, in `retryTiers` order.
    pub tiers: Vec<RecordWriter>,
    /// Reads the batches rskafka cannot decode (shared by the entry's partitions).
    pub fallback: Arc<FallbackFetcher>,
    /// Which caller headers travel: the entry's `forwardHeaders` (or
    /// `delivery.headers.forward`) and `delivery.headers.drop`.
    pub headers: HeaderPolicy,
    /// The entry's counters (every lane counts its calls here).
    pub stats: Arc<ConsumerStats>,
    /// Logger with the entry's group and topic.
    pub log: Logger,
    /// The parent logger, for the group members (which add group and topic themselves).
    group_log: Logger,
    /// The tiers' views (partitions, lag), one per tier.
    tier_stats: Vec<Arc<ConsumerStats>>,
}

impl Drop for EntryContext {
    // The gauge lives in the entry's stats, which outlive a restarted entry (reload);
    // its breakers do not.
    fn drop(&mut self) {
        let open = i64::try_from(self.breakers.open_hosts()).unwrap_or(i64::MAX);
        self.stats
            .circuits_open
            .fetch_sub(open, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Errors building an entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// `successCodes` did not parse (config validation should have caught it).
    #[error("kafka.consumer.list successCodes: {0}")]
    SuccessCodes(String),
}

impl EntryContext {
    /// Builds the context of one entry; its counters (and its tiers' views) live in `stats`.
    /// `headers` is the global header policy; the entry's `forwardHeaders` replaces its list.
    ///
    /// # Errors
    /// When `successCodes` cannot be parsed.
    pub fn new(
        settings: ConsumerSettings,
        client: Arc<KafkaClient>,
        table: Arc<PartitionTable>,
        pool: Arc<DeliveryPool>,
        headers: &HeaderPolicy,
        stats: &Stats,
        log: &Logger,
    ) -> Result<Self, EntryError> {
        let group_log = log.clone();
        let log = log.new(slog::o!("group" => settings.group_id.clone(), "topic" => settings.topic.clone()));
        let success = SuccessCodes::parse(&settings.success_codes).map_err(EntryError::SuccessCodes)?;
        let policy = RetryPolicy {
            max_retries: settings.retries,
            initial_backoff: settings.retry_backoff,
            max_backoff: settings.retry_backoff_max,
            retry_after_max: settings.retry_after_max,
            success,
            retry_for: settings.retry_for,
        };
        let dlq = settings.dead_letter_topic.as_ref().map(|topic| {
            DeadLetterWriter::new(
                topic.clone(),
                settings.group_id.clone(),
                settings.topic.clone(),
                settings.dead_letter_timeout,
                Arc::clone(&client),
                Arc::clone(&table),
                log.new(slog::o!("component" => "dlq")),
            )
        });
        let tiers = settings
            .retry_tiers
            .iter()
            .map(|&d| RecordWriter::new(settings.tier_topic(d), Arc::clone(&client)))
            .collect();
        let settings_forward = settings.forward_headers.clone();
        let entry_stats = stats.consumer(&settings.group_id, &settings.topic);
        let tier_stats = settings
            .retry_tiers
            .iter()
            .map(|&d| entry_stats.tier(&settings.tier_group(d), &settings.tier_topic(d)))
            .collect();
        Ok(Self {
            fallback: Arc::new(FallbackFetcher::for_client(&client)),
            rate: GroupRate::new(settings.rate_limit),
            concurrency: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            hosts: HostSlots::new(settings.host_concurrency),
            breakers: Breakers::new(settings.circuit_breaker),
            stats: entry_stats,
            settings,
            client,
            table,
            pool,
            policy,
            dlq,
            tiers,
            headers: headers.with_forward(settings_forward.as_ref()),
            log,
            group_log,
            tier_stats,
        })
    }

    /// The entry's lanes: its own topic first, then each retry tier.
    fn lanes(self: &Arc<Self>) -> Vec<Lane> {
        let s = &self.settings;
        let main = Lane {
            entry: Arc::clone(self),
            topic: s.topic.clone(),
            group_id: s.group_id.clone(),
            tier: None,
            stats: Arc::clone(&self.stats),
            log: self.log.clone(),
        };
        let tiers = s.retry_tiers.iter().enumerate().map(|(i, &d)| {
            let (topic, group_id) = (s.tier_topic(d), s.tier_group(d));
            Lane {
                entry: Arc::clone(self),
                log: self.log.new(slog::o!("tier" => topic.clone())),
                topic,
                group_id,
                tier: Some(i),
                stats: self
                    .tier_stats
                    .get(i)
                    .map_or_else(|| Arc::clone(&self.stats), Arc::clone),
            }
        });
        std::iter::once(main).chain(tiers).collect()
    }
}

/// One topic an entry consumes with its own consumer group: the entry's topic, or
/// one of its retry tiers.
#[derive(Debug)]
pub struct Lane {
    /// The entry the lane belongs to.
    pub entry: Arc<EntryContext>,
    /// The topic consumed.
    pub topic: String,
    /// The consumer group.
    pub group_id: String,
    /// `Some(index)` for a retry tier (of `retryTiers`).
    pub tier: Option<usize>,
    /// Where the lane's partitions (committed, lag, in flight) are shown.
    pub stats: Arc<ConsumerStats>,
    /// Logger with group, topic (and tier).
    pub log: Logger,
}

impl Lane {
    fn group_config(&self) -> GroupConfig {
        let s = &self.entry.settings;
        let client = &self.entry.client;
        GroupConfig {
            connect: client.connect().clone(),
            group_id: self.group_id.clone(),
            topic: self.topic.clone(),
            session_timeout: s.session_timeout,
            heartbeat_interval: s.heartbeat_interval,
            rebalance_timeout: s.rebalance_timeout,
            request_timeout: client.timeout(),
            assignor: match s.assignor {
                Assignor::Sticky => AssignorKind::Sticky,
                Assignor::Range => AssignorKind::Range,
                Assignor::RoundRobin => AssignorKind::RoundRobin,
            },
            // Our own revoke waits drainTimeout for deliveries, plus time to commit.
            revoke_timeout: s.drain_timeout + client.timeout(),
        }
    }
}

/// Runs one consumer entry until `stop` is cancelled: its own group and one group per
/// retry tier, each joining, delivering assigned partitions, committing, and leaving
/// its group at the end.
pub async fn run(ctx: Arc<EntryContext>, stop: CancellationToken) {
    let lanes = ctx.lanes();
    futures::future::join_all(
        lanes
            .into_iter()
            .map(|lane| run_lane(Arc::new(lane), stop.clone())),
    )
    .await;
    info!(ctx.log, "consumer entry stopped");
}

/// Runs one lane until `stop` is cancelled.
async fn run_lane(ctx: Arc<Lane>, stop: CancellationToken) {
    let (handle, mut events, driver) = group::start(ctx.group_config(), ctx.entry.group_log.clone(), stop);
    let mut owned: BTreeMap<i32, PartitionRun> = BTreeMap::new();
    let mut tick = tokio::time::interval(ctx.entry.settings.commit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A tier partition holds each record until it is due, up to the tier's delay: that
    // wait is the design, not a stall.
    let s = &ctx.entry.settings;
    let holds = ctx.tier.and_then(|i| s.retry_tiers.get(i)).copied();
    let mut progress = Progress::new(
        Arc::clone(&ctx.entry.client),
        ctx.topic.clone(),
        s.stall_after + holds.unwrap_or_default(),
        Arc::clone(&ctx.stats),
        ctx.log.clone(),
    );
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(GroupEvent::Assigned { generation, partitions, members, .. }) => {
                    info!(ctx.log, "partitions assigned"; "generation" => generation, "partitions" => ?partitions);
                    ctx.stats.assigned(generation, members, partitions.len());
                    assign(&ctx, &handle, &mut owned, partitions).await;
                }
                Some(GroupEvent::Revoke { partitions, done }) => {
                    revoke(&ctx, &handle, &mut owned, &partitions).await;
                    // The driver may have stopped waiting; it rejoins either way.
                    done.send(()).ok();
                }
                Some(GroupEvent::Lost { partitions }) => {
                    warn!(ctx.log, "partitions lost without a clean revoke"; "partitions" => ?partitions);
                    for p in partitions {
                        if let Some(run) = owned.remove(&p) {
                            run.abort().await;
                            ctx.stats.remove_partition(p);
                        }
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                commit_progress(&ctx, &handle, &owned).await;
                progress.on_tick(&owned);
            }
        }
    }
    // The driver only ends after revoking everything; anything left was lost.
    for (_, run) in std::mem::take(&mut owned) {
        run.abort().await;
    }
    if let Err(e) = driver.await {
        error!(ctx.log, "group driver failed"; "error" => %e);
    }
}

async fn assign(
    ctx: &Arc<Lane>,
    handle: &GroupHandle,
    owned: &mut BTreeMap<i32, PartitionRun>,
    partitions: Vec<i32>,
) {
    // The rate share follows the entry's own topic; tiers share the same bucket.
    if ctx.tier.is_none() {
        let total = ctx
            .entry
            .table
            .count(&ctx.topic)
            .map_or(partitions.len(), |n| n.unsigned_abs() as usize);
        ctx.entry
            .rate
            .set_share(partitions.len(), total.max(partitions.len()));
    }
    let fresh: Vec<i32> = partitions
        .iter()
        .copied()
        .filter(|p| !owned.contains_key(p))
        .collect();
    if fresh.is_empty() {
        return;
    }
    // Where each partition starts: never guess when the committed offsets are
    // unknown (earliest would re-deliver everything, latest would skip calls).
    let mut attempt = 0;
    let committed = loop {
        match handle.committed(fresh.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                attempt += 1;
                if Duration::from_millis(500) * attempt > ctx.entry.settings.session_timeout {
                    error!(ctx.log, "committed offsets unavailable, partitions left idle until the next rebalance";
                        "partitions" => ?fresh, "error" => %e);
                    return;
                }
                warn!(ctx.log, "committed offsets unavailable, retrying"; "error" => %e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    for p in fresh {
        let start = match committed.get(&p).copied().flatten() {
            Some(offset) => StartAt::Committed(offset),
            None => StartAt::Reset(ctx.entry.settings.offset_reset),
        };
        if let StartAt::Committed(offset) = start {
            ctx.stats.set_partition(p, |v| v.committed = Some(offset));
        }
        owned.insert(p, PartitionRun::start(Arc::clone(ctx), p, start));
    }
}

async fn revoke(
    ctx: &Lane,
    handle: &GroupHandle,
    owned: &mut BTreeMap<i32, PartitionRun>,
    partitions: &[i32],
) {
    let runs: Vec<PartitionRun> = partitions.iter().filter_map(|p| owned.remove(p)).collect();
    if runs.is_empty() {
        return;
    }
    let drain = ctx.entry.settings.drain_timeout;
    let stopped = futures::future::join_all(runs.into_iter().map(|run| async move {
        let p = run.partition;
        (p, run.stop(drain).await)
    }))
    .await;
    let mut offsets = vec![];
    for (p, (position, abandoned)) in stopped {
        if abandoned > 0 {
            warn!(ctx.log, "calls abandoned at revoke, the next owner delivers them again";
                "partition" => p, "calls" => abandoned);
        }
        if let Some(position) = position {
            offsets.push((p, position));
        }
        ctx.stats.remove_partition(p);
    }
    if offsets.is_empty() {
        return;
    }
    match handle.commit(offsets.clone()).await {
        Ok(()) => info!(ctx.log, "offsets committed at revoke"; "offsets" => ?offsets),
        Err(e) => warn!(ctx.log, "commit at revoke failed; those calls will be delivered again";
            "offsets" => ?offsets, "error" => %e),
    }
}

async fn commit_progress(ctx: &Lane, handle: &GroupHandle, owned: &BTreeMap<i32, PartitionRun>) {
    let offsets: Vec<(i32, i64)> = owned
        .values()
        .filter_map(|run| run.take_commit().map(|o| (run.partition, o)))
        .collect();
    if offsets.is_empty() {
        return;
    }
    match handle.commit(offsets.clone()).await {
        Ok(()) => {
            for (p, o) in offsets {
                ctx.stats.set_partition(p, |v| v.committed = Some(o));
            }
        }
        Err(e) => {
            warn!(ctx.log, "offset commit failed, retrying next interval"; "error" => %e);
            for (p, _) in offsets {
                if let Some(run) = owned.get(&p) {
                    run.commit_failed();
                }
            }
        }
    }
}
