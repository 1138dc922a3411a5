//! Process-wide counters and the `/stats` JSON view.
//!
//! Counters are plain atomics so that the hot paths (HTTP handlers, produce
//! completions) never take a lock. The JSON view keeps the Go version's keys
//! (`serverStats`, `producerStats`, `consumerStats`, `clientStats`) so existing
//! dashboards keep working; everything is rendered from `BTreeMap`s, so keys come
//! out sorted and in the same order on every request (the Go version's
//! `consumerStats` order was random).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::metrics::delivery::DeliveryMetrics;
use crate::metrics::histogram::{Histogram, ProduceBuckets};
use crate::metrics::hosts::DEFAULT_MAX_HOSTS;
use crate::metrics::intake::IntakeMetrics;

/// Counters of the HTTP intake (`serverStats` in `/stats`).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Every `/rpc/call` request, counted on entry (Go: `receivedCall`).
    pub received: AtomicU64,
    /// Calls taken into the ingest queue (Go: `acceptedCall`).
    pub accepted: AtomicU64,
    /// Calls refused because the ingest queue was full (Go: `overloadCall`).
    pub overload: AtomicU64,
    /// Calls refused for bad input, a failed ACL check or an oversize body.
    pub rejected: AtomicU64,
    /// Of `overload`: refused because the whole ingest queue was full.
    pub overload_queue_full: AtomicU64,
    /// Of `overload`: refused because the caller's ACL had used its share of the queue.
    pub overload_acl_share: AtomicU64,
    /// Of `rejected`: calls whose record could never be written to Kafka (413 `消息过大`).
    pub too_large: AtomicU64,
    /// Of `rejected`: calls whose URL the destination policy refused (403 `目标地址不允许`).
    pub destination_refused: AtomicU64,
    /// Of `rejected`: failed ACL checks (unknown name or wrong secret, 403).
    pub acl_refused: AtomicU64,
    /// Calls answered 429 without a check because their source failed too many ACL checks.
    pub throttled: AtomicU64,
    /// Calls answered 429 because their ACL was over its quota (`rate`, `burst`).
    pub quota_refused: AtomicU64,
    /// Quota refusals per ACL name (configured names only, so the map stays small).
    quota_by_acl: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Overload refusals per ACL name. A lock, but only taken on refusal; the names are the
    /// configured ACLs, so the map stays small.
    overload_by_acl: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Accepted and refused calls per ACL, for `/metrics`.
    pub intake: IntakeMetrics,
    /// Repeats of an idempotency key answered with the first call's id (nothing written).
    pub idempotent_replays: AtomicU64,
    /// Repeats answered 409 because the key's first call was still on its way.
    pub idempotent_conflicts: AtomicU64,
    /// Calls with a key answered 503 because the key could not be decided in time.
    pub idempotency_unavailable: AtomicU64,
    /// Claims that took their key (calls written under an idempotency key).
    pub idempotent_claims: AtomicU64,
    /// `done`/`released` claim records Kafka did not take (the key then holds for the
    /// pending bound).
    pub idempotency_settle_failed: AtomicU64,
    /// Idempotency keys held in memory (a gauge).
    pub idempotency_keys: AtomicU64,
    /// Keys forgotten before their window ended, because of `max.keys`.
    pub idempotency_evicted: AtomicU64,
}

impl ServerStats {
    /// Counts one overload refusal of a call from `acl`.
    pub fn overloaded_acl(&self, acl: &str) {
        let mut map = self
            .overload_by_acl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get_mut(acl) {
            Some(n) => *n += 1,
            None => {
                map.insert(acl.to_owned(), 1);
            }
        }
    }

    /// Counts one quota refusal of a call from `acl`.
    pub fn quota_refused_acl(&self, acl: &str) {
        inc(&self.quota_refused);
        let mut map = self
            .quota_by_acl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(acl.to_owned()).or_default() += 1;
    }

    fn quota_by_acl(&self) -> BTreeMap<String, u64> {
        self.quota_by_acl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn overload_by_acl(&self) -> BTreeMap<String, u64> {
        self.overload_by_acl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Per-topic producer counters (`producerStats[topic]` in `/stats`).
#[derive(Debug, Default)]
pub struct ProducerStats {
    /// Records Kafka acknowledged (Go: `deliverySuccess`).
    pub delivery_success: AtomicU64,
    /// Records that still failed after the retry budget (Go: `deliveryFail`).
    pub delivery_fail: AtomicU64,
    /// Produce attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Records Kafka (or our batch limit) refused as too large: failed at once, never
    /// retried; also counted in `delivery_fail`.
    pub too_large: AtomicU64,
    /// Send to acknowledgement of the records Kafka took, for `/metrics`.
    pub duration: Histogram<ProduceBuckets>,
}

/// Gauges of the in-memory ingest queue.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Calls accepted and not yet acknowledged by Kafka (or failed).
    pub calls: Arc<AtomicI64>,
    /// Bytes of those calls' records.
    pub bytes: Arc<AtomicI64>,
}

/// What `/stats` shows of one assigned partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionView {
    /// The last committed position, if any.
    pub committed: Option<i64>,
    /// The partition's high watermark at the last fetch.
    pub high_watermark: i64,
    /// The next position to commit: every call below it has finished (`None` until the
    /// start position is known). It leads `committed` by at most one commit interval.
    pub position: Option<i64>,
    /// The partition's log-end offset, asked of Kafka independently of the fetch (so a
    /// partition whose fetch fails still shows its lag).
    pub log_end_offset: Option<i64>,
    /// The last fetch failure, if any (kept after recovery; its time tells whether it is news).
    pub last_error: Option<FetchFailure>,
    /// Set while the partition is stalled (see `consumer::stall`).
    pub stall: Option<Stall>,
    /// Calls read and not finished, as of the last commit tick.
    pub in_flight: usize,
}

impl PartitionView {
    /// Records behind the log end: from the committed offset (else the position) to the
    /// log-end offset (else the last fetch's high watermark, until the first log-end query).
    pub fn lag(&self) -> Option<i64> {
        let end = self.log_end_offset.unwrap_or(self.high_watermark);
        self.committed.or(self.position).map(|c| (end - c).max(0))
    }
}

/// A fetch of the partition failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// The error, as logged.
    pub message: String,
    /// When it happened.
    pub at: Instant,
}

/// A partition whose position has not moved for the entry's `stallAfter` while behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// Since when the position has not moved.
    pub since: Instant,
    /// Why, as best known (the last fetch error when there is a recent one).
    pub reason: String,
}

/// One stalled partition, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledPartition {
    /// The entry's group id.
    pub group_id: String,
    /// The entry's topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// How long it has not moved.
    pub stalled_for: Duration,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for StalledPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "group {} topic {} partition {} stalled for {} s: {}",
            self.group_id,
            self.topic,
            self.partition,
            self.stalled_for.as_secs(),
            self.reason
        )
    }
}

/// Counters of one consumer entry (`consumerStats[i]`, and summed per topic into `clientStats`).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// The entry's group id.
    pub group_id: String,
    /// The entry's topic.
    pub topic: String,
    /// Records taken from Kafka (Go: `handleMessage`).
    pub handle_message: AtomicU64,
    /// Records that are not valid calls (Go: `invalidMessage`).
    pub invalid_message: AtomicU64,
    /// Calls started (Go: `rpcTotal`).
    pub rpc_total: AtomicU64,
    /// Calls delivered (Go: `rpcSuccess`).
    pub rpc_success: AtomicU64,
    /// Calls that used every attempt or were not retryable (Go: `rpcFail`).
    pub rpc_fail: AtomicU64,
    /// Attempts after the first (Go: `rpcRetries`).
    pub rpc_retries: AtomicU64,
    /// Calls written to the dead-letter topic (with or without their value).
    pub dead_lettered: AtomicU64,
    /// Of those, calls written without their value (Kafka refused the full letter as too large).
    pub dead_lettered_without_value: AtomicU64,
    /// Calls whose dead letter could not be written at all: finished, reported in the log.
    pub dead_letter_failed: AtomicU64,
    /// Calls read and not finished.
    pub in_flight: AtomicI64,
    /// Calls waiting for a retry.
    pub retries_scheduled: AtomicI64,
    /// Target hosts whose circuit breaker is open or recovering.
    pub circuits_open: AtomicI64,
    /// Calls held back by an open or recovering breaker.
    pub circuit_held: AtomicI64,
    /// Calls written to a retry tier to wait there for their next attempt or, scheduled
    /// calls, for their due time.
    pub retry_parked: AtomicU64,
    /// Callback calls written (the final outcome of calls that asked for one).
    pub callbacks: AtomicU64,
    /// Callbacks that could not be written within `deadLetterTimeout`: reported in the log.
    pub callback_failed: AtomicU64,
    /// Scheduled calls read (`DeliverAt` later than their first read).
    pub scheduled: AtomicU64,
    /// Scheduled calls this process holds until they are due (in the partition's window or
    /// in a retry tier's); the others wait in the tier topics (their lag).
    pub scheduled_waiting: AtomicI64,
    /// Calls a retry tier would not take (too large, Kafka failing): they waited in the window.
    pub retry_park_failed: AtomicU64,
    /// Offsets stepped over in batches that could not be read (each dead-lettered by reference).
    pub unreadable_records: AtomicU64,
    /// The entry is paused for its whole group by an operator (the control topic's
    /// `pause/<group>/<topic>`): its fetch loops take no new records.
    pub paused: AtomicBool,
    /// Per assigned partition: offsets, last fetch error, stall.
    pub partitions: std::sync::Mutex<BTreeMap<i32, PartitionView>>,
    /// The views of the entry's retry tier lanes (their partitions and depth), shown
    /// inside the entry's object so `consumerStats` keeps one item per entry.
    tiers: std::sync::Mutex<Vec<Arc<ConsumerStats>>>,
    /// The group generation of the last assignment (0 before the first).
    pub generation: AtomicI64,
    /// Members in the last join as this process knows them (the leader sees all).
    pub members: AtomicI64,
    /// Partitions of the last assignment.
    pub assigned_partitions: AtomicI64,
    /// Assignments received: one per rebalance this process took part in.
    pub rebalances: AtomicU64,
    /// Attempts per host, delivery latency, dead letters by class, circuits, for `/metrics`.
    pub delivery: DeliveryMetrics,
}

impl ConsumerStats {
    /// Updates the view of `partition`.
    pub fn set_partition(&self, partition: i32, update: impl FnOnce(&mut PartitionView)) {
        let mut map = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        update(map.entry(partition).or_default());
    }

    /// Updates the view of `partition` only if it is still assigned (for tasks that may
    /// finish after a revoke, which must not bring the partition back).
    pub fn update_partition(&self, partition: i32, update: impl FnOnce(&mut PartitionView)) {
        let mut map = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(view) = map.get_mut(&partition) {
            update(view);
        }
    }

    /// Records a failed fetch of `partition`: the reason a stall shows.
    pub fn fetch_failed(&self, partition: i32, error: &dyn std::fmt::Display) {
        let failure = FetchFailure {
            message: error.to_string(),
            at: Instant::now(),
        };
        self.set_partition(partition, |v| v.last_error = Some(failure));
    }

    /// Records an assignment: the generation, the members known, how many partitions.
    pub fn assigned(&self, generation: i32, members: usize, partitions: usize) {
        self.generation.store(i64::from(generation), Ordering::Relaxed);
        self.members
            .store(i64::try_from(members).unwrap_or(i64::MAX), Ordering::Relaxed);
        self.assigned_partitions
            .store(i64::try_from(partitions).unwrap_or(i64::MAX), Ordering::Relaxed);
        inc(&self.rebalances);
    }

    /// A copy of the assigned partitions' views.
    pub fn partition_views(&self) -> BTreeMap<i32, PartitionView> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Forgets partitions no longer assigned.
    pub fn remove_partition(&self, partition: i32) {
        let mut map = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&partition);
    }

    /// The view of this entry's retry tier lane (`group_id`, `topic`), created on first
    /// use; a reloaded entry keeps it.
    pub fn tier(&self, group_id: &str, topic: &str) -> Arc<ConsumerStats> {
        let mut tiers = self
            .tiers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = tiers.iter().find(|t| t.group_id == group_id && t.topic == topic) {
            return Arc::clone(found);
        }
        let created = Arc::new(ConsumerStats {
            group_id: group_id.to_owned(),
            topic: topic.to_owned(),
            ..Default::default()
        });
        tiers.push(Arc::clone(&created));
        created
    }

    /// The stalled partitions of this entry and of its retry tiers.
    pub fn stalled(&self, now: Instant) -> Vec<StalledPartition> {
        let mut out: Vec<StalledPartition> = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(p, v)| {
                let stall = v.stall.as_ref()?;
                Some(StalledPartition {
                    group_id: self.group_id.clone(),
                    topic: self.topic.clone(),
                    partition: *p,
                    stalled_for: now.saturating_duration_since(stall.since),
                    reason: stall.reason.clone(),
                })
            })
            .collect();
        for tier in self.tier_list() {
            out.extend(tier.stalled(now));
        }
        out
    }

    /// The views of the entry's retry tier lanes.
    pub fn tier_list(&self) -> Vec<Arc<ConsumerStats>> {
        self.tiers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Per partition: offsets, lag and stall; and the summed lag and stalled count.
    fn partitions_json(&self, now: Instant) -> (BTreeMap<String, Value>, i64, u64) {
        let mut total = 0;
        let mut stalled = 0u64;
        let partitions = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(p, v)| {
                total += v.lag().unwrap_or(0);
                stalled += u64::from(v.stall.is_some());
                let stalled_for = v.stall.as_ref().map(|s| {
                    u64::try_from(now.saturating_duration_since(s.since).as_millis()).unwrap_or(u64::MAX)
                });
                (
                    p.to_string(),
                    json!({
                        "committed": v.committed,
                        "highWatermark": v.high_watermark,
                        "lag": v.lag(),
                        "lastFetchError": v.last_error.as_ref().map(|e| &e.message),
                        "logEndOffset": v.log_end_offset,
                        "position": v.position,
                        "stalled": v.stall.is_some(),
                        "stalledForMs": stalled_for,
                        "stalledReason": v.stall.as_ref().map(|s| &s.reason),
                    }),
                )
            })
            .collect();
        (partitions, total, stalled)
    }

    fn to_json(&self) -> Value {
        let now = Instant::now();
        let (partitions, _, mut stalled) = self.partitions_json(now);
        let tiers: Vec<Value> = self
            .tier_list()
            .iter()
            .map(|t| {
                let (partitions, waiting, tier_stalled) = t.partitions_json(now);
                stalled += tier_stalled;
                json!({
                    "groupId": t.group_id,
                    "inFlight": t.in_flight.load(Ordering::Relaxed),
                    "partitions": partitions,
                    "stalledPartitions": tier_stalled,
                    "topic": t.topic,
                    "waiting": waiting,
                })
            })
            .collect();
        json!({
            "retryTiers": tiers,
            "callbackFailed": load(&self.callback_failed),
            "callbacks": load(&self.callbacks),
            "circuitHeld": self.circuit_held.load(Ordering::Relaxed),
            "circuitsOpen": self.circuits_open.load(Ordering::Relaxed),
            "deadLetterFailed": load(&self.dead_letter_failed),
            "deadLettered": load(&self.dead_lettered),
            "deadLetteredWithoutValue": load(&self.dead_lettered_without_value),
            "groupId": self.group_id,
            "handleMessage": load(&self.handle_message),
            "inFlight": self.in_flight.load(Ordering::Relaxed),
            "invalidMessage": load(&self.invalid_message),
            "partitions": partitions,
            "paused": self.paused.load(Ordering::Relaxed),
            "retriesScheduled": self.retries_scheduled.load(Ordering::Relaxed),
            "retryParked": load(&self.retry_parked),
            "retryParkFailed": load(&self.retry_park_failed),
            "scheduled": load(&self.scheduled),
            "scheduledWaiting": self.scheduled_waiting.load(Ordering::Relaxed),
            "unreadableRecords": load(&self.unreadable_records),
            "rpcFail": load(&self.rpc_fail),
            "rpcRetries": load(&self.rpc_retries),
            "rpcSuccess": load(&self.rpc_success),
            "rpcTotal": load(&self.rpc_total),
            "stalledPartitions": stalled,
            "topic": self.topic,
        })
    }
}

/// The registry of every counter. One per process, shared through `Arc`.
#[derive(Debug, Default)]
pub struct Stats {
    /// HTTP intake counters.
    pub server: ServerStats,
    /// Ingest queue gauges.
    pub queue: QueueStats,
    /// Log lines dropped because the async log queue was full.
    pub log_dropped: Arc<AtomicU64>,
    /// Config reloads applied.
    pub reloads: AtomicU64,
    /// Config reloads rejected (the old config stayed).
    pub reloads_rejected: AtomicU64,
    /// `metrics.max_hosts`: target hosts with their own label per entry (0 = the default).
    pub max_hosts: std::sync::atomic::AtomicUsize,
    producer: RwLock<BTreeMap<String, Arc<ProducerStats>>>,
    consumers: RwLock<Vec<Arc<ConsumerStats>>>,
}

impl Stats {
    /// Creates a registry with producer counters for `topics` already present,
    /// so `/stats` lists every configured topic from the start, as the Go version did.
    pub fn new<'a>(topics: impl IntoIterator<Item = &'a str>) -> Self {
        let stats = Self::default();
        for topic in topics {
            stats.producer(topic);
        }
        stats
    }

    /// Returns the producer counters of `topic`, creating them on first use.
    ///
    /// Unknown topics get counters instead of crashing (the Go version
    /// dereferenced a nil map entry and panicked).
    pub fn producer(&self, topic: &str) -> Arc<ProducerStats> {
        if let Some(found) = read(&self.producer).get(topic) {
            return Arc::clone(found);
        }
        let mut map = write(&self.producer);
        Arc::clone(map.entry(topic.to_owned()).or_default())
    }

    /// Returns the counters of the consumer entry (`group_id`, `topic`),
    /// creating them on first use; a reloaded entry keeps its counters.
    pub fn consumer(&self, group_id: &str, topic: &str) -> Arc<ConsumerStats> {
        let found = read(&self.consumers)
            .iter()
            .find(|c| c.group_id == group_id && c.topic == topic)
            .cloned();
        if let Some(found) = found {
            return found;
        }
        let mut list = write(&self.consumers);
        if let Some(found) = list.iter().find(|c| c.group_id == group_id && c.topic == topic) {
            return Arc::clone(found);
        }
        let created = Arc::new(ConsumerStats {
            group_id: group_id.to_owned(),
            topic: topic.to_owned(),
            ..Default::default()
        });
        created.delivery.hosts.set_cap(self.host_cap());
        list.push(Arc::clone(&created));
        created
    }

    /// The host cap new entries get.
    fn host_cap(&self) -> usize {
        match self.max_hosts.load(Ordering::Relaxed) {
            0 => DEFAULT_MAX_HOSTS,
            n => n,
        }
    }

    /// Sets `metrics.max_hosts` for every entry (hosts already labelled keep their label).
    pub fn set_max_hosts(&self, cap: usize) {
        self.max_hosts.store(cap, Ordering::Relaxed);
        for c in read(&self.consumers).iter() {
            c.delivery.hosts.set_cap(self.host_cap());
        }
    }

    /// The producer counters of every topic, sorted by topic.
    pub fn producers(&self) -> Vec<(String, Arc<ProducerStats>)> {
        read(&self.producer)
            .iter()
            .map(|(t, p)| (t.clone(), Arc::clone(p)))
            .collect()
    }

    /// The counters of every consumer entry, in creation order.
    pub fn consumers(&self) -> Vec<Arc<ConsumerStats>> {
        read(&self.consumers).clone()
    }

    /// Every stalled partition of every consumer entry, for `/readyz`.
    pub fn stalled_partitions(&self) -> Vec<StalledPartition> {
        let now = Instant::now();
        read(&self.consumers)
            .iter()
            .flat_map(|c| c.stalled(now))
            .collect()
    }

    /// Renders the `/stats` `data` object.
    pub fn to_json(&self) -> Value {
        let producers = read(&self.producer);
        let producer: BTreeMap<&str, Value> = producers
            .iter()
            .map(|(topic, s)| {
                (
                    topic.as_str(),
                    json!({
                        "deliveryFail": load(&s.delivery_fail),
                        "deliveryRetries": load(&s.retries),
                        "deliverySuccess": load(&s.delivery_success),
                        "tooLarge": load(&s.too_large),
                    }),
                )
            })
            .collect();
        let consumers = read(&self.consumers);
        // clientStats is keyed by topic, as in the Go version: all groups on a topic add up.
        let mut client: BTreeMap<&str, [u64; 5]> = BTreeMap::new();
        for c in consumers.iter() {
            let sums = client.entry(c.topic.as_str()).or_default();
            // Go: 1 while a call waits on the breaker; here, while any target's breaker is open.
            if c.circuits_open.load(Ordering::Relaxed) > 0 {
                sums[4] = 1;
            }
            for (sum, counter) in
                sums.iter_mut()
                    .zip([&c.rpc_fail, &c.rpc_retries, &c.rpc_success, &c.rpc_total])
            {
                *sum += load(counter);
            }
        }
        let client: BTreeMap<&str, Value> = client
            .into_iter()
            .map(|(topic, [fail, retries, success, total, broken])| {
                (
                    topic,
                    json!({"circuitIsBreak": broken, "rpcFail": fail, "rpcRetries": retries,
                           "rpcSuccess": success, "rpcTotal": total}),
                )
            })
            .collect();
        let consumer_list: Vec<Value> = consumers.iter().map(|c| c.to_json()).collect();
        let mut doc = json!({
            "clientStats": client,
            "consumerStats": consumer_list,
            "producerStats": producer,
            "serverStats": {
                "acceptedCall": load(&self.server.accepted),
                "aclRefused": load(&self.server.acl_refused),
                "configReloads": load(&self.reloads),
                "configReloadsRejected": load(&self.reloads_rejected),
                "destinationRefused": load(&self.server.destination_refused),
                "idempotencyEvicted": load(&self.server.idempotency_evicted),
                "idempotencyKeys": load(&self.server.idempotency_keys),
                "idempotencySettleFailed": load(&self.server.idempotency_settle_failed),
                "idempotencyUnavailable": load(&self.server.idempotency_unavailable),
                "idempotentClaims": load(&self.server.idempotent_claims),
                "idempotentConflicts": load(&self.server.idempotent_conflicts),
                "idempotentReplays": load(&self.server.idempotent_replays),
                "logDropped": self.log_dropped.load(Ordering::Relaxed),
                "overloadAclShare": load(&self.server.overload_acl_share),
                "overloadByAcl": self.server.overload_by_acl(),
                "overloadCall": load(&self.server.overload),
                "overloadQueueFull": load(&self.server.overload_queue_full),
                "queuedBytes": self.queue.bytes.load(Ordering::Relaxed),
                "quotaRefused": load(&self.server.quota_refused),
                "quotaRefusedByAcl": self.server.quota_by_acl(),
                "queuedCalls": self.queue.calls.load(Ordering::Relaxed),
                "receivedCall": load(&self.server.received),
                "rejectedCall": load(&self.server.rejected),
                "throttledCall": load(&self.server.throttled),
                "tooLargeCall": load(&self.server.too_large),
            },
        });
        // Only the bench-only `alloc-stats` build has this key (allocations per call in `make bench`).
        if let (Some(c), Some(map)) = (crate::alloc::counts(), doc.as_object_mut()) {
            map.insert(
                "allocStats".to_owned(),
                json!({"allocations": c.allocations, "reallocations": c.reallocations, "bytes": c.bytes}),
            );
        }
        doc
    }
}

/// Adds one to a counter. Relaxed ordering: counters are independent and only read for display.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

// A poisoned lock only means another thread panicked while holding it; the map
// itself is always consistent (insert-only), so keep serving it.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_topics_are_listed_before_any_traffic() {
        let stats = Stats::new(["b", "a"]);
        let v = stats.to_json();
        let keys: Vec<_> = v["producerStats"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(v["producerStats"]["a"]["deliverySuccess"], 0);
    }

    #[test]
    fn unknown_topic_gets_counters_instead_of_a_crash() {
        let stats = Stats::new(["a"]);
        inc(&stats.producer("zzz").delivery_fail);
        assert_eq!(stats.to_json()["producerStats"]["zzz"]["deliveryFail"], 1);
    }

    #[test]
    fn client_stats_add_up_the_groups_of_a_topic() {
        let stats = Stats::new([]);
        let g1 = stats.consumer("G1", "test");
        let g2 = stats.consumer("G2", "test");
        assert!(Arc::ptr_eq(&g1, &stats.consumer("G1", "test")));
        for _ in 0..11 {
            inc(&g1.rpc_total);
            inc(&g2.rpc_total);
        }
        inc(&g2.handle_message);
        g1.set_partition(0, |v| {
            v.committed = Some(5);
            v.high_watermark = 9;
        });
        let v = stats.to_json();
        assert_eq!(v["clientStats"]["test"]["rpcTotal"], 22);
        assert_eq!(v["consumerStats"][0]["groupId"], "G1");
        assert_eq!(v["consumerStats"][1]["handleMessage"], 1);
        assert_eq!(v["consumerStats"][0]["partitions"]["0"]["lag"], 4);
        assert_eq!(v["clientStats"]["test"]["circuitIsBreak"], 0);
    }

    #[test]
    fn circuit_is_break_while_any_group_of_the_topic_has_an_open_circuit() {
        let stats = Stats::new([]);
        stats.consumer("G1", "a");
        let g2 = stats.consumer("G2", "a");
        stats.consumer("G3", "b");
        g2.circuits_open.store(2, Ordering::Relaxed);
        g2.circuit_held.store(7, Ordering::Relaxed);
        let v = stats.to_json();
        assert_eq!(v["clientStats"]["a"]["circuitIsBreak"], 1);
        assert_eq!(v["clientStats"]["b"]["circuitIsBreak"], 0);
        assert_eq!(v["consumerStats"][1]["circuitsOpen"], 2);
        assert_eq!(v["consumerStats"][1]["circuitHeld"], 7);
    }

    #[test]
    fn overload_refusals_are_counted_per_acl() {
        let stats = Stats::new([]);
        stats.server.overloaded_acl("a");
        stats.server.overloaded_acl("a");
        stats.server.overloaded_acl("b");
        let v = stats.to_json();
        assert_eq!(v["serverStats"]["overloadByAcl"], json!({"a": 2, "b": 1}));
    }

    #[test]
    fn lag_comes_from_the_log_end_and_stalls_are_counted() {
        let stats = Stats::new([]);
        let g = stats.consumer("G1", "t");
        let since = Instant::now() - Duration::from_secs(90);
        g.set_partition(0, |v| {
            v.committed = Some(5);
            // The last fetch saw 5; the log has moved on to 12 since (the fetch fails).
            v.high_watermark = 5;
            v.log_end_offset = Some(12);
            v.stall = Some(Stall {
                since,
                reason: "fetch failing".into(),
            });
        });
        g.set_partition(1, |v| v.high_watermark = 3);
        let v = stats.to_json();
        let c = &v["consumerStats"][0];
        assert_eq!(c["stalledPartitions"], 1);
        assert_eq!(c["deadLetterFailed"], 0);
        let p0 = &c["partitions"]["0"];
        assert_eq!(p0["lag"], 7);
        assert_eq!(p0["logEndOffset"], 12);
        assert_eq!(p0["highWatermark"], 5);
        assert_eq!(p0["stalled"], true);
        assert_eq!(p0["stalledReason"], "fetch failing");
        assert!(p0["stalledForMs"].as_u64().unwrap() >= 90_000);
        let p1 = &c["partitions"]["1"];
        assert_eq!(
            (p1["stalled"].clone(), p1["lag"].clone()),
            (json!(false), Value::Null)
        );
        let stalled = stats.stalled_partitions();
        assert_eq!(stalled.len(), 1);
        assert!(
            stalled[0]
                .to_string()
                .starts_with("group G1 topic t partition 0 stalled for 9"),
            "{}",
            stalled[0]
        );
    }

    #[test]
    fn late_updates_do_not_bring_a_revoked_partition_back() {
        let c = ConsumerStats::default();
        c.set_partition(3, |v| v.committed = Some(1));
        c.remove_partition(3);
        c.update_partition(3, |v| v.log_end_offset = Some(9));
        assert!(c.partition_views().is_empty());
        c.fetch_failed(4, &"boom");
        assert_eq!(
            c.partition_views()[&4].last_error.as_ref().unwrap().message,
            "boom"
        );
    }

    #[test]
    fn go_keys_are_present_and_ordered() {
        let stats = Stats::new([]);
        inc(&stats.server.received);
        inc(&stats.server.accepted);
        let text = serde_json::to_string(&stats.to_json()).unwrap();
        assert!(text.starts_with(
            r#"{"clientStats":{},"consumerStats":[],"producerStats":{},"serverStats":{"acceptedCall":1,"#
        ));
        assert!(text.contains(r#""overloadCall":0"#));
        assert!(text.contains(r#""overloadAclShare":0,"overloadByAcl":{},"overloadCall":0"#));
        assert!(text.contains(r#""receivedCall":1"#));
    }
}
