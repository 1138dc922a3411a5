//! One call's life, from a fetched record to its end.
//!
//! ```text
//!  decode ──► (tier lane: hold until due) ──► admit ──► attempt ──► decide ──► finish
//!    │ not a call                              │ breaker open     │             ├ delivered
//!    └──────────────► dead letter              └─► park / hold    │             ├ retry soon: wait in the window, attempt again
//!                                                                               ├ retry later: park in a retry tier
//!                                                                               └ give up: dead letter
//! ```
//!
//! [`decode`] and [`decide`] are pure; [`live`] drives the stages. A call ends
//! [`End::Finished`] (delivered, parked in a tier that Kafka acknowledged,
//! dead-lettered or reported), after which its offset may be committed, or
//! [`End::Abandoned`] when its partition stopped before it could finish: then
//! the next owner reads it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rskafka::record::{Record, RecordAndOffset};
use slog::{debug, error, info, warn};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::callback;
use super::dlq::DeadLetter;
use super::fetch::Unreadable;
use super::hosts::HostSlot;
use super::tiers::{self, IN_WINDOW_RETRY_MAX, Progress, Wait};
use super::{EntryContext, Lane};
use crate::config::{MAX_SCHEDULE_MS, Ordering as KeyOrdering};
use crate::delivery::breaker::{State, Transition, host_key};
use crate::delivery::headers::{CONTENT_TYPE, outbound_headers_with};
use crate::delivery::redact::redact_url;
use crate::delivery::retry::{GiveUpReason, RetryPolicy, Verdict};
use crate::delivery::signing::signature_headers;
use crate::delivery::{AttemptOutcome, OutboundRequest};
use crate::kafka::records::Fault;
use crate::message::{CALL_ID_HEADER, CallMessage, DecodeError, REPLAY_OF_HEADER};
use crate::metrics::classes::{DeadLetterReason, Outcome};
use crate::stats::{ConsumerStats, inc};

/// How a call's life ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Delivered, parked in a retry tier, dead-lettered or reported: commit past it.
    Finished,
    /// Its partition stopped first: leave it uncommitted for the next owner.
    Abandoned,
}

/// A decoded call and where it was read.
#[derive(Debug)]
pub struct Call {
    /// The call id (the `bigpipe-call-id` header, or `topic-partition-offset`).
    pub id: String,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The record as read (key, value, headers, timestamp).
    pub record: Record,
    /// Target URL and caller headers (`data` moved to `body`).
    pub message: CallMessage,
    /// The body to send.
    pub body: Bytes,
    /// The target host key (`scheme://authority`), "" when the URL has none.
    pub host: String,
    /// Attempts made before this read and when they started (from retry-tier headers).
    pub progress: Progress,
}

/// A record that is not a call.
#[derive(Debug)]
pub struct NotACall {
    /// The id the record is known by.
    pub id: String,
    /// The record, for the dead letter.
    pub record: RecordAndOffset,
    /// Why.
    pub error: DecodeError,
}

/// The id of a record: its call-id header, or `topic-partition-offset` for records
/// written by the Go version (which carry none).
pub fn call_id(record: &Record, topic: &str, partition: i32, offset: i64) -> String {
    record
        .headers
        .get(CALL_ID_HEADER)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| format!("{topic}-{partition}-{offset}"))
}

/// The `X-Bigpipe-Replay-Of` header of a call replayed from a dead letter, so the target
/// can tell a replay from a first delivery.
fn replay_of(record: &Record) -> Option<(String, String)> {
    let value = record.headers.get(REPLAY_OF_HEADER)?;
    let value = std::str::from_utf8(value).ok()?;
    awc::http::header::HeaderValue::from_str(value).ok()?;
    Some((
        crate::delivery::headers::REPLAY_OF_HEADER.to_owned(),
        value.to_owned(),
    ))
}

/// Stage 1: the record as a call.
///
/// # Errors
/// When the value is not a Go call JSON.
pub fn decode(topic: &str, partition: i32, read: RecordAndOffset) -> Result<Call, Box<NotACall>> {
    let id = call_id(&read.record, topic, partition, read.offset);
    let value = read.record.value.as_deref().unwrap_or_default();
    let message = match CallMessage::decode(value) {
        Ok(m) => m,
        Err(error) => {
            return Err(Box::new(NotACall {
                id,
                record: read,
                error,
            }));
        }
    };
    let RecordAndOffset { record, offset } = read;
    let mut message = message;
    // The body moves out of the message: it is only ever sent as bytes.
    let body = Bytes::from(std::mem::take(&mut message.data).into_bytes());
    Ok(Call {
        id,
        partition,
        offset,
        progress: Progress::from_headers(&record.headers),
        body,
        host: host_key(&message.url).unwrap_or_default(),
        message,
        record,
    })
}

/// What follows an attempt, or an admission refused by an open circuit.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The target took the call.
    Delivered,
    /// Attempt again after `after`, waiting where `wait` says.
    Retry {
        /// Delay before the next attempt.
        after: Duration,
        /// In the window, or parked in a tier.
        wait: Wait,
    },
    /// Stop: dead-letter the call.
    GiveUp {
        /// Why, for logs and the dead letter.
        reason: String,
        /// The last HTTP status, when the target answered.
        last_status: Option<u16>,
        /// The reason's class, for `/metrics`.
        class: DeadLetterReason,
    },
}

/// Stage 4: what to do after attempt number `attempt` (1-based, counted across tiers)
/// ended with `outcome`, `elapsed` after the call's first attempt.
pub fn decide<R: rand::Rng + ?Sized>(
    policy: &RetryPolicy,
    tiers: &[Duration],
    attempt: u32,
    elapsed: Duration,
    outcome: &AttemptOutcome,
    rng: &mut R,
) -> Next {
    match policy.decide_after(attempt, elapsed, outcome, rng) {
        Verdict::Success => Next::Delivered,
        Verdict::Retry { after } => Next::Retry {
            after,
            wait: tiers::place(after, tiers),
        },
        Verdict::GiveUp { reason } => Next::GiveUp {
            class: reason_class(&reason),
            reason: describe(&reason),
            last_status: match outcome {
                AttemptOutcome::Response { status, .. } => Some(*status),
                _ => None,
            },
        },
    }
}

/// What to do with a call its host's open circuit refused, with tiers: after `held`
/// attempts and refusals (each refusal counts as an attempt for the give-up rule, so
/// parking is bounded: set `retryFor` to how long calls should wait out an outage),
/// park it in the first tier or give up.
pub fn decide_held(policy: &RetryPolicy, tiers: &[Duration], held: u32, elapsed: Duration) -> Next {
    match tiers.first() {
        Some(_) if policy.exhausted(held, elapsed) => Next::GiveUp {
            reason: format!("circuit open: held {held} times, {} ms", elapsed.as_millis()),
            last_status: None,
            // The held refusals count as attempts, and used up the budget.
            class: DeadLetterReason::AttemptsExhausted,
        },
        Some(&first) => Next::Retry {
            after: first,
            wait: Wait::Tier(0),
        },
        // Without tiers the driver holds the call in the window instead (the breaker's
        // own probing lets it through once the host recovers, within `breakPeriod` +
        // `recoverPeriod`, each at most 1 h).
        None => Next::Retry {
            after: BREAKER_RECHECK,
            wait: Wait::InWindow(BREAKER_RECHECK),
        },
    }
}

/// How often a call held in the window asks its breaker again (Go waited 1 s).
const BREAKER_RECHECK: Duration = Duration::from_secs(1);

/// The `/metrics` class of a give-up reason.
fn reason_class(reason: &GiveUpReason) -> DeadLetterReason {
    match reason {
        GiveUpReason::Status(_) | GiveUpReason::Invalid(_) => DeadLetterReason::NotRetryable,
        GiveUpReason::AttemptsExhausted { .. } => DeadLetterReason::AttemptsExhausted,
        GiveUpReason::Refused(_) => DeadLetterReason::DestinationRefused,
    }
}

/// How an attempt ended, for `bigpipe_delivery_attempts_total`.
fn outcome_class(outcome: &AttemptOutcome, policy: &RetryPolicy) -> (Outcome, Option<u16>) {
    match outcome {
        AttemptOutcome::Response { status, .. } if policy.success.contains(*status) => {
            (Outcome::Delivered, Some(*status))
        }
        AttemptOutcome::Response { status, .. } => (Outcome::HttpError, Some(*status)),
        AttemptOutcome::Timeout => (Outcome::Timeout, None),
        AttemptOutcome::Connect(_) => (Outcome::ConnectError, None),
        AttemptOutcome::Refused(_) => (Outcome::Refused, None),
        AttemptOutcome::Invalid(_) | AttemptOutcome::Unavailable => (Outcome::Other, None),
    }
}

fn describe(reason: &GiveUpReason) -> String {
    match reason {
        GiveUpReason::Status(s) => format!("status {s} is not retryable"),
        GiveUpReason::AttemptsExhausted { last } => format!("attempts exhausted, last: {last}"),
        GiveUpReason::Invalid(why) => format!("request cannot succeed: {why}"),
        GiveUpReason::Refused(why) => format!("destination not allowed: {why}"),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn since(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms().saturating_sub(ms)).unwrap_or(0))
}

/// Counts a call in its lane's `inFlight` from when it is read until its life ends
/// (also when it is abandoned, or dropped while it waits for a delivery slot).
#[derive(Debug)]
pub struct InFlight(Arc<ConsumerStats>);

impl InFlight {
    /// Counts one more call in flight in `stats`.
    pub fn new(stats: &Arc<ConsumerStats>) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(stats))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stage 1 with its counters: a record read from `partition` as a call, or why it is not
/// one (counted and logged; [`refuse`] dead-letters it).
///
/// # Errors
/// When the value is not a Go call JSON.
pub fn take(lane: &Lane, partition: i32, read: RecordAndOffset) -> Result<Call, Box<NotACall>> {
    let stats = &lane.entry.stats;
    // A call read back from a tier was counted when it was first read.
    let first_read = lane.tier.is_none();
    if first_read {
        inc(&stats.handle_message);
    }
    match decode(&lane.topic, partition, read) {
        Ok(call) => {
            if first_read {
                inc(&stats.rpc_total);
            }
            Ok(call)
        }
        Err(bad) => {
            inc(&stats.invalid_message);
            error!(lane.log, "invalid call record"; "partition" => partition, "offset" => bad.record.offset,
                "call_id" => &bad.id, "error" => %bad.error);
            Err(bad)
        }
    }
}

/// Dead-letters a record that is not a call.
pub async fn refuse(lane: &Lane, partition: i32, bad: NotACall) -> End {
    let reason = format!("invalid message: {}", bad.error);
    let letter = letter_for(
        &bad.record.record,
        (partition, bad.record.offset),
        reason,
        None,
        0,
        now_ms(),
    );
    dead_letter(
        &lane.entry,
        &bad.id,
        letter,
        None,
        DeadLetterReason::InvalidRecord,
    )
    .await;
    End::Finished
}

/// Drives one record of `partition` through its life. `stopping` is the partition
/// stopping: a call that has not started an attempt leaves at once (abandoned); one
/// that has may finish within the drain timeout (the caller cancels it after that).
///
/// The stages taken by few calls (dead letters, waiting in a tier) are boxed: a call's
/// future is as large as its largest stage, and every call in the window has one.
pub async fn live(lane: &Lane, partition: i32, read: RecordAndOffset, stopping: &CancellationToken) -> End {
    let _in_flight = InFlight::new(&lane.stats);
    let call = match take(lane, partition, read) {
        Ok(call) => call,
        Err(bad) => return Box::pin(refuse(lane, partition, *bad)).await,
    };
    if let Some(tier) = lane.tier {
        match Box::pin(hold_until_due(lane, tier, &call, stopping)).await {
            Some(End::Abandoned) => return End::Abandoned,
            Some(End::Finished) => return End::Finished,
            None => {}
        }
    }
    attempts(lane, call, None, stopping).await
}

/// Drives a call of the entry's own topic that already holds its host's and the entry's
/// slots for its first attempt (taken by [`super::dispatch`] before this task was spawned);
/// as [`live`] from there.
pub async fn deliver(lane: &Lane, call: Call, slots: Slots, stopping: &CancellationToken) -> End {
    attempts(lane, call, Some(slots), stopping).await
}

/// When the call was accepted: its record's Kafka `CreateTime` (the producer stamps it at
/// acceptance). A record read from a retry tier was stamped when it was parked, so there
/// the call JSON's own `CreateTime` (set at acceptance, copied with the value) is the
/// acceptance time, when the writer set one.
///
/// A scheduled call counts from its due time: its latency is how late it was delivered.
fn accepted_ms(lane: &Lane, call: &Call) -> i64 {
    let accepted = acceptance(
        lane.tier.is_some(),
        call.message.create_time,
        call.record.timestamp.timestamp_millis(),
    );
    call.message
        .deliver_at
        .map_or(accepted, |due| accepted.max(capped_due(call, due)))
}

/// [`accepted_ms`] on plain values: from a tier the JSON's time if set, else the record's.
fn acceptance(from_tier: bool, json_ms: i64, record_ms: i64) -> i64 {
    if from_tier && json_ms > 0 {
        json_ms
    } else {
        record_ms
    }
}

/// The time a call of the entry's own topic is due, when that is later than `now_ms`: its
/// record's `DeliverAt`, capped at [`MAX_SCHEDULE_MS`] after its acceptance, so a record
/// from another producer cannot park a call for longer than a caller may.
pub fn due_later(call: &Call, now_ms: i64) -> Option<i64> {
    let due = capped_due(call, call.message.deliver_at?);
    (due > now_ms).then_some(due)
}

/// `due` at most [`MAX_SCHEDULE_MS`] after the call's acceptance (the earlier of its JSON's
/// `CreateTime` and its record's timestamp: either may come from another producer).
fn capped_due(call: &Call, due: i64) -> i64 {
    let accepted = call
        .message
        .create_time
        .min(call.record.timestamp.timestamp_millis());
    due.min(accepted.saturating_add(i64::try_from(MAX_SCHEDULE_MS).unwrap_or(i64::MAX)))
}

/// A scheduled call read before it is due: parked in the retry tier that covers the wait
/// (the call waits in Kafka, not here), or, when the wait is short, the entry has no tiers
/// or Kafka would not take it, held in the window until `due`. Then its attempts start.
pub async fn scheduled(lane: &Lane, call: Call, due: i64, stopping: &CancellationToken) -> End {
    let entry = &*lane.entry;
    inc(&entry.stats.scheduled);
    let left = until(due);
    if let Wait::Tier(index) = tiers::place(left, &entry.settings.retry_tiers) {
        let progress = Progress {
            due_ms: Some(due),
            ..call.progress.clone()
        };
        if Box::pin(park(lane, &call, progress, index, "scheduled")).await {
            return End::Finished;
        }
    }
    let waited = {
        let _waiting = Waiting::new(&entry.stats.scheduled_waiting);
        stopping.run_until_cancelled(tokio::time::sleep(until(due))).await
    };
    if waited.is_none() {
        return End::Abandoned;
    }
    attempts(lane, call, None, stopping).await
}

/// How long until `ms` (zero once past).
fn until(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms.saturating_sub(now_ms())).unwrap_or(0))
}

/// Counts one in a gauge while it lives.
struct Waiting<'a>(&'a AtomicI64);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stage 2 of a tier lane: waits until the call is due (at most the tier's delay after
/// it was parked). A call still not due then is parked again without an attempt.
/// `None`: go on to the attempt.
async fn hold_until_due(lane: &Lane, tier: usize, call: &Call, stopping: &CancellationToken) -> Option<End> {
    let delay = lane.entry.settings.retry_tiers.get(tier).copied()?;
    let written = call.record.timestamp.timestamp_millis();
    // A call that has made no attempt yet waits for its schedule.
    let _scheduled = (call.progress.attempts == 0 && call.message.deliver_at.is_some())
        .then(|| Waiting::new(&lane.entry.stats.scheduled_waiting));
    let due = call.progress.due_ms.map(|due| capped_due(call, due));
    let wait = tiers::hold_for(now_ms(), due, written, delay);
    if stopping
        .run_until_cancelled(tokio::time::sleep(wait))
        .await
        .is_none()
    {
        return Some(End::Abandoned);
    }
    let due = due?;
    let left = until(due);
    if left < IN_WINDOW_RETRY_MAX {
        // Not before it is due: the rest is short enough to wait here.
        let waited = stopping.run_until_cancelled(tokio::time::sleep(left)).await;
        return waited.is_none().then_some(End::Abandoned);
    }
    // Due later than the largest tier holds: park again, no attempt made.
    let wait = tiers::place(left, &lane.entry.settings.retry_tiers);
    let progress = call.progress.clone();
    match wait {
        Wait::Tier(index) if park(lane, call, progress, index, "not due yet").await => Some(End::Finished),
        _ => None,
    }
}

/// Stages 3 to 5, for as many attempts as the policy allows; `first` holds the slots of
/// the first attempt when they were taken before.
async fn attempts(lane: &Lane, call: Call, mut first: Option<Slots>, stopping: &CancellationToken) -> End {
    let entry = &*lane.entry;
    // Ordered by key: a retry waits in the window, holding its key, so no later call of the
    // key can overtake it through a tier.
    let tiers: &[Duration] = if lane.tier.is_none() && entry.settings.ordering == KeyOrdering::Key {
        &[]
    } else {
        &entry.settings.retry_tiers
    };
    let first_attempt_ms = call.progress.first_attempt_ms.unwrap_or_else(now_ms);
    // Attempts (and circuit refusals) so far, across tiers.
    let mut made = call.progress.attempts;
    // The target's last answer, for the callback.
    let mut answered: Option<u16> = None;
    loop {
        let (next, why) = match admit(entry, &call.host, first.take(), stopping).await {
            Admission::Stopped => return End::Abandoned,
            Admission::Broken if tiers.is_empty() => {
                // No tier to park in: wait in the window (Go's hold), without counting
                // attempts; the breaker's own probing lets the call through in the end.
                if hold_in_window(entry, stopping).await == End::Abandoned {
                    return End::Abandoned;
                }
                continue;
            }
            Admission::Broken => {
                // Each refusal counts as an attempt, so parking is bounded by the budget.
                made += 1;
                let next = decide_held(&entry.policy, tiers, made, since(first_attempt_ms));
                (next, "circuit open".to_owned())
            }
            Admission::Go(slots) => {
                made += 1;
                if made > 1 {
                    inc(&entry.stats.rpc_retries);
                }
                let method = call.message.method.unwrap_or_default();
                let content_type = method
                    .has_body()
                    .then(|| call.message.content_type.as_deref().unwrap_or(CONTENT_TYPE));
                let mut headers = outbound_headers_with(
                    &call.message.headers,
                    &call.id,
                    made,
                    &entry.headers,
                    content_type,
                );
                headers.extend(replay_of(&call.record));
                // Signed per attempt: the timestamp is this attempt's, so a verifier's
                // 5-minute window holds for retries as well.
                let now = chrono::Utc::now().timestamp();
                if let Some(signed) =
                    signature_headers(&entry.settings.signing_keys, &call.id, now, &call.body)
                {
                    headers.extend(signed);
                }
                let request = OutboundRequest {
                    url: call.message.url.clone(),
                    body: call.body.clone(),
                    headers,
                    // The caller may shorten the entry's timeout, never lengthen it.
                    timeout: call.message.timeout_ms.map_or(entry.settings.timeout, |ms| {
                        entry.settings.timeout.min(Duration::from_millis(ms))
                    }),
                    method,
                };
                let outcome = entry.pool.send(request).await;
                drop(slots);
                let (class, status) = outcome_class(&outcome, &entry.policy);
                answered = status;
                entry.stats.delivery.attempt(&call.host, class, status);
                if entry.breakers.enabled()
                    && let Some(success) = breaker_sample(&outcome, &entry.policy)
                    && let Some(t) = entry.breakers.record(&call.host, success)
                {
                    breaker_changed(entry, &call.host, &t);
                }
                let next = decide(
                    &entry.policy,
                    tiers,
                    made,
                    since(first_attempt_ms),
                    &outcome,
                    &mut rand::rng(),
                );
                if let Next::Retry { after, .. } = &next {
                    debug!(lane.log, "attempt failed, retrying"; "call_id" => &call.id, "attempt" => made,
                        "outcome" => %outcome, "retry_in_ms" => after.as_millis());
                }
                (next, outcome.to_string())
            }
        };
        match next {
            Next::Delivered => {
                inc(&entry.stats.rpc_success);
                entry.stats.delivery.delivered(accepted_ms(lane, &call), now_ms());
                debug!(lane.log, "call delivered"; "call_id" => &call.id, "attempt" => made);
                let outcome = callback::Outcome::Delivered { status: answered };
                return Box::pin(callback::send(lane, &call, outcome, made)).await;
            }
            Next::Retry { after, wait } => {
                let parked = match wait {
                    Wait::Tier(index) => {
                        let progress = Progress {
                            attempts: made,
                            first_attempt_ms: Some(first_attempt_ms),
                            due_ms: Some(
                                now_ms().saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
                            ),
                            source: call.progress.source.clone(),
                        };
                        Box::pin(park(lane, &call, progress, index, &why)).await
                    }
                    Wait::InWindow(_) => false,
                };
                if parked {
                    return End::Finished;
                }
                // In the window: short waits, no tiers, or a tier Kafka would not take.
                entry.stats.retries_scheduled.fetch_add(1, Ordering::Relaxed);
                let _scheduled = scopeguard(|| {
                    entry.stats.retries_scheduled.fetch_sub(1, Ordering::Relaxed);
                });
                tokio::time::sleep(after).await;
            }
            Next::GiveUp {
                reason,
                last_status,
                class,
            } => {
                inc(&entry.stats.rpc_fail);
                warn!(lane.log, "call failed"; "call_id" => &call.id, "attempts" => made,
                    "url" => redact_url(&call.message.url), "reason" => &reason);
                let letter = letter_for(
                    &call.record,
                    (call.partition, call.offset),
                    reason.clone(),
                    last_status,
                    made,
                    first_attempt_ms,
                );
                Box::pin(dead_letter(
                    entry,
                    &call.id,
                    letter,
                    Some(&call.message.url),
                    class,
                ))
                .await;
                let outcome = callback::Outcome::DeadLettered {
                    reason: &reason,
                    status: last_status,
                };
                return Box::pin(callback::send(lane, &call, outcome, made)).await;
            }
        }
    }
}

/// Holds a call refused by an open circuit for about [`BREAKER_RECHECK`] (jittered, so
/// the held calls of one host spread over the second). It leaves at once when the
/// partition stops: it could not finish anyway, and stays uncommitted for the next owner.
async fn hold_in_window(entry: &EntryContext, stopping: &CancellationToken) -> End {
    entry.stats.circuit_held.fetch_add(1, Ordering::Relaxed);
    let _held = scopeguard(|| {
        entry.stats.circuit_held.fetch_sub(1, Ordering::Relaxed);
    });
    let jitter = rand::random_range(0.5..=1.0);
    let recheck = tokio::time::sleep(BREAKER_RECHECK.mul_f64(jitter));
    match stopping.run_until_cancelled(recheck).await {
        Some(()) => End::Finished,
        None => End::Abandoned,
    }
}

/// Whether an attempt may start, and the slots it holds while it runs.
enum Admission {
    /// Go ahead; dropping the slots frees them.
    Go(Slots),
    /// The host's circuit is open.
    Broken,
    /// The partition stopped before the attempt started.
    Stopped,
}

/// A call's slot at its target host and one of the entry's concurrency slots, held while
/// its attempt runs; dropping them frees both.
#[derive(Debug)]
pub struct Slots {
    _host: HostSlot,
    _entry: OwnedSemaphorePermit,
}

impl Slots {
    /// The slots of one attempt: the host's first, then the entry's (see [`admit`]).
    pub fn new(host: HostSlot, entry: OwnedSemaphorePermit) -> Self {
        Self {
            _host: host,
            _entry: entry,
        }
    }
}

/// Stage 3: the breaker, then the host's slot, then one of the entry's slots, then a
/// rate token, in that order, so a call waiting for a busy host holds nothing that
/// calls to other hosts need. `held`: the slots were taken before (in that order too);
/// an open circuit then gives them back at once.
async fn admit(
    entry: &EntryContext,
    host: &str,
    held: Option<Slots>,
    stopping: &CancellationToken,
) -> Admission {
    if entry.breakers.enabled() {
        let admission = entry.breakers.admit(host);
        if let Some(t) = &admission.transition {
            breaker_changed(entry, host, t);
        }
        if !admission.pass {
            return Admission::Broken;
        }
    }
    let take = async {
        let slots = match held {
            Some(slots) => slots,
            None => {
                let host = entry.hosts.acquire(host).await;
                let slot = Arc::clone(&entry.concurrency).acquire_owned().await.ok()?;
                Slots::new(host, slot)
            }
        };
        entry.rate.acquire().await;
        Some(slots)
    };
    // The entry's semaphore is never closed; if it were, the call is not started.
    match stopping.run_until_cancelled(take).await {
        Some(Some(slots)) => Admission::Go(slots),
        Some(None) | None => Admission::Stopped,
    }
}

/// Stage 5 (retry later): writes the call to retry tier `index` with `progress`.
/// True once Kafka has it; false when it could not be written in a few tries (too
/// large, or Kafka failing), and the caller then keeps the call in the window.
async fn park(lane: &Lane, call: &Call, progress: Progress, index: usize, why: &str) -> bool {
    let entry = &*lane.entry;
    let Some(writer) = entry.tiers.get(index) else {
        return false;
    };
    let source = format!("{}/{}/{}", lane.topic, call.partition, call.offset);
    let record = Record {
        key: call.record.key.clone(),
        value: call.record.value.clone(),
        headers: progress.park_headers(&call.record.headers, &source, why),
        timestamp: chrono::Utc::now(),
    };
    let count = entry.table.count(writer.topic()).unwrap_or(1).max(1);
    let partition = call.partition.rem_euclid(count);
    for attempt in 1..=PARK_TRIES {
        // Two request timeouts: rskafka may retry a leader change inside one produce.
        let bound = entry.client.timeout() * 2;
        match writer.write(partition, record.clone(), bound).await {
            Ok(_) => {
                inc(&entry.stats.retry_parked);
                debug!(lane.log, "call parked in a retry tier"; "call_id" => &call.id, "tier" => writer.topic(),
                    "due_ms" => progress.due_ms, "attempts" => progress.attempts);
                return true;
            }
            Err(e) if e.fault() == Fault::TooLarge || attempt == PARK_TRIES => {
                inc(&entry.stats.retry_park_failed);
                warn!(lane.log, "call not parked in its retry tier, it waits in the partition instead";
                    "call_id" => &call.id, "tier" => writer.topic(), "error" => %e);
                return false;
            }
            Err(e) => {
                debug!(lane.log, "retry tier write failed, trying again"; "call_id" => &call.id, "error" => %e);
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
        }
    }
    false
}

/// Tries to write a call to its tier before it waits in the window instead.
const PARK_TRIES: u32 = 3;

/// What an attempt tells the breaker: `Some(true)` delivered, `Some(false)` the target
/// failed (any other status, timeout, connection error, as in Go); `None` for attempts
/// that never reached it (invalid request, destination refused by the policy, pool down).
fn breaker_sample(outcome: &AttemptOutcome, policy: &RetryPolicy) -> Option<bool> {
    match outcome {
        AttemptOutcome::Response { status, .. } => Some(policy.success.contains(*status)),
        AttemptOutcome::Timeout | AttemptOutcome::Connect(_) => Some(false),
        AttemptOutcome::Invalid(_) | AttemptOutcome::Refused(_) | AttemptOutcome::Unavailable => None,
    }
}

/// Logs a breaker's change of state and keeps the open-circuits gauge.
fn breaker_changed(entry: &EntryContext, host: &str, t: &Transition) {
    entry
        .stats
        .circuits_open
        .fetch_add(t.open_delta(), Ordering::Relaxed);
    let state = match t.to {
        State::Normal => 0,
        State::Open { .. } => 1,
        State::Recovering { .. } => 2,
    };
    entry.stats.delivery.circuit(host, state);
    let rate = format!("{:.3}", t.success_rate);
    let host = redact_url(host);
    match t.to {
        State::Open { .. } => warn!(entry.log, "circuit open: calls to this target are held";
            "target" => &host, "from" => t.from.name(), "success_rate" => rate, "samples" => t.samples),
        _ => info!(entry.log, "circuit {}", t.to.name(); "target" => &host, "success_rate" => rate,
            "samples" => t.samples),
    }
}

/// Finishes an unreadable batch: one dead letter by reference (no value), so the
/// partition commits past it and an operator can find the offsets.
pub async fn step_over(lane: &Lane, partition: i32, batch: Unreadable) -> End {
    let entry = &*lane.entry;
    let count = u64::try_from(batch.last - batch.first + 1).unwrap_or(1);
    entry.stats.unreadable_records.fetch_add(count, Ordering::Relaxed);
    error!(lane.log, "unreadable batch stepped over"; "partition" => partition, "first_offset" => batch.first,
        "last_offset" => batch.last, "reason" => &batch.reason);
    let mut headers = std::collections::BTreeMap::new();
    headers.insert(
        "bigpipe-dlq-unreadable-last-offset".to_owned(),
        batch.last.to_string().into_bytes(),
    );
    let letter = DeadLetter {
        key: None,
        value: Vec::new(),
        headers,
        source: (partition, batch.first),
        reason: format!(
            "unreadable batch, offsets {}..={}: {}",
            batch.first, batch.last, batch.reason
        ),
        last_status: None,
        attempts: 0,
        first_attempt_ms: now_ms(),
        last_attempt_ms: now_ms(),
    };
    let id = format!("{}-{partition}-{}", lane.topic, batch.first);
    dead_letter(entry, &id, letter, None, DeadLetterReason::Unreadable).await;
    End::Finished
}

/// A dead letter of `record` read at `source` (partition, offset).
fn letter_for(
    record: &Record,
    source: (i32, i64),
    reason: String,
    last_status: Option<u16>,
    attempts: u32,
    first_attempt_ms: i64,
) -> DeadLetter {
    DeadLetter {
        key: record.key.clone(),
        value: record.value.clone().unwrap_or_default(),
        headers: record.headers.clone(),
        source,
        reason,
        last_status,
        attempts,
        first_attempt_ms,
        last_attempt_ms: now_ms(),
    }
}

/// Writes the dead letter, or with dead-lettering off reports the call. `url` is the
/// call's target, when the record could be read as a call.
async fn dead_letter(
    entry: &EntryContext,
    call_id: &str,
    letter: DeadLetter,
    url: Option<&str>,
    class: DeadLetterReason,
) {
    match &entry.dlq {
        Some(dlq) => {
            let outcome = dlq.write(call_id, &letter).await;
            outcome.count(&entry.stats);
            if outcome.written() {
                entry.stats.delivery.dead_lettered(class);
            }
            info!(entry.log, "call dead-lettered"; "call_id" => call_id, "topic" => &dlq.topic,
                "reason" => &letter.reason, "outcome" => outcome.as_str());
        }
        None => {
            // Dead-lettering is disabled for this entry: the call ends here, reported. Not
            // the record itself: its headers and data are the caller's and may hold
            // credentials; the call id finds it in Kafka while it is retained.
            error!(entry.log, "call dropped after its last attempt (no dead-letter topic)";
                "call_id" => call_id, "url" => url.map_or_else(String::new, redact_url),
                "source_partition" => letter.source.0, "source_offset" => letter.source.1,
                "record_bytes" => letter.value.len(), "attempts" => letter.attempts,
                "reason" => &letter.reason);
        }
    }
}

/// Runs `f` when dropped (also when the call is abandoned mid-way).
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::backoff::test_rng::{OnesRng, ZeroRng};
    use crate::delivery::retry::SuccessCodes;

    const TIERS: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(60)];

    #[test]
    fn a_replayed_call_tells_its_target_and_others_do_not() {
        let mut record = Record {
            key: None,
            value: None,
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        };
        assert_eq!(replay_of(&record), None);
        record
            .headers
            .insert(REPLAY_OF_HEADER.into(), b"calls.dlq/1/9".to_vec());
        assert_eq!(
            replay_of(&record),
            Some(("X-Bigpipe-Replay-Of".to_owned(), "calls.dlq/1/9".to_owned()))
        );
        // Not a valid header value: left out rather than failing the attempt.
        record.headers.insert(REPLAY_OF_HEADER.into(), b"a\nb".to_vec());
        assert_eq!(replay_of(&record), None);
    }

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(120),
            success: SuccessCodes::default_2xx(),
            retry_for: Duration::ZERO,
        }
    }

    fn read(value: &[u8], headers: &[(&str, &str)]) -> RecordAndOffset {
        RecordAndOffset {
            record: Record {
                key: Some(b"k".to_vec()),
                value: Some(value.to_vec()),
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                    .collect::<BTreeMap<_, _>>(),
                timestamp: chrono::Utc::now(),
            },
            offset: 42,
        }
    }

    const GO_CALL: &[u8] =
        br#"{"Headers":{},"Url":"http://Target:81/x?y","Data":"body","Topic":"t","Partition":1,"CreateTime":1}"#;

    #[test]
    fn a_refused_destination_is_dead_lettered_at_once_and_not_a_breaker_sample() {
        let refused = AttemptOutcome::Refused("localhost resolves to refused addresses".into());
        let next = decide(&policy(5), &TIERS, 1, Duration::ZERO, &refused, &mut ZeroRng);
        assert_eq!(
            next,
            Next::GiveUp {
                reason: "destination not allowed: localhost resolves to refused addresses".into(),
                last_status: None,
                class: DeadLetterReason::DestinationRefused,
            }
        );
        assert_eq!(breaker_sample(&refused, &policy(5)), None);
    }

    #[test]
    fn a_call_is_due_later_only_when_scheduled_ahead_and_never_past_the_cap() {
        let now = chrono::Utc::now().timestamp_millis();
        let scheduled = |create_time: i64, deliver_at: &str| {
            let value = format!(
                r#"{{"Headers":{{}},"Url":"http://h/","Data":"","Topic":"t","Partition":0,"CreateTime":{create_time},"DeliverAt":{deliver_at}}}"#
            );
            decode("t", 0, read(value.as_bytes(), &[])).unwrap()
        };
        assert_eq!(due_later(&decode("t", 1, read(GO_CALL, &[])).unwrap(), now), None);
        assert_eq!(due_later(&scheduled(now, &(now - 5).to_string()), now), None);
        assert_eq!(due_later(&scheduled(now, &now.to_string()), now), None);
        assert_eq!(
            due_later(&scheduled(now, &(now + 5_000).to_string()), now),
            Some(now + 5_000)
        );
        // Another producer's record cannot hold a call longer than a caller may schedule it,
        // counted from the earlier of its two acceptance times.
        let cap = i64::try_from(MAX_SCHEDULE_MS).unwrap();
        let far = scheduled(now, &i64::MAX.to_string());
        assert_eq!(due_later(&far, now), Some(now + cap));
        let forged = scheduled(i64::MAX, &i64::MAX.to_string());
        let stamped = forged.record.timestamp.timestamp_millis();
        assert_eq!(due_later(&forged, now), Some(stamped + cap));
        let long_ago = scheduled(0, &i64::MAX.to_string());
        assert_eq!(due_later(&long_ago, now), None);
    }

    #[test]
    fn decode_reads_the_call_and_its_progress() {
        let call = decode(
            "t",
            1,
            read(
                GO_CALL,
                &[("bigpipe-call-id", "id-7"), (tiers::ATTEMPTS_HEADER, "3")],
            ),
        )
        .unwrap();
        assert_eq!(call.id, "id-7");
        assert_eq!(call.host, "http://target:81");
        assert_eq!(&call.body[..], b"body");
        assert_eq!(call.progress.attempts, 3);
        assert_eq!((call.partition, call.offset), (1, 42));
    }

    #[test]
    fn a_go_record_without_id_is_named_by_its_position() {
        let call = decode("t", 1, read(GO_CALL, &[])).unwrap();
        assert_eq!(call.id, "t-1-42");
        assert_eq!(call.progress, Progress::default());
    }

    #[test]
    fn decode_refuses_what_is_not_a_call() {
        let bad = decode("t", 0, read(b"\xff\x00", &[])).unwrap_err();
        assert_eq!(bad.error, DecodeError::NotObject);
        assert_eq!(bad.record.offset, 42, "the record is kept for the dead letter");
        let no_url = decode(
            "t",
            0,
            read(
                br#"{"Headers":{},"Data":"","Topic":"t","Partition":0,"CreateTime":1}"#,
                &[],
            ),
        );
        assert_eq!(no_url.unwrap_err().error, DecodeError::Field("Url"));
    }

    fn response(status: u16, retry_after: Option<u64>) -> AttemptOutcome {
        AttemptOutcome::Response {
            status,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn acceptance_time_survives_a_retry_tier() {
        // Main topic: the record's CreateTime, even if the JSON says otherwise.
        assert_eq!(acceptance(false, 1_000, 2_000), 2_000);
        // Tier: the record was stamped when parked; the JSON keeps the acceptance time.
        assert_eq!(acceptance(true, 1_000, 9_000), 1_000);
        // A tier record whose writer set no CreateTime in the JSON.
        assert_eq!(acceptance(true, 0, 9_000), 9_000);
    }

    #[test]
    fn attempts_are_classed_by_the_entry_success_codes() {
        let p = policy(1);
        assert_eq!(
            outcome_class(&response(204, None), &p),
            (Outcome::Delivered, Some(204))
        );
        assert_eq!(
            outcome_class(&response(301, None), &p),
            (Outcome::HttpError, Some(301))
        );
        assert_eq!(
            outcome_class(&response(503, None), &p),
            (Outcome::HttpError, Some(503))
        );
        assert_eq!(
            outcome_class(&AttemptOutcome::Timeout, &p),
            (Outcome::Timeout, None)
        );
        let connect = AttemptOutcome::Connect("refused".into());
        assert_eq!(outcome_class(&connect, &p), (Outcome::ConnectError, None));
        let refused = AttemptOutcome::Refused("loopback".into());
        assert_eq!(outcome_class(&refused, &p), (Outcome::Refused, None));
        let invalid = AttemptOutcome::Invalid("bad url".into());
        assert_eq!(outcome_class(&invalid, &p), (Outcome::Other, None));
        assert_eq!(
            reason_class(&GiveUpReason::Invalid("bad url".into())),
            DeadLetterReason::NotRetryable
        );
    }

    #[test]
    fn decide_delivers_retries_in_place_or_parks() {
        let p = policy(3);
        assert_eq!(
            decide(&p, &TIERS, 1, Duration::ZERO, &response(200, None), &mut ZeroRng),
            Next::Delivered
        );
        // A short jittered backoff waits in the window.
        assert_eq!(
            decide(&p, &TIERS, 1, Duration::ZERO, &response(503, None), &mut OnesRng),
            Next::Retry {
                after: Duration::from_millis(500),
                wait: Wait::InWindow(Duration::from_millis(500))
            }
        );
        // Retry-After 30 s parks in the 60 s tier.
        assert_eq!(
            decide(
                &p,
                &TIERS,
                1,
                Duration::ZERO,
                &response(503, Some(30)),
                &mut ZeroRng
            ),
            Next::Retry {
                after: Duration::from_secs(30),
                wait: Wait::Tier(1)
            }
        );
        // Without tiers the same retry waits in the window.
        assert_eq!(
            decide(&p, &[], 1, Duration::ZERO, &response(503, Some(30)), &mut ZeroRng),
            Next::Retry {
                after: Duration::from_secs(30),
                wait: Wait::InWindow(Duration::from_secs(30))
            }
        );
    }

    #[test]
    fn decide_gives_up_with_the_last_status() {
        let p = policy(1);
        assert_eq!(
            decide(&p, &TIERS, 1, Duration::ZERO, &response(404, None), &mut ZeroRng),
            Next::GiveUp {
                reason: "status 404 is not retryable".into(),
                last_status: Some(404),
                class: DeadLetterReason::NotRetryable,
            }
        );
        let Next::GiveUp {
            reason,
            last_status,
            class,
        } = decide(
            &p,
            &TIERS,
            2,
            Duration::ZERO,
            &AttemptOutcome::Timeout,
            &mut ZeroRng,
        )
        else {
            panic!("the second failure of max_retries 1 gives up");
        };
        assert!(reason.starts_with("attempts exhausted"), "{reason}");
        assert_eq!(last_status, None);
        assert_eq!(class, DeadLetterReason::AttemptsExhausted);
    }

    #[test]
    fn an_open_circuit_parks_then_gives_up_within_the_budget() {
        let mut p = policy(2);
        assert_eq!(
            decide_held(&p, &TIERS, 1, Duration::ZERO),
            Next::Retry {
                after: TIERS[0],
                wait: Wait::Tier(0)
            }
        );
        assert!(matches!(
            decide_held(&p, &TIERS, 3, Duration::ZERO),
            Next::GiveUp { .. }
        ));
        p.retry_for = Duration::from_secs(3600);
        assert!(
            matches!(
                decide_held(&p, &TIERS, 30, Duration::from_secs(60)),
                Next::Retry { .. }
            ),
            "retryFor keeps a held call waiting out the outage"
        );
        assert_eq!(
            decide_held(&p, &[], 99, Duration::MAX),
            Next::Retry {
                after: BREAKER_RECHECK,
                wait: Wait::InWindow(BREAKER_RECHECK)
            },
            "without tiers the breaker's own probing bounds the hold"
        );
    }
}
