//! Stall detection for one partition: pure, fed one observation per commit tick.
//!
//! A partition is **stalled** when it is behind (its log end is past its
//! position) and its position has not moved for the entry's `stallAfter`.
//! The position is the next offset to commit (every call below it finished),
//! so this catches every way a partition stops: a fetch failing at the same
//! offset forever, a call whose target never answers, a dead letter Kafka
//! keeps refusing. An idle partition (nothing behind) is never stalled, however
//! long its position stays put.

use std::time::{Duration, Instant};

/// A change of a partition's stall state, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The partition just became stalled; its position has not moved since `since`.
    Stalled {
        /// When the position last moved (or the partition fell behind).
        since: Instant,
    },
    /// A stalled partition moved again (or caught up) after being stalled this long.
    Recovered {
        /// Time from `since` to the recovery.
        stalled_for: Duration,
    },
}

/// The stall state of one partition.
#[derive(Debug, Clone)]
pub struct StallDetector {
    after: Duration,
    position: Option<i64>,
    /// Since when the partition has been behind without moving; `None` when not behind.
    waiting_since: Option<Instant>,
    stalled: bool,
}

impl StallDetector {
    /// A detector that reports a stall after `after` without progress.
    pub fn new(after: Duration) -> Self {
        Self {
            after,
            position: None,
            waiting_since: None,
            stalled: false,
        }
    }

    /// Feeds the partition's `position` (next offset to commit) and `log_end` as seen at
    /// `now`; returns the change of state, if any. Unknown values (`None`) never make a
    /// stall: with no position or no log end there is no known lag.
    pub fn observe(&mut self, now: Instant, position: Option<i64>, log_end: Option<i64>) -> Option<Change> {
        let behind = matches!((position, log_end), (Some(p), Some(end)) if end > p);
        let moved = position != self.position;
        self.position = position;
        if !behind || moved {
            // Progress (or nothing to do): the clock restarts.
            let previous = std::mem::replace(&mut self.waiting_since, behind.then_some(now));
            if !std::mem::take(&mut self.stalled) {
                return None;
            }
            let since = previous.unwrap_or(now);
            return Some(Change::Recovered {
                stalled_for: now.saturating_duration_since(since),
            });
        }
        let since = *self.waiting_since.get_or_insert(now);
        if !self.stalled && now.saturating_duration_since(since) >= self.after {
            self.stalled = true;
            return Some(Change::Stalled { since });
        }
        None
    }

    /// Since when a stalled partition has not moved; `None` when it is not stalled.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.waiting_since.filter(|_| self.stalled)
    }
}

/// Why a partition stalled since `since` at `position` with the log end at `log_end`:
/// the last fetch error when it happened after the position last moved (then that is
/// what holds the partition), else the oldest unfinished call.
pub fn reason(last_error: Option<(&str, Instant)>, since: Instant, position: i64, log_end: i64) -> String {
    match last_error {
        Some((message, at)) if at >= since => format!("fetch failing at offset {position}: {message}"),
        _ => format!(
            "the call at offset {position} has not finished (lag {})",
            (log_end - position).max(0)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(60);

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn behind_without_moving_for_the_threshold_is_a_stall_reported_once() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(AFTER);
        assert_eq!(d.observe(t0, Some(5), Some(9)), None);
        assert_eq!(d.observe(at(t0, 59), Some(5), Some(9)), None);
        assert_eq!(d.stalled_since(), None);
        assert_eq!(
            d.observe(at(t0, 60), Some(5), Some(12)),
            Some(Change::Stalled { since: t0 })
        );
        assert_eq!(d.stalled_since(), Some(t0));
        // Not again on every tick.
        assert_eq!(d.observe(at(t0, 61), Some(5), Some(12)), None);
        assert_eq!(d.stalled_since(), Some(t0));
    }

    #[test]
    fn moving_recovers_and_restarts_the_clock() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(AFTER);
        d.observe(t0, Some(5), Some(9));
        assert!(d.observe(at(t0, 60), Some(5), Some(9)).is_some());
        assert_eq!(
            d.observe(at(t0, 90), Some(6), Some(9)),
            Some(Change::Recovered {
                stalled_for: Duration::from_secs(90)
            })
        );
        assert_eq!(d.stalled_since(), None);
        // Still behind: a new stall needs a full threshold from the move.
        assert_eq!(d.observe(at(t0, 149), Some(6), Some(9)), None);
        assert_eq!(
            d.observe(at(t0, 150), Some(6), Some(9)),
            Some(Change::Stalled { since: at(t0, 90) })
        );
    }

    #[test]
    fn slow_progress_is_not_a_stall() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(AFTER);
        for i in 0..10 {
            assert_eq!(d.observe(at(t0, i * 59), Some(i as i64), Some(100)), None);
        }
    }

    #[test]
    fn an_idle_partition_is_never_stalled() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(AFTER);
        for i in 0..5 {
            assert_eq!(d.observe(at(t0, i * 600), Some(9), Some(9)), None);
        }
        // Falling behind starts the clock then, not at the last move.
        assert_eq!(d.observe(at(t0, 3000), Some(9), Some(10)), None);
        assert_eq!(d.observe(at(t0, 3059), Some(9), Some(10)), None);
        assert!(d.observe(at(t0, 3060), Some(9), Some(10)).is_some());
    }

    #[test]
    fn catching_up_recovers() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(AFTER);
        d.observe(t0, Some(5), Some(9));
        d.observe(at(t0, 60), Some(5), Some(9));
        // Log end moved back (topic recreated) to the position: nothing behind.
        assert!(matches!(
            d.observe(at(t0, 61), Some(5), Some(5)),
            Some(Change::Recovered { .. })
        ));
    }

    #[test]
    fn unknown_offsets_never_stall() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(AFTER);
        for i in 0..5 {
            assert_eq!(d.observe(at(t0, i * 100), None, Some(9)), None);
            assert_eq!(d.observe(at(t0, i * 100 + 50), Some(3), None), None);
        }
    }

    #[test]
    fn the_reason_is_the_fetch_error_only_when_it_is_news() {
        let t0 = Instant::now();
        let err = Some(("Invalid response: zstd not supported", at(t0, 5)));
        assert_eq!(
            reason(err, t0, 7, 12),
            "fetch failing at offset 7: Invalid response: zstd not supported"
        );
        // An error from before the position last moved says nothing about this stall.
        assert_eq!(
            reason(err, at(t0, 10), 7, 12),
            "the call at offset 7 has not finished (lag 5)"
        );
        assert_eq!(
            reason(None, t0, 7, 8),
            "the call at offset 7 has not finished (lag 1)"
        );
    }
}
