//! A consumer entry's rate limit, split across the group's members.
//!
//! `rateLimit` is the rate for the whole group: each member takes the share of
//! the group's partitions it owns, so adding processes does not multiply the
//! rate (in the Go version every process applied the full rate). The limiter
//! is rebuilt whenever the assignment changes, and calls waiting on the old one move to the
//! new one at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leaky_bucket::RateLimiter;
use tokio::sync::Notify;

/// The member's current share of a group rate.
#[derive(Debug)]
pub struct GroupRate {
    group_rate: f64,
    limiter: Mutex<Arc<RateLimiter>>,
    /// Wakes the calls waiting on a limiter that [`GroupRate::set_share`] replaced.
    replaced: Notify,
}

impl GroupRate {
    /// Starts with the whole group rate (until the first assignment says otherwise).
    pub fn new(group_rate: f64) -> Self {
        Self {
            group_rate,
            limiter: Mutex::new(Arc::new(limiter_for(group_rate))),
            replaced: Notify::new(),
        }
    }

    /// Sets the share to `owned / total` partitions of the group rate.
    pub fn set_share(&self, owned: usize, total: usize) {
        let rate = member_rate(self.group_rate, owned, total);
        *self
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(limiter_for(rate));
        self.replaced.notify_waiters();
    }

    /// Waits for one call's token.
    pub async fn acquire(&self) {
        loop {
            // Registered before the limiter is read, so a replacement in between is not missed.
            let replaced = self.replaced.notified();
            tokio::pin!(replaced);
            replaced.as_mut().enable();
            let limiter = Arc::clone(
                &self
                    .limiter
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            // A call waiting on a replaced limiter waits on the new one instead: the old one may
            // have been a near-zero share (a member between two rounds of a cooperative
            // rebalance), which held a call for up to 1000 s.
            tokio::select! {
                () = limiter.acquire_one() => return,
                () = &mut replaced => {}
            }
        }
    }
}

/// The rate of a member owning `owned` of `total` partitions of the entry's topic. A member
/// that owns none still gets one partition's share: it may own partitions of the entry's
/// retry tiers (their groups are assigned on their own), or get its topic partitions in the
/// next round of a cooperative rebalance, and its calls must not stall meanwhile. The group
/// may then go over `rateLimit` by a partition's share per such member, briefly.
pub fn member_rate(group_rate: f64, owned: usize, total: usize) -> f64 {
    if total == 0 {
        return group_rate;
    }
    let share = owned.clamp(1, total) as f64 / total as f64;
    (group_rate * share).max(0.001)
}

/// The token-bucket parameters for `rate` calls per second: tokens refilled
/// per interval, and the interval. Refills are whole tokens, so high rates
/// refill several tokens at a slightly longer interval instead of rounding
/// the rate; the burst is one refill (no second-long burst as in the Go version).
pub fn bucket_for(rate: f64) -> (usize, Duration) {
    let rate = rate.max(0.001);
    if rate <= 1000.0 {
        (1, Duration::from_secs_f64(1.0 / rate))
    } else {
        let refill = (rate / 1000.0).ceil();
        (refill as usize, Duration::from_secs_f64(refill / rate))
    }
}

/// The bucket's capacity: 200 ms worth of calls. Tokens that arrive while
/// nobody waits (a waiter woken late on a busy machine) are kept up to this,
/// so the rate is met on average; the Go version allowed a whole second.
pub fn burst_for(rate: f64) -> usize {
    let (refill, _) = bucket_for(rate);
    refill.max((rate * 0.2).ceil() as usize)
}

fn limiter_for(rate: f64) -> RateLimiter {
    let (refill, interval) = bucket_for(rate);
    RateLimiter::builder()
        .initial(refill)
        .refill(refill)
        .max(burst_for(rate))
        .interval(interval)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_proportional_to_owned_partitions() {
        assert_eq!(member_rate(100.0, 3, 6), 50.0);
        assert_eq!(member_rate(100.0, 6, 6), 100.0);
        assert!((member_rate(90.0, 1, 3) - 30.0).abs() < 1e-9);
        assert!(
            (member_rate(120.0, 0, 6) - 20.0).abs() < 1e-9,
            "one partition's share"
        );
        assert_eq!(member_rate(100.0, 2, 0), 100.0);
    }

    #[test]
    fn bucket_keeps_the_exact_rate() {
        for rate in [0.5, 1.0, 37.0, 999.0, 1500.0, 12345.0] {
            let (refill, interval) = bucket_for(rate);
            let got = refill as f64 / interval.as_secs_f64();
            assert!((got - rate).abs() / rate < 1e-6, "rate {rate}: got {got}");
        }
    }

    #[test]
    fn burst_is_a_fifth_of_a_second() {
        assert_eq!(burst_for(20.0), 4);
        assert_eq!(burst_for(1.0), 1);
        assert_eq!(burst_for(0.5), 1);
        assert_eq!(burst_for(5000.0), 1000);
    }

    /// A call waiting on a slow limiter moves to the new one when the share changes (it
    /// waited up to 1000 s before: a member between two rounds of a cooperative rebalance).
    #[tokio::test(start_paused = true)]
    async fn a_waiting_call_moves_to_the_new_limiter() {
        let rate = Arc::new(GroupRate::new(0.002));
        rate.acquire().await; // the one initial token
        let waiter = tokio::spawn({
            let rate = Arc::clone(&rate);
            async move { rate.acquire().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "the slow limiter has no token for 500 s");
        // A new limiter starts with one token: the waiter takes it at once. On the old limiter
        // it would have waited until 500 s.
        rate.set_share(1, 1);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("moved to the new limiter")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_calls() {
        let rate = GroupRate::new(100.0);
        rate.set_share(1, 2); // 50/s
        let start = tokio::time::Instant::now();
        for _ in 0..51 {
            rate.acquire().await;
        }
        let took = start.elapsed();
        // 51 tokens at 50/s starting with one: 50 intervals of 20 ms.
        assert!(
            took >= Duration::from_millis(990) && took <= Duration::from_millis(1010),
            "{took:?}"
        );
    }
}
