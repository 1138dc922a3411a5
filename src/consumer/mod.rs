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
pub mod callback;
pub mod dispatch;
pub mod dlq;
pub mod fetch;
pub mod gate;
pub mod hosts;
pub mod keys;
pub mod offsets;
pub mod partition;
pub mod progress;
pub mod rate;
pub mod seek;
pub mod stall;
pub mod tiers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use slog::{Logger, debug, error, info, warn};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Assignor, ConsumerSettings};
use crate::control::Control;
use crate::delivery::DeliveryPool;
use crate::delivery::breaker::Breakers;
use crate::delivery::forward::HeaderPolicy;
use crate::delivery::retry::{RetryPolicy, SuccessCodes};
use crate::group::{
    self, AssignorKind, CommitError, GroupConfig, GroupEvent, GroupHandle, OffsetMark, ScaleDown,
};
use crate::kafka::client::KafkaClient;
use crate::kafka::fallback::FallbackFetcher;
use crate::kafka::metadata::PartitionTable;
use crate::kafka::records::RecordWriter;
use crate::stats::{ConsumerStats, Stats};
use dlq::DeadLetterWriter;
use fetch::StartAt;
use gate::{Gate, GateState};
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
    pub hosts: Arc<HostSlots>,
    /// Circuit breakers per target host (pass-through without `circuitBreaker`).
    pub breakers: Breakers,
    /// Where exhausted calls go; `None` when disabled.
    pub dlq: Option<DeadLetterWriter>,
    /// One writer per retry tier, in `retryTiers` order.
    pub tiers: Vec<RecordWriter>,
    /// Writes callback calls to the entry's own topic ([`callback`]).
    pub callbacks: RecordWriter,
    /// Reads the batches rskafka cannot decode (shared by the entry's partitions).
    pub fallback: Arc<FallbackFetcher>,
    /// Which caller headers travel: the entry's `forwardHeaders` (or
    /// `delivery.headers.forward`) and `delivery.headers.drop`.
    pub headers: HeaderPolicy,
    /// The entry's counters (every lane counts its calls here).
    pub stats: Arc<ConsumerStats>,
    /// The control topic (pause, retransmit); `None`: off, the entry is never paused.
    pub control: Option<Arc<Control>>,
    /// `kafka.group.instance.id`: every lane joins its group as this static member; `None`:
    /// dynamic members.
    pub instance_id: Option<String>,
    /// Set before the entry's stop token fires when it stops for good (removed by a reload,
    /// or the process is scaled down): its static members leave their groups.
    pub scale_down: ScaleDown,
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
        let callbacks = RecordWriter::new(settings.topic.clone(), Arc::clone(&client));
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
            hosts: Arc::new(HostSlots::new(settings.host_concurrency)),
            breakers: Breakers::new(settings.circuit_breaker),
            stats: entry_stats,
            settings,
            client,
            table,
            pool,
            policy,
            dlq,
            tiers,
            callbacks,
            headers: headers.with_forward(settings_forward.as_ref()),
            control: None,
            instance_id: None,
            scale_down: ScaleDown::default(),
            log,
            group_log,
            tier_stats,
        })
    }

    /// The entry's lanes: its own topic first, then each retry tier; all behind one gate.
    fn lanes(self: &Arc<Self>, gate: &Gate) -> Vec<Lane> {
        let s = &self.settings;
        let main = Lane {
            entry: Arc::clone(self),
            topic: s.topic.clone(),
            group_id: s.group_id.clone(),
            tier: None,
            stats: Arc::clone(&self.stats),
            gate: gate.clone(),
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
                gate: gate.clone(),
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
    /// The entry's pause gate (a tier pauses with its entry).
    pub gate: Gate,
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
            instance_id: self.entry.instance_id.clone(),
            scale_down: self.entry.scale_down.clone(),
            topic: self.topic.clone(),
            session_timeout: s.session_timeout,
            heartbeat_interval: s.heartbeat_interval,
            rebalance_timeout: s.rebalance_timeout,
            request_timeout: client.timeout(),
            assignor: match s.assignor {
                Assignor::CooperativeSticky => AssignorKind::CooperativeSticky,
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
///
/// With a control topic, the entry's gate waits for its first catch-up and follows
/// `pause/<group>/<topic>` (see [`gate`]).
pub async fn run(ctx: Arc<EntryContext>, stop: CancellationToken) {
    let (gate, keeper) = match &ctx.control {
        Some(control) => {
            let (tx, rx) = tokio::sync::watch::channel(GateState::Waiting);
            let keeper = gate::keep(
                Arc::clone(control),
                ctx.settings.group_id.clone(),
                ctx.settings.topic.clone(),
                tx,
                Arc::clone(&ctx.stats),
                ctx.log.clone(),
                stop.clone(),
            );
            (Gate::new(rx), Some(keeper))
        }
        None => (Gate::open(), None),
    };
    let lanes = ctx.lanes(&gate);
    let lanes = futures::future::join_all(
        lanes
            .into_iter()
            .map(|lane| run_lane(Arc::new(lane), stop.clone())),
    );
    match keeper {
        Some(keeper) => {
            tokio::join!(lanes, keeper);
        }
        None => {
            lanes.await;
        }
    }
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
    // The commit metadata of each owned partition: which retransmit its position descends
    // from (see [`seek`]); carried by every commit.
    let mut marks: BTreeMap<i32, String> = BTreeMap::new();
    // Retransmits apply to the entry's own topic; a tier's records are already due calls.
    let mut control_changes = ctx
        .entry
        .control
        .as_ref()
        .filter(|_| ctx.tier.is_none())
        .map(|c| c.subscribe());
    let mut seek_pending = false;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(GroupEvent::Assigned { generation, partitions, members, .. }) => {
                    // The group member logged the generation joined with these partitions.
                    debug!(ctx.log, "partitions assigned"; "generation" => generation, "partitions" => ?partitions);
                    ctx.stats.assigned(generation, members, partitions.len());
                    seek_pending |= assign(&ctx, &handle, &mut owned, &mut marks, partitions).await;
                }
                Some(GroupEvent::Revoke { partitions, done }) => {
                    revoke(&ctx, &handle, &mut owned, &mut marks, &partitions).await;
                    // The driver may have stopped waiting; it rejoins either way.
                    done.send(()).ok();
                }
                Some(GroupEvent::Lost { partitions }) => {
                    warn!(ctx.log, "partitions lost without a clean revoke"; "partitions" => ?partitions);
                    for p in partitions {
                        marks.remove(&p);
                        if let Some(run) = owned.remove(&p) {
                            run.abort().await;
                            ctx.stats.remove_partition(p);
                        }
                    }
                }
                None => break,
            },
            () = next_change(&mut control_changes) => {
                seek_pending = apply_seek(&ctx, &handle, &mut owned, &mut marks).await;
            }
            _ = tick.tick() => {
                if seek_pending {
                    seek_pending = apply_seek(&ctx, &handle, &mut owned, &mut marks).await;
                }
                commit_progress(&ctx, &handle, &owned, &marks).await;
                progress.on_tick(&owned, !ctx.gate.is_open());
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

/// Starts the newly assigned partitions from their committed offsets, or from the latest
/// retransmit's target where it was not applied yet. Returns true when a retransmit could not
/// be committed and must be tried again.
async fn assign(
    ctx: &Arc<Lane>,
    handle: &GroupHandle,
    owned: &mut BTreeMap<i32, PartitionRun>,
    marks: &mut BTreeMap<i32, String>,
    partitions: Vec<i32>,
) -> bool {
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
        return false;
    }
    wait_for_control(ctx).await;
    // Where each partition starts: never guess when the committed offsets are
    // unknown (earliest would re-deliver everything, latest would skip calls).
    let mut attempt = 0;
    let committed = loop {
        match handle.committed_marked(fresh.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                attempt += 1;
                if Duration::from_millis(500) * attempt > ctx.entry.settings.session_timeout {
                    error!(ctx.log, "committed offsets unavailable, partitions left idle until the next rebalance";
                        "partitions" => ?fresh, "error" => %e);
                    return false;
                }
                warn!(ctx.log, "committed offsets unavailable, retrying"; "error" => %e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    // A retransmit this partition has not had yet is applied before it starts: the target is
    // committed with the seek's mark first, so a crash right after still counts it applied.
    let seek = current_seek(ctx);
    let mut moves = Vec::new();
    for &p in &fresh {
        let mark = committed.get(&p).cloned().flatten().map(|m| m.metadata);
        if let seek::Decision::Apply { offset, mark } =
            seek::decide(seek.as_ref(), p, mark.as_deref().unwrap_or(""))
        {
            moves.push(OffsetMark {
                partition: p,
                offset,
                metadata: mark,
            });
        }
    }
    let mut pending = false;
    if !moves.is_empty() {
        match handle.commit_marked(moves.clone()).await {
            Ok(()) => {
                info!(ctx.log, "retransmit applied to newly assigned partitions";
                    "seek" => seek.as_ref().map(|s| s.id.clone()), "offsets" => ?moves);
            }
            Err(e) => {
                warn!(ctx.log, "retransmit commit failed, retrying"; "error" => %e);
                moves.clear();
                pending = true;
            }
        }
    }
    for p in fresh {
        let moved = moves.iter().find(|m| m.partition == p);
        let committed = committed.get(&p).cloned().flatten();
        let (start, mark) = match (moved, committed) {
            (Some(m), _) => (StartAt::Committed(m.offset), m.metadata.clone()),
            (None, Some(c)) => (StartAt::Committed(c.offset), c.metadata),
            (None, None) => (StartAt::Reset(ctx.entry.settings.offset_reset), String::new()),
        };
        if let StartAt::Committed(offset) = start {
            ctx.stats.set_partition(p, |v| v.committed = Some(offset));
        }
        marks.insert(p, mark);
        owned.insert(p, PartitionRun::start(Arc::clone(ctx), p, start));
    }
    pending
}

/// Before the first assignment is started: the control topic read up to date (a retransmit
/// written before this process started must be seen), bounded by the session timeout. The
/// pause gate keeps fetching off until then anyway; this only makes the seek decision sound.
async fn wait_for_control(ctx: &Lane) {
    let Some(control) = ctx.entry.control.as_ref().filter(|_| ctx.tier.is_none()) else {
        return;
    };
    let mut progress = control.progress();
    let waited = tokio::time::timeout(
        ctx.entry.settings.session_timeout,
        progress.wait_for(|p| p.caught_up),
    )
    .await;
    if waited.is_err() {
        warn!(
            ctx.log,
            "control topic not read up to date; a retransmit is applied once it is"
        );
    }
}

/// The latest retransmit of the lane's group and topic, if any.
fn current_seek(ctx: &Lane) -> Option<seek::Seek> {
    let control = ctx.entry.control.as_ref()?;
    let value = control.get(&crate::control::keys::seek(&ctx.group_id, &ctx.topic))?;
    let parsed = seek::Seek::parse(&value);
    if parsed.is_none() {
        warn!(ctx.log, "retransmit record is malformed, ignored"; "value" => %value);
    }
    parsed
}

/// Resolves on the next change of the control topic; never when there is none.
async fn next_change(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match changes {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *changes = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Applies the latest retransmit to the owned partitions that have not had it: stops their
/// runs (drained like a revoke), commits the targets with the seek's mark, and starts them
/// there. Returns true when the commit failed (the runs restart where they were; the caller
/// tries again on the next tick).
async fn apply_seek(
    ctx: &Arc<Lane>,
    handle: &GroupHandle,
    owned: &mut BTreeMap<i32, PartitionRun>,
    marks: &mut BTreeMap<i32, String>,
) -> bool {
    let Some(seek) = current_seek(ctx) else {
        return false;
    };
    let moves: Vec<OffsetMark> = owned
        .keys()
        .filter_map(
            |&p| match seek::decide(Some(&seek), p, marks.get(&p).map_or("", String::as_str)) {
                seek::Decision::Apply { offset, mark } => Some(OffsetMark {
                    partition: p,
                    offset,
                    metadata: mark,
                }),
                seek::Decision::Keep => None,
            },
        )
        .collect();
    if moves.is_empty() {
        return false;
    }
    info!(ctx.log, "retransmit: moving partitions"; "seek" => &seek.id, "from_ms" => seek.from_ms,
        "offsets" => ?moves);
    let runs: Vec<PartitionRun> = moves.iter().filter_map(|m| owned.remove(&m.partition)).collect();
    let drain = ctx.entry.settings.drain_timeout;
    let stopped: BTreeMap<i32, Option<i64>> =
        futures::future::join_all(runs.into_iter().map(|run| async move {
            let p = run.partition;
            let (position, abandoned) = run.stop(drain).await;
            (p, position, abandoned)
        }))
        .await
        .into_iter()
        .map(|(p, position, abandoned)| {
            if abandoned > 0 {
                warn!(ctx.log, "calls abandoned at retransmit"; "partition" => p, "calls" => abandoned);
            }
            (p, position)
        })
        .collect();
    match handle.commit_marked(moves.clone()).await {
        Ok(()) => {
            for m in moves {
                ctx.stats.set_partition(m.partition, |v| {
                    v.committed = Some(m.offset);
                    v.position = Some(m.offset);
                });
                marks.insert(m.partition, m.metadata);
                owned.insert(
                    m.partition,
                    PartitionRun::start(Arc::clone(ctx), m.partition, StartAt::Committed(m.offset)),
                );
            }
            info!(ctx.log, "retransmit applied"; "seek" => &seek.id);
            false
        }
        Err(e) => {
            warn!(ctx.log, "retransmit commit failed, partitions go on where they were; retrying";
                "seek" => &seek.id, "error" => %e);
            let views = ctx.stats.partition_views();
            for (p, position) in stopped {
                let known = position.or_else(|| views.get(&p).and_then(|v| v.committed));
                let start = known.map_or(
                    StartAt::Reset(ctx.entry.settings.offset_reset),
                    StartAt::Committed,
                );
                owned.insert(p, PartitionRun::start(Arc::clone(ctx), p, start));
            }
            true
        }
    }
}

async fn revoke(
    ctx: &Lane,
    handle: &GroupHandle,
    owned: &mut BTreeMap<i32, PartitionRun>,
    marks: &mut BTreeMap<i32, String>,
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
    let offsets = with_marks(offsets, marks);
    for p in partitions {
        marks.remove(p);
    }
    if offsets.is_empty() {
        return;
    }
    match handle.commit_marked(offsets.clone()).await {
        Ok(()) => info!(ctx.log, "offsets committed at revoke"; "offsets" => ?offsets),
        Err(e) => warn!(ctx.log, "commit at revoke failed; those calls will be delivered again";
            "offsets" => ?offsets, "error" => %e),
    }
}

/// `offsets` with each partition's mark (its commit metadata).
fn with_marks(offsets: Vec<(i32, i64)>, marks: &BTreeMap<i32, String>) -> Vec<OffsetMark> {
    offsets
        .into_iter()
        .map(|(partition, offset)| OffsetMark {
            partition,
            offset,
            metadata: marks.get(&partition).cloned().unwrap_or_default(),
        })
        .collect()
}

async fn commit_progress(
    ctx: &Lane,
    handle: &GroupHandle,
    owned: &BTreeMap<i32, PartitionRun>,
    marks: &BTreeMap<i32, String>,
) {
    let offsets: Vec<(i32, i64)> = owned
        .values()
        .filter_map(|run| run.take_commit().map(|o| (run.partition, o)))
        .collect();
    if offsets.is_empty() {
        return;
    }
    match handle.commit_marked(with_marks(offsets.clone(), marks)).await {
        Ok(()) => {
            for (p, o) in offsets {
                ctx.stats.set_partition(p, |v| v.committed = Some(o));
            }
        }
        Err(e) => {
            if matches!(e, CommitError::RebalanceInProgress) {
                // Expected while a cooperative member rejoins: it keeps delivering, and the
                // first commit of the new generation covers these offsets.
                debug!(ctx.log, "offset commit waits for the rebalance to end"; "error" => %e);
            } else {
                warn!(ctx.log, "offset commit failed, retrying next interval"; "error" => %e);
            }
            for (p, _) in offsets {
                if let Some(run) = owned.get(&p) {
                    run.commit_failed();
                }
            }
        }
    }
}
