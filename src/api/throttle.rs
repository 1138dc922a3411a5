//! A per-source throttle on failed ACL checks, so a secret cannot be guessed at line rate.
//!
//! After [`ThrottleLimits::max_failures`] failed checks within [`ThrottleLimits::window`] from
//! one source, that source is blocked for [`ThrottleLimits::cooldown`]: `/rpc/call` answers 429
//! without looking at the secret, so a right guess during the cool-down is not even checked.
//! A success does not clear the count: otherwise a caller holding one valid ACL could reset
//! its count between guesses at another ACL's secret.
//!
//! Sources are IPv4 addresses and IPv6 /64 prefixes (one host usually has a whole /64). The
//! table is capped: when it is full, finished entries are pruned (at most once a second, so a
//! flood of new sources cannot make every request scan it), and a source that still finds no
//! room is not tracked. Blocked sources are never evicted early.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// When a source gets blocked, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failed checks that block a source, counted within `window`.
    pub max_failures: u32,
    /// The window failures are counted in, from the first one.
    pub window: Duration,
    /// How long a blocked source stays blocked.
    pub cooldown: Duration,
    /// Most sources tracked at once.
    pub capacity: usize,
}

impl Default for ThrottleLimits {
    /// 10 failures a minute block for a minute; 65536 sources tracked (a few MiB at most).
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
            capacity: 65_536,
        }
    }
}

/// The key a source is tracked under: the IPv4 address (IPv4-mapped IPv6 too), or the /64 of
/// an IPv6 address.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Entry {
    fn finished(&self, now: Instant, limits: &ThrottleLimits) -> bool {
        match self.blocked_until {
            Some(until) => now >= until,
            None => now.saturating_duration_since(self.window_start) >= limits.window,
        }
    }
}

/// The throttle table. Not synchronised: wrap it in a mutex (see `guard`).
#[derive(Debug)]
pub struct FailureThrottle {
    limits: ThrottleLimits,
    entries: HashMap<IpAddr, Entry>,
    blocked: usize,
    last_prune: Option<Instant>,
}

impl FailureThrottle {
    /// An empty table.
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            blocked: 0,
            last_prune: None,
        }
    }

    /// True while any source is (or may still be) blocked: callers can skip [`Self::blocked`]
    /// when false.
    pub fn any_blocked(&self) -> bool {
        self.blocked > 0
    }

    /// How long `source` stays blocked, if it is blocked at `now`.
    pub fn blocked(&mut self, source: IpAddr, now: Instant) -> Option<Duration> {
        let key = source_key(source);
        let entry = self.entries.get(&key)?;
        let until = entry.blocked_until?;
        if now < until {
            return Some(until - now);
        }
        // The cool-down is over: the source starts again from zero.
        self.entries.remove(&key);
        self.blocked -= 1;
        None
    }

    /// Counts a failed check from `source` at `now`; `Some(cooldown)` when this failure blocks it.
    pub fn record_failure(&mut self, source: IpAddr, now: Instant) -> Option<Duration> {
        let key = source_key(source);
        if !self.entries.contains_key(&key) && !self.make_room(now) {
            return None;
        }
        let limits = self.limits;
        let entry = self.entries.entry(key).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if entry.blocked_until.is_some() {
            return None;
        }
        if now.saturating_duration_since(entry.window_start) >= limits.window {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures += 1;
        if entry.failures < limits.max_failures {
            return None;
        }
        entry.blocked_until = Some(now + limits.cooldown);
        self.blocked += 1;
        Some(limits.cooldown)
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn make_room(&mut self, now: Instant) -> bool {
        if self.entries.len() < self.limits.capacity {
            return true;
        }
        if self
            .last_prune
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        self.last_prune = Some(now);
        let limits = self.limits;
        let mut unblocked = 0;
        self.entries.retain(|_, e| {
            let keep = !e.finished(now, &limits);
            if !keep && e.blocked_until.is_some() {
                unblocked += 1;
            }
            keep
        });
        self.blocked -= unblocked;
        self.entries.len() < self.limits.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits(capacity: usize) -> ThrottleLimits {
        ThrottleLimits {
            max_failures: 3,
            window: 10 * S,
            cooldown: 30 * S,
            capacity,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn k_failures_in_the_window_block_for_the_cooldown() {
        let mut t = FailureThrottle::new(limits(10));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        assert_eq!(t.record_failure(a, t0), None);
        assert_eq!(t.record_failure(a, t0 + S), None);
        assert_eq!(t.blocked(a, t0 + S), None);
        assert_eq!(t.record_failure(a, t0 + 2 * S), Some(30 * S));
        assert!(t.any_blocked());
        assert_eq!(t.blocked(a, t0 + 2 * S), Some(30 * S));
        assert_eq!(t.blocked(a, t0 + 31 * S), Some(S));
        // Another source is not affected.
        assert_eq!(t.blocked(ip("10.0.0.2"), t0 + 3 * S), None);
        // After the cool-down the source starts from zero.
        assert_eq!(t.blocked(a, t0 + 32 * S), None);
        assert!(!t.any_blocked());
        assert_eq!(t.record_failure(a, t0 + 33 * S), None);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_block() {
        let mut t = FailureThrottle::new(limits(10));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for i in 0..20 {
            assert_eq!(t.record_failure(a, t0 + i * 6 * S), None, "failure {i}");
        }
    }

    #[test]
    fn ipv6_hosts_of_one_64_share_a_count_and_mapped_v4_is_v4() {
        assert_eq!(source_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        let mut t = FailureThrottle::new(limits(10));
        let t0 = Instant::now();
        t.record_failure(ip("2001:db8::1"), t0);
        t.record_failure(ip("2001:db8::2"), t0);
        assert!(t.record_failure(ip("2001:db8::3"), t0).is_some());
        assert!(t.blocked(ip("2001:db8::ffff"), t0).is_some());
        assert!(t.blocked(ip("2001:db8:0:1::1"), t0).is_none());
    }

    #[test]
    fn the_table_is_capped_and_blocked_sources_are_kept() {
        let mut t = FailureThrottle::new(limits(4));
        let t0 = Instant::now();
        let bad = ip("10.9.9.9");
        for _ in 0..3 {
            t.record_failure(bad, t0);
        }
        for i in 0..100 {
            t.record_failure(ip(&format!("10.0.0.{i}")), t0);
        }
        assert_eq!(t.len(), 4);
        assert!(t.blocked(bad, t0 + S).is_some());
        // Once the windows are over, a prune makes room for new sources.
        let later = t0 + 11 * S;
        assert_eq!(t.record_failure(ip("10.1.1.1"), later), None);
        assert_eq!(t.len(), 2, "the blocked source and the new one");
        assert!(t.blocked(bad, later).is_some());
    }
}
