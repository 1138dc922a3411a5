//! One assigned partition: a fetch loop with a bounded in-flight window, and
//! one task per call that delivers it (attempts, backoff, dead letter).
//!
//! ```text
//!  fetch (rskafka) ──► window permits (records + bytes) ──► delivery task per call
//!        ▲  stops when the window is full                        │ finished(offset)
//!        └──────────── permits return when a call finishes ◄──────┘──► OffsetTracker
//! ```
//!
//! A slow target therefore stops fetching instead of growing memory. Stopping
//! (revoke) stops the fetch loop, waits up to the drain timeout for calls in
//! flight, then abandons the rest: abandoned calls stay uncommitted and the
//! next owner delivers them again (at least once).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;
use slog::{debug, error, info, warn};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::EntryContext;
use super::dlq::DeadLetter;
use super::offsets::OffsetTracker;
use crate::backoff::{Backoff, BackoffConfig};
use crate::config::OffsetReset;
use crate::delivery::breaker::{State, Transition, host_key};
use crate::delivery::headers::outbound_headers;
use crate::delivery::retry::{GiveUpReason, Verdict};
use crate::delivery::{AttemptOutcome, OutboundRequest};
use crate::kafka::client::bounded;
use crate::message::{CALL_ID_HEADER, CallMessage};
use crate::stats::inc;

/// Where a partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The group's committed offset.
    Committed(i64),
    /// No committed offset: apply the entry's reset policy.
    Reset(OffsetReset),
}

/// State shared by a partition's fetch loop, its delivery tasks and its owner.
#[derive(Debug)]
struct Shared {
    /// `None` until the start position is known.
    tracker: std::sync::Mutex<Option<OffsetTracker>>,
    /// Stops fetching (revoke, shutdown).
    stop_fetch: CancellationToken,
    /// Makes delivery tasks give up at once, leaving their offsets uncommitted.
    abandon: CancellationToken,
    /// The fetch loop and every delivery task.
    tasks: TaskTracker,
}

impl Shared {
    fn with_tracker<T>(&self, f: impl FnOnce(&mut OffsetTracker) -> T) -> Option<T> {
        let mut guard = self
            .tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_mut().map(f)
    }
}

/// A running partition.
#[derive(Debug)]
pub struct PartitionRun {
    /// The partition number.
    pub partition: i32,
    shared: Arc<Shared>,
}

impl PartitionRun {
    /// Starts fetching and delivering `partition` from `start`.
    pub fn start(ctx: Arc<EntryContext>, partition: i32, start: StartAt) -> Self {
        let shared = Arc::new(Shared {
            tracker: std::sync::Mutex::new(None),
            stop_fetch: CancellationToken::new(),
            abandon: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        shared
            .tasks
            .spawn(fetch_loop(ctx, partition, start, Arc::clone(&shared)));
        Self { partition, shared }
    }

    /// The position to commit, if it moved since the last commit.
    pub fn take_commit(&self) -> Option<i64> {
        self.shared.with_tracker(OffsetTracker::take_commit).flatten()
    }

    /// The position to commit now, moved or not.
    pub fn committable(&self) -> Option<i64> {
        self.shared.with_tracker(|t| t.committable())
    }

    /// A commit of this partition failed; send it again next time.
    pub fn commit_failed(&self) {
        self.shared.with_tracker(OffsetTracker::commit_failed);
    }

    /// Stops fetching, waits up to `drain` for calls in flight, abandons the
    /// rest. Returns the position to commit (None if the start position was
    /// never known) and how many calls were abandoned.
    pub async fn stop(self, drain: Duration) -> (Option<i64>, usize) {
        self.shared.stop_fetch.cancel();
        self.shared.tasks.close();
        if tokio::time::timeout(drain, self.shared.tasks.wait())
            .await
            .is_err()
        {
            self.shared.abandon.cancel();
            self.shared.tasks.wait().await;
        }
        // Every task has ended: what started and did not finish was abandoned, whether
        // at the drain deadline or earlier (calls held by a circuit breaker leave at once).
        let abandoned = self.shared.with_tracker(|t| t.in_flight()).unwrap_or(0);
        (self.committable(), abandoned)
    }

    /// Membership was lost: stop everything at once; nothing is committed.
    pub async fn abort(self) {
        self.shared.stop_fetch.cancel();
        self.shared.abandon.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

/// The in-flight window of one partition: permits for records and for bytes.
struct Window {
    records: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
}

/// The permits one call holds until it finishes.
struct Held {
    _record: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

async fn fetch_loop(ctx: Arc<EntryContext>, partition: i32, start: StartAt, shared: Arc<Shared>) {
    let s = &ctx.settings;
    let log = ctx.log.new(slog::o!("partition" => partition));
    let window = Window {
        records: Arc::new(Semaphore::new(s.prefetch_records.max(1))),
        bytes: Arc::new(Semaphore::new(s.prefetch_bytes.max(1))),
        max_bytes: s.prefetch_bytes.max(1),
    };
    let stop = shared.stop_fetch.clone();
    let mut pc: Option<Arc<PartitionClient>> = None;
    let mut position: Option<i64> = match start {
        StartAt::Committed(offset) => Some(offset),
        StartAt::Reset(_) => None,
    };
    let reset = match start {
        StartAt::Committed(_) => ctx.settings.offset_reset,
        StartAt::Reset(policy) => policy,
    };
    let mut backoff = Backoff::new(BackoffConfig {
        max: Duration::from_secs(5),
        ..BackoffConfig::default()
    });
    let fetch_bound = ctx.settings.fetch_max_wait + ctx.client.timeout();
    let max_wait_ms = i32::try_from(ctx.settings.fetch_max_wait.as_millis()).unwrap_or(i32::MAX);

    while !stop.is_cancelled() {
        let client = match &pc {
            Some(c) => Arc::clone(c),
            None => match partition_client(&ctx, partition).await {
                Ok(c) => {
                    pc = Some(Arc::clone(&c));
                    c
                }
                Err(e) => {
                    warn!(log, "partition lookup failed"; "error" => e);
                    pause(&stop, backoff.next_delay()).await;
                    continue;
                }
            },
        };
        let pos = match position {
            Some(p) => p,
            None => match reset_position(&ctx, &client, reset).await {
                Ok(p) => {
                    info!(log, "no committed offset, starting from the reset policy";
                        "policy" => ?reset, "offset" => p);
                    position = Some(p);
                    p
                }
                Err(e) => {
                    warn!(log, "offset lookup failed"; "error" => e);
                    pc = None;
                    pause(&stop, backoff.next_delay()).await;
                    continue;
                }
            },
        };
        {
            let mut tracker = shared
                .tracker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match tracker.as_mut() {
                None => *tracker = Some(OffsetTracker::new(pos)),
                Some(t) => t.skipped_to(pos),
            }
        }
        // Wait for room in the window before fetching more.
        let first = tokio::select! {
            p = Arc::clone(&window.records).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = stop.cancelled() => break,
        };
        let room = window.bytes.available_permits().clamp(1, 8 << 20);
        let room = i32::try_from(room).unwrap_or(i32::MAX);
        let fetched = tokio::select! {
            r = bounded("fetch", fetch_bound, client.fetch_records(pos, 1..room, max_wait_ms)) => r,
            () = stop.cancelled() => break,
        };
        let (records, high_watermark) = match fetched {
            Ok(Ok(v)) => v,
            Ok(Err(KafkaError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            })) => {
                warn!(log, "offset out of range, applying the reset policy"; "offset" => pos, "policy" => ?reset);
                position = None;
                let mut tracker = shared
                    .tracker
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if tracker.as_ref().is_some_and(|t| t.in_flight() == 0) {
                    *tracker = None;
                }
                continue;
            }
            Ok(Err(e)) => {
                warn!(log, "fetch failed"; "offset" => pos, "error" => %e);
                pc = None;
                pause(&stop, backoff.next_delay()).await;
                continue;
            }
            Err(e) => {
                warn!(log, "fetch failed"; "offset" => pos, "error" => %e);
                pc = None;
                pause(&stop, backoff.next_delay()).await;
                continue;
            }
        };
        backoff = Backoff::new(BackoffConfig {
            max: Duration::from_secs(5),
            ..BackoffConfig::default()
        });
        ctx.stats
            .set_partition(partition, |v| v.high_watermark = high_watermark);
        let mut first = Some(first);
        for record in records {
            // A compressed batch can start before the requested offset.
            if record.offset < pos {
                continue;
            }
            let size = record.record.approximate_size().clamp(1, window.max_bytes);
            let record_permit = match first.take() {
                Some(p) => p,
                None => tokio::select! {
                    p = Arc::clone(&window.records).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    () = stop.cancelled() => break,
                },
            };
            let byte_permit = tokio::select! {
                p = Arc::clone(&window.bytes).acquire_many_owned(u32::try_from(size).unwrap_or(u32::MAX)) => {
                    match p { Ok(p) => p, Err(_) => break }
                }
                () = stop.cancelled() => break,
            };
            // The first attempt's concurrency slot and rate token are taken here,
            // before the call is started: calls waiting for the rate stay records
            // in this loop, not tasks, so a revoke has little to drain.
            let slot = tokio::select! {
                p = Arc::clone(&ctx.concurrency).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = stop.cancelled() => break,
            };
            tokio::select! {
                () = ctx.rate.acquire() => {}
                () = stop.cancelled() => break,
            }
            let offset = record.offset;
            shared.with_tracker(|t| t.started(offset));
            position = Some(offset + 1);
            let held = Held {
                _record: record_permit,
                _bytes: byte_permit,
            };
            let task_ctx = Arc::clone(&ctx);
            let task_shared = Arc::clone(&shared);
            shared.tasks.spawn(async move {
                let abandon = task_shared.abandon.clone();
                let stopping = task_shared.stop_fetch.clone();
                tokio::select! {
                    finished = deliver(&task_ctx, partition, record, slot, &stopping) => {
                        if finished {
                            task_shared.with_tracker(|t| t.finished(offset));
                        }
                    }
                    () = abandon.cancelled() => {}
                }
                drop(held);
            });
        }
    }
    debug!(log, "fetch loop stopped");
}

async fn pause(stop: &CancellationToken, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = stop.cancelled() => {}
    }
}

async fn partition_client(ctx: &EntryContext, partition: i32) -> Result<Arc<PartitionClient>, String> {
    let client = ctx.client.get().await.map_err(|e| e.to_string())?;
    let pc = bounded(
        "partition lookup",
        ctx.client.timeout(),
        client.partition_client(ctx.settings.topic.clone(), partition, UnknownTopicHandling::Retry),
    )
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(pc))
}

async fn reset_position(ctx: &EntryContext, pc: &PartitionClient, reset: OffsetReset) -> Result<i64, String> {
    let at = match reset {
        OffsetReset::Earliest => OffsetAt::Earliest,
        OffsetReset::Latest => OffsetAt::Latest,
    };
    bounded("offset lookup", ctx.client.timeout(), pc.get_offset(at))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Delivers one record: attempts with the retry policy, then a dead letter if
/// it never succeeded. Returns true when the call is finished; false when it
/// was held by a circuit breaker as the partition stopped (left uncommitted).
async fn deliver(
    ctx: &EntryContext,
    partition: i32,
    record: RecordAndOffset,
    slot: OwnedSemaphorePermit,
    stopping: &CancellationToken,
) -> bool {
    let stats = &ctx.stats;
    inc(&stats.handle_message);
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let _in_flight = scopeguard(|| {
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    });
    let offset = record.offset;
    let record = record.record;
    let value = record.value.clone().unwrap_or_default();
    let call_id = record
        .headers
        .get(CALL_ID_HEADER)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        // Records written by the Go version carry no id; the position identifies them.
        .unwrap_or_else(|| format!("{}-{partition}-{offset}", ctx.settings.topic));
    let letter = |reason: String, last_status: Option<u16>, attempts: u32, first: i64| DeadLetter {
        key: record.key.clone(),
        value: value.clone(),
        headers: record.headers.clone(),
        source: (partition, offset),
        reason,
        last_status,
        attempts,
        first_attempt_ms: first,
        last_attempt_ms: chrono::Utc::now().timestamp_millis(),
    };
    let message = match CallMessage::decode(&value) {
        Ok(m) => m,
        Err(e) => {
            drop(slot);
            inc(&stats.invalid_message);
            error!(ctx.log, "invalid call record"; "partition" => partition, "offset" => offset,
                "call_id" => &call_id, "error" => %e);
            let now = chrono::Utc::now().timestamp_millis();
            dead_letter(
                ctx,
                &call_id,
                letter(format!("invalid message: {e}"), None, 0, now),
            )
            .await;
            return true;
        }
    };
    inc(&stats.rpc_total);
    let body = Bytes::from(message.data.into_bytes());
    let first_attempt = chrono::Utc::now().timestamp_millis();
    let mut attempt = 1u32;
    let mut first_slot = Some(slot);
    // Parsed only when the entry has breakers: this is the delivery hot path.
    let host = if ctx.breakers.enabled() {
        host_key(&message.url)
    } else {
        None
    };
    loop {
        if let Some(host) = &host
            && !hold_while_broken(ctx, host, &mut first_slot, stopping).await
        {
            return false;
        }
        // Concurrency first, then the rate token: a slot is held only while
        // the attempt runs, not while it waits for a retry. The fetch loop
        // took both for the first attempt.
        let permit = match first_slot.take() {
            Some(slot) => slot,
            None => {
                let Ok(slot) = Arc::clone(&ctx.concurrency).acquire_owned().await else {
                    // The semaphore is never closed; if it were, the call is not finished.
                    return false;
                };
                ctx.rate.acquire().await;
                slot
            }
        };
        if attempt > 1 {
            inc(&stats.rpc_retries);
        }
        let request = OutboundRequest {
            url: message.url.clone(),
            body: body.clone(),
            headers: outbound_headers(&message.headers, &call_id, attempt, &ctx.drop_headers),
            timeout: ctx.settings.timeout,
        };
        let outcome = ctx.pool.send(request).await;
        drop(permit);
        let verdict = ctx.policy.decide(attempt, &outcome, &mut rand::rng());
        if let Some(host) = &host
            && let Some(success) = breaker_sample(&verdict, &outcome)
            && let Some(t) = ctx.breakers.record(host, success)
        {
            breaker_changed(ctx, host, &t);
        }
        match verdict {
            Verdict::Success => {
                inc(&stats.rpc_success);
                debug!(ctx.log, "call delivered"; "call_id" => &call_id, "attempt" => attempt);
                return true;
            }
            Verdict::Retry { after } => {
                debug!(ctx.log, "attempt failed, retrying"; "call_id" => &call_id, "attempt" => attempt,
                    "outcome" => ?outcome, "retry_in_ms" => after.as_millis());
                stats.retries_scheduled.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(after).await;
                stats.retries_scheduled.fetch_sub(1, Ordering::Relaxed);
                attempt += 1;
            }
            Verdict::GiveUp { reason } => {
                inc(&stats.rpc_fail);
                let last_status = match outcome {
                    AttemptOutcome::Response { status, .. } => Some(status),
                    _ => None,
                };
                let reason = describe(&reason);
                warn!(ctx.log, "call failed"; "call_id" => &call_id, "attempts" => attempt,
                    "url" => &message.url, "reason" => &reason);
                dead_letter(ctx, &call_id, letter(reason, last_status, attempt, first_attempt)).await;
                return true;
            }
        }
    }
}

/// How often a held call asks its breaker again. Go waited 1 s; the jitter spreads
/// the held calls of one target over the second.
const BREAKER_RECHECK: Duration = Duration::from_secs(1);

/// Waits until `host`'s breaker lets an attempt start (true), or until the
/// partition stops (false). A held call gives back the concurrency slot the fetch
/// loop took for it (`first_slot`), so calls to other hosts keep flowing. It gives
/// up at once when the partition stops, rather than at the drain deadline: it could
/// not finish anyway, and stays uncommitted for the next owner.
async fn hold_while_broken(
    ctx: &EntryContext,
    host: &str,
    first_slot: &mut Option<OwnedSemaphorePermit>,
    stopping: &CancellationToken,
) -> bool {
    let mut held = None;
    loop {
        let admission = ctx.breakers.admit(host);
        if let Some(t) = &admission.transition {
            breaker_changed(ctx, host, t);
        }
        if admission.pass {
            return true;
        }
        if held.is_none() {
            first_slot.take();
            ctx.stats.circuit_held.fetch_add(1, Ordering::Relaxed);
            held = Some(scopeguard(|| {
                ctx.stats.circuit_held.fetch_sub(1, Ordering::Relaxed);
            }));
        }
        let jitter = rand::random_range(0.5..=1.0);
        tokio::select! {
            () = tokio::time::sleep(BREAKER_RECHECK.mul_f64(jitter)) => {}
            () = stopping.cancelled() => return false,
        }
    }
}

/// What an attempt tells the breaker: `Some(true)` delivered, `Some(false)` the target
/// failed (any other status, timeout, connection error, as in Go); `None` for attempts
/// that never reached it (invalid request, pool down).
fn breaker_sample(verdict: &Verdict, outcome: &AttemptOutcome) -> Option<bool> {
    match (verdict, outcome) {
        (Verdict::Success, _) => Some(true),
        (_, AttemptOutcome::Response { .. } | AttemptOutcome::Timeout | AttemptOutcome::Connect(_)) => {
            Some(false)
        }
        (_, AttemptOutcome::Invalid(_) | AttemptOutcome::Unavailable) => None,
    }
}

/// Logs a breaker's change of state and keeps the open-circuits gauge.
fn breaker_changed(ctx: &EntryContext, host: &str, t: &Transition) {
    ctx.stats
        .circuits_open
        .fetch_add(t.open_delta(), Ordering::Relaxed);
    let rate = format!("{:.3}", t.success_rate);
    match t.to {
        State::Open { .. } => warn!(ctx.log, "circuit open: calls to this target are held";
            "target" => host, "from" => t.from.name(), "success_rate" => rate, "samples" => t.samples),
        _ => info!(ctx.log, "circuit {}", t.to.name(); "target" => host, "success_rate" => rate,
            "samples" => t.samples),
    }
}

fn describe(reason: &GiveUpReason) -> String {
    match reason {
        GiveUpReason::Status(s) => format!("status {s} is not retryable"),
        GiveUpReason::AttemptsExhausted { last } => format!("attempts exhausted, last: {last}"),
        GiveUpReason::Invalid(why) => format!("request cannot succeed: {why}"),
    }
}

async fn dead_letter(ctx: &EntryContext, call_id: &str, letter: DeadLetter) {
    match &ctx.dlq {
        Some(dlq) => {
            dlq.write(&letter).await;
            inc(&ctx.stats.dead_lettered);
            info!(ctx.log, "call dead-lettered"; "call_id" => call_id, "topic" => &dlq.topic,
                "reason" => &letter.reason);
        }
        None => {
            // Dead-lettering is disabled for this entry: the call ends here, reported.
            error!(ctx.log, "call dropped after its last attempt (no dead-letter topic)";
                "call_id" => call_id, "reason" => &letter.reason,
                "record" => String::from_utf8_lossy(&letter.value).into_owned());
        }
    }
}

/// Runs `f` when dropped (also when the delivery is abandoned mid-way).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
