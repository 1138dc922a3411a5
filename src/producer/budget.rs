//! Admission control for the ingest queue: limits in calls and in bytes.
//!
//! A call holds a [`Permit`] from the moment it is accepted until Kafka has
//! acknowledged it (or it finally failed), so the limits bound all the memory
//! that accepted-but-unwritten calls use, wherever they are in the pipeline.
//! Acquiring never waits: a full budget is answered at once with overload, the
//! Go version's "never block the caller".

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Shared limits and usage. Cheap to clone.
#[derive(Debug, Clone)]
pub struct QueueBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Limits are atomics so a reload can change them while calls flow.
    max_calls: AtomicI64,
    max_bytes: AtomicI64,
    calls: Arc<AtomicI64>,
    bytes: Arc<AtomicI64>,
}

/// One accepted call's share of the budget, given back on drop.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    bytes: i64,
}

impl QueueBudget {
    /// Creates a budget. `calls` and `bytes` are the gauges it keeps up to date
    /// (the `/stats` queue gauges).
    pub fn new(max_calls: usize, max_bytes: usize, calls: Arc<AtomicI64>, bytes: Arc<AtomicI64>) -> Self {
        let inner = Inner {
            max_calls: AtomicI64::new(0),
            max_bytes: AtomicI64::new(0),
            calls,
            bytes,
        };
        let budget = Self {
            inner: Arc::new(inner),
        };
        budget.set_limits(max_calls, max_bytes);
        budget
    }

    /// Changes the limits. Calls already admitted keep their permits; a lower
    /// limit only refuses new calls until usage drops below it.
    pub fn set_limits(&self, max_calls: usize, max_bytes: usize) {
        let clamp = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.inner.max_calls.store(clamp(max_calls), Ordering::Release);
        self.inner.max_bytes.store(clamp(max_bytes), Ordering::Release);
    }

    /// Takes room for one call of `bytes` bytes, or `None` when either limit would be exceeded.
    ///
    /// A single call larger than the whole byte limit is refused too; the HTTP
    /// body limit normally stops such calls first.
    pub fn try_acquire(&self, bytes: usize) -> Option<Permit> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let inner = &self.inner;
        if inner.calls.fetch_add(1, Ordering::AcqRel) >= inner.max_calls.load(Ordering::Acquire) {
            inner.calls.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let before = inner.bytes.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > inner.max_bytes.load(Ordering::Acquire) {
            inner.bytes.fetch_sub(bytes, Ordering::AcqRel);
            inner.calls.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit {
            inner: Arc::clone(inner),
            bytes,
        })
    }

    /// Calls currently holding a permit.
    pub fn calls(&self) -> i64 {
        self.inner.calls.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.inner.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(calls: usize, bytes: usize) -> QueueBudget {
        QueueBudget::new(calls, bytes, Arc::default(), Arc::default())
    }

    #[test]
    fn call_limit_is_exact_and_permits_give_back() {
        let b = budget(2, 1000);
        let p1 = b.try_acquire(10).unwrap();
        let _p2 = b.try_acquire(10).unwrap();
        assert!(b.try_acquire(10).is_none());
        drop(p1);
        assert!(b.try_acquire(10).is_some());
    }

    #[test]
    fn byte_limit_refuses_without_leaking_a_call_slot() {
        let b = budget(10, 100);
        let _p = b.try_acquire(60).unwrap();
        assert!(b.try_acquire(50).is_none());
        assert_eq!(b.calls(), 1);
        assert!(b.try_acquire(40).is_some());
    }

    #[test]
    fn limits_change_at_run_time() {
        let b = budget(1, 1000);
        let _p = b.try_acquire(1).unwrap();
        assert!(b.try_acquire(1).is_none());
        b.set_limits(2, 1000);
        assert!(b.try_acquire(1).is_some());
    }

    #[test]
    fn gauges_follow_permits() {
        let calls = Arc::new(AtomicI64::new(0));
        let bytes = Arc::new(AtomicI64::new(0));
        let b = QueueBudget::new(5, 500, Arc::clone(&calls), Arc::clone(&bytes));
        let p = b.try_acquire(123).unwrap();
        assert_eq!(
            (calls.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed)),
            (1, 123)
        );
        drop(p);
        assert_eq!(
            (calls.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed)),
            (0, 0)
        );
    }
}
