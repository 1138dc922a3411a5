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
}

/// Gauges of the in-memory ingest queue.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Calls accepted and not yet acknowledged by Kafka (or failed).
    pub calls: Arc<AtomicI64>,
    /// Bytes of those calls' records.
    pub bytes: Arc<AtomicI64>,
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
    producer: RwLock<BTreeMap<String, Arc<ProducerStats>>>,
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
                    }),
                )
            })
            .collect();
        json!({
            "clientStats": {},
            "consumerStats": [],
            "producerStats": producer,
            "serverStats": {
                "acceptedCall": load(&self.server.accepted),
                "logDropped": self.log_dropped.load(Ordering::Relaxed),
                "overloadCall": load(&self.server.overload),
                "queuedBytes": self.queue.bytes.load(Ordering::Relaxed),
                "queuedCalls": self.queue.calls.load(Ordering::Relaxed),
                "receivedCall": load(&self.server.received),
                "rejectedCall": load(&self.server.rejected),
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
    fn go_keys_are_present_and_ordered() {
        let stats = Stats::new([]);
        inc(&stats.server.received);
        inc(&stats.server.accepted);
        let text = serde_json::to_string(&stats.to_json()).unwrap();
        assert!(text.starts_with(
            r#"{"clientStats":{},"consumerStats":[],"producerStats":{},"serverStats":{"acceptedCall":1,"#
        ));
        assert!(text.contains(r#""overloadCall":0"#));
        assert!(text.contains(r#""receivedCall":1"#));
    }
}
