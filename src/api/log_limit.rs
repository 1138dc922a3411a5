//! Rate-limited logging per source: at most one line per source per interval, the next line
//! saying how many were suppressed. Refusals must leave an audit trail, but a flood of wrong
//! guesses must not become a flood of log lines (the log queue drops lines when full, and
//! those could be the ones that matter).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::throttle::source_key;

/// Whether to write a line now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, and say this many lines from the source were suppressed since the last one.
    Log {
        /// Lines suppressed since the previous line for this source.
        suppressed: u64,
    },
    /// Suppress it (it is counted for the next line).
    Suppress,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    last: Instant,
    suppressed: u64,
}

/// The per-source table. Not synchronised: wrap it in a mutex.
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    capacity: usize,
    slots: HashMap<IpAddr, Slot>,
    /// Lines suppressed for sources no longer tracked: reported with the next line written.
    orphaned: u64,
}

impl LogLimiter {
    /// At most one line per source per `every`; at most `capacity` sources tracked.
    pub fn new(every: Duration, capacity: usize) -> Self {
        Self {
            every,
            capacity: capacity.max(1),
            slots: HashMap::new(),
            orphaned: 0,
        }
    }

    /// Decides for one line about `source` at `now`.
    pub fn check(&mut self, source: IpAddr, now: Instant) -> Verdict {
        let key = source_key(source);
        if let Some(slot) = self.slots.get_mut(&key) {
            if now.saturating_duration_since(slot.last) < self.every {
                slot.suppressed += 1;
                return Verdict::Suppress;
            }
            let suppressed = std::mem::take(&mut slot.suppressed);
            slot.last = now;
            return Verdict::Log { suppressed };
        }
        if self.slots.len() >= self.capacity {
            // Drop the slots whose interval is over; if none is, start again (their counts
            // move to `orphaned`, so no suppressed line goes unreported).
            let every = self.every;
            let mut freed = 0;
            self.slots.retain(|_, s| {
                let keep = now.saturating_duration_since(s.last) < every;
                if !keep {
                    freed += s.suppressed;
                }
                keep
            });
            self.orphaned += freed;
            if self.slots.len() >= self.capacity {
                self.orphaned += self.slots.values().map(|s| s.suppressed).sum::<u64>();
                self.slots.clear();
            }
        }
        self.slots.insert(
            key,
            Slot {
                last: now,
                suppressed: 0,
            },
        );
        Verdict::Log {
            suppressed: std::mem::take(&mut self.orphaned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_line_per_source_per_interval_with_the_suppressed_count() {
        let mut l = LogLimiter::new(10 * S, 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(l.check(a, t0), Verdict::Log { suppressed: 0 });
        for i in 1..=5 {
            assert_eq!(l.check(a, t0 + i * S), Verdict::Suppress);
        }
        // Another source has its own allowance.
        assert_eq!(l.check(ip("192.0.2.2"), t0 + S), Verdict::Log { suppressed: 0 });
        assert_eq!(l.check(a, t0 + 10 * S), Verdict::Log { suppressed: 5 });
        assert_eq!(l.check(a, t0 + 11 * S), Verdict::Suppress);
    }

    #[test]
    fn the_table_is_capped_and_no_count_is_lost() {
        let mut l = LogLimiter::new(10 * S, 2);
        let t0 = Instant::now();
        l.check(ip("192.0.2.1"), t0);
        l.check(ip("192.0.2.1"), t0);
        l.check(ip("192.0.2.2"), t0);
        // Full and nothing expired: the table starts again, the suppressed line is carried.
        assert_eq!(l.check(ip("192.0.2.3"), t0), Verdict::Log { suppressed: 1 });
        assert!(l.slots.len() <= 2);
        assert_eq!(l.check(ip("192.0.2.4"), t0), Verdict::Log { suppressed: 0 });
    }
}
