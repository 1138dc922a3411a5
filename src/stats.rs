//! Process-wide counters and the `/stats` JSON view.
//!
//! Counters are plain atomics so that the hot paths (HTTP handlers, produce
//! completions) never take a lock. The JSON view keeps the Go version's keys
//! (`serverStats`, `producerStats`, `consumerStats`, `clientStats`) so existing
//! dashboards keep working; everything is rendered from `BTreeMap`s, so keys come
//! out sorted and in the same order on every request (the Go version's
//! `consumerStats` order was random).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

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
    /// Overload refusals per ACL name. A lock, but only taken on refusal; the names are the
    /// configured ACLs, so the map stays small.
    overload_by_acl: std::sync::Mutex<BTreeMap<String, u64>>,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionView {
    /// The last committed position, if any.
    pub committed: Option<i64>,
    /// The partition's high watermark at the last fetch.
    pub high_watermark: i64,
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
    /// Calls written to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Calls read and not finished.
    pub in_flight: AtomicI64,
    /// Calls waiting for a retry.
    pub retries_scheduled: AtomicI64,
    /// Target hosts whose circuit breaker is open or recovering.
    pub circuits_open: AtomicI64,
    /// Calls held back by an open or recovering breaker.
    pub circuit_held: AtomicI64,
    /// Calls written to a retry tier to wait for their next attempt there.
    pub retry_parked: AtomicU64,
    /// Calls a retry tier would not take (too large, Kafka failing): they waited in the window.
    pub retry_park_failed: AtomicU64,
    /// Offsets stepped over in batches that could not be read (each dead-lettered by reference).
    pub unreadable_records: AtomicU64,
    /// Per assigned partition: committed offset and high watermark.
    pub partitions: std::sync::Mutex<BTreeMap<i32, PartitionView>>,
    /// The views of the entry's retry tier lanes (their partitions and depth), shown
    /// inside the entry's object so `consumerStats` keeps one item per entry.
    tiers: std::sync::Mutex<Vec<Arc<ConsumerStats>>>,
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

    /// Per partition: committed, high watermark and lag; and the summed lag.
    fn partitions_json(&self) -> (BTreeMap<String, Value>, i64) {
        let mut total = 0;
        let partitions = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(p, v)| {
                let lag = v.committed.map(|c| (v.high_watermark - c).max(0));
                total += lag.unwrap_or(0);
                (
                    p.to_string(),
                    json!({"committed": v.committed, "highWatermark": v.high_watermark, "lag": lag}),
                )
            })
            .collect();
        (partitions, total)
    }

    fn to_json(&self) -> Value {
        let (partitions, _) = self.partitions_json();
        let tiers: Vec<Value> = self
            .tiers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|t| {
                let (partitions, waiting) = t.partitions_json();
                json!({
                    "groupId": t.group_id,
                    "inFlight": t.in_flight.load(Ordering::Relaxed),
                    "partitions": partitions,
                    "topic": t.topic,
                    "waiting": waiting,
                })
            })
            .collect();
        json!({
            "retryTiers": tiers,
            "circuitHeld": self.circuit_held.load(Ordering::Relaxed),
            "circuitsOpen": self.circuits_open.load(Ordering::Relaxed),
            "deadLettered": load(&self.dead_lettered),
            "groupId": self.group_id,
            "handleMessage": load(&self.handle_message),
            "inFlight": self.in_flight.load(Ordering::Relaxed),
            "invalidMessage": load(&self.invalid_message),
            "partitions": partitions,
            "retriesScheduled": self.retries_scheduled.load(Ordering::Relaxed),
            "retryParked": load(&self.retry_parked),
            "retryParkFailed": load(&self.retry_park_failed),
            "unreadableRecords": load(&self.unreadable_records),
            "rpcFail": load(&self.rpc_fail),
            "rpcRetries": load(&self.rpc_retries),
            "rpcSuccess": load(&self.rpc_success),
            "rpcTotal": load(&self.rpc_total),
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
        list.push(Arc::clone(&created));
        created
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
        json!({
            "clientStats": client,
            "consumerStats": consumer_list,
            "producerStats": producer,
            "serverStats": {
                "acceptedCall": load(&self.server.accepted),
                "configReloads": load(&self.reloads),
                "configReloadsRejected": load(&self.reloads_rejected),
                "logDropped": self.log_dropped.load(Ordering::Relaxed),
                "overloadAclShare": load(&self.server.overload_acl_share),
                "overloadByAcl": self.server.overload_by_acl(),
                "overloadCall": load(&self.server.overload),
                "overloadQueueFull": load(&self.server.overload_queue_full),
                "queuedBytes": self.queue.bytes.load(Ordering::Relaxed),
                "queuedCalls": self.queue.calls.load(Ordering::Relaxed),
                "receivedCall": load(&self.server.received),
                "rejectedCall": load(&self.server.rejected),
                "tooLargeCall": load(&self.server.too_large),
            },
        })
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
