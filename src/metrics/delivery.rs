//! What a consumer entry's delivery adds to its counters: attempts per host, the
//! acceptance→delivery latency, dead letters by reason class, circuit state per host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::classes::{DeadLetterReason, Outcome, StatusClass, index};
use super::histogram::{DeliveryBuckets, Histogram};
use super::hosts::HostTable;

/// The delivery metrics of one consumer entry (kept on its `ConsumerStats`).
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    /// Attempts and circuit state per target host, capped.
    pub hosts: HostTable,
    /// Record `CreateTime` to delivery.
    pub latency: Histogram<DeliveryBuckets>,
    dead_letters: [AtomicU64; DeadLetterReason::ALL.len()],
}

impl DeliveryMetrics {
    /// Counts one attempt to `host` that ended with `outcome` (and `status`, if answered).
    pub fn attempt(&self, host: &str, outcome: Outcome, status: Option<u16>) {
        self.hosts.get(host).attempt(outcome, StatusClass::of(status));
    }

    /// A call delivered at `now_ms` whose record Kafka timestamped `created_ms`. A clock
    /// step backwards (or a producer's clock ahead) counts as 0, not as a negative duration.
    pub fn delivered(&self, created_ms: i64, now_ms: i64) {
        let ms = u64::try_from(now_ms.saturating_sub(created_ms)).unwrap_or(0);
        self.latency.observe(Duration::from_millis(ms));
    }

    /// Counts one dead letter written for `reason`.
    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        if let Some(c) = self.dead_letters.get(index(&DeadLetterReason::ALL, &reason)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Dead letters per reason class.
    pub fn dead_letters(&self) -> Vec<(DeadLetterReason, u64)> {
        DeadLetterReason::ALL
            .iter()
            .zip(&self.dead_letters)
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Sets `host`'s breaker state: 0 closed, 1 open, 2 half-open.
    pub fn circuit(&self, host: &str, state: i64) {
        self.hosts.get(host).set_circuit(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_of_a_record_from_the_future_is_zero() {
        let m = DeliveryMetrics::default();
        m.delivered(2_000, 1_000);
        m.delivered(1_000, 1_250);
        assert_eq!(m.latency.count(), 2);
    }

    #[test]
    fn dead_letters_are_counted_per_class() {
        let m = DeliveryMetrics::default();
        m.dead_lettered(DeadLetterReason::Unreadable);
        m.dead_lettered(DeadLetterReason::Unreadable);
        let d = m.dead_letters();
        assert_eq!(d[4], (DeadLetterReason::Unreadable, 2));
        assert_eq!(d.iter().map(|(_, n)| n).sum::<u64>(), 2);
    }
}
