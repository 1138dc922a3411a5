//! Per-ACL ingest quota: a GCRA (generic cell rate algorithm) on one atomic.
//!
//! GCRA is a token bucket written as a single timestamp, the theoretical arrival time (TAT) of
//! the next call: a call at `now` is allowed when `TAT - now <= (burst - 1) * interval`, and then
//! pushes TAT one interval further. One `u64` holds the whole state, so the check is one
//! compare-and-swap, never a lock and never a wait: a call over quota is refused at once with
//! the time until it would fit (leaky-bucket's `acquire` waits instead, which is the wrong
//! answer for an HTTP front end).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The pure rule: given the state `tat` and the time `now` (both ns on the same clock), the new
/// state if the call fits, else how long until it would.
pub fn decide(tat: u64, now: u64, interval: u64, tolerance: u64) -> Result<u64, Duration> {
    let start = tat.max(now);
    let ahead = start - now;
    if ahead > tolerance {
        return Err(Duration::from_nanos(ahead - tolerance));
    }
    Ok(start.saturating_add(interval))
}

/// One ACL's quota: `rate` calls per second sustained, `burst` at once.
#[derive(Debug)]
pub struct Quota {
    rate: f64,
    burst: u32,
    /// Nanoseconds between calls at the sustained rate.
    interval: u64,
    /// How far ahead of `now` the TAT may run: `(burst - 1) * interval`.
    tolerance: u64,
    /// Theoretical arrival time, ns since `epoch`.
    tat: AtomicU64,
    epoch: Instant,
}

impl Quota {
    /// A full quota (a whole burst is available at once).
    pub fn new(rate: f64, burst: u32) -> Self {
        // Config bounds (0.001..=1e6 calls/s) keep this within 1 ns..1000 s.
        let interval = (1e9 / rate).round().max(1.0) as u64;
        Self {
            rate,
            burst,
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1) - 1)),
            tat: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// True if this quota has these settings (a reload keeps the state of an unchanged quota).
    pub fn same_limits(&self, rate: f64, burst: u32) -> bool {
        self.rate == rate && self.burst == burst
    }

    /// Takes one call's room now, or says how long until there is some.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.try_acquire_at(Instant::now())
    }

    /// [`Quota::try_acquire`] at an explicit time (for tests).
    pub fn try_acquire_at(&self, now: Instant) -> Result<(), Duration> {
        let now = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = decide(tat, now, self.interval, self.tolerance)?;
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

/// A wait as whole seconds for `Retry-After`: rounded up, at least 1 (0 would invite an
/// immediate retry that is refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_passes_then_the_next_call_waits_one_interval() {
        // 10/s, burst 3: three at once, the fourth 100 ms later.
        let q = Quota::new(10.0, 3);
        let t0 = q.epoch + Duration::from_secs(5);
        for _ in 0..3 {
            assert_eq!(q.try_acquire_at(t0), Ok(()));
        }
        assert_eq!(q.try_acquire_at(t0), Err(100 * MS));
        assert_eq!(q.try_acquire_at(t0 + 40 * MS), Err(60 * MS));
        assert_eq!(q.try_acquire_at(t0 + 100 * MS), Ok(()));
        assert!(q.try_acquire_at(t0 + 100 * MS).is_err());
    }

    #[test]
    fn the_sustained_rate_is_the_configured_one() {
        // 2/s, burst 1, for 10 s of one attempt per ms: 20 calls + the first.
        let q = Quota::new(2.0, 1);
        let t0 = q.epoch;
        let allowed = (0..10_000)
            .filter(|i| q.try_acquire_at(t0 + *i * MS).is_ok())
            .count();
        assert_eq!(allowed, 20);
    }

    #[test]
    fn a_quiet_period_refills_only_up_to_the_burst() {
        let q = Quota::new(1.0, 2);
        let t0 = q.epoch;
        assert!(q.try_acquire_at(t0).is_ok());
        let later = t0 + Duration::from_secs(3600);
        assert!(q.try_acquire_at(later).is_ok());
        assert!(q.try_acquire_at(later).is_ok());
        assert!(q.try_acquire_at(later).is_err());
    }

    #[test]
    fn refusals_do_not_consume_room() {
        let q = Quota::new(1.0, 1);
        let t0 = q.epoch;
        assert!(q.try_acquire_at(t0).is_ok());
        for _ in 0..100 {
            assert!(q.try_acquire_at(t0 + 500 * MS).is_err());
        }
        assert!(q.try_acquire_at(t0 + 1000 * MS).is_ok());
    }

    #[test]
    fn decide_is_the_gcra_rule() {
        assert_eq!(decide(0, 1_000, 10, 0), Ok(1_010));
        assert_eq!(decide(1_010, 1_000, 10, 0), Err(Duration::from_nanos(10)));
        assert_eq!(decide(1_010, 1_000, 10, 10), Ok(1_020));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(1000)), 1000);
    }
}
