//! What `/rpc/call` does about failed ACL checks: the per-source throttle and the
//! rate-limited warning, shared by every HTTP worker. Lives for the whole process (a reload
//! keeps it), unlike the ACL table.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use slog::{Logger, warn};

use super::acl::AclRefusal;
use super::log_limit::{LogLimiter, Verdict};
use super::throttle::{FailureThrottle, ThrottleLimits};

/// At most one refusal line per source per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Sources the refusal log tracks at once.
const LOG_SOURCES: usize = 4096;

/// The source of a request when the transport has no peer address (never over TCP).
pub const UNKNOWN_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Failed-check throttle plus refusal logging.
#[derive(Debug)]
pub struct CallerGuard {
    throttle: Mutex<FailureThrottle>,
    /// Mirrors `FailureThrottle::any_blocked`, so the common case (nobody blocked) costs one
    /// atomic load per request instead of a lock.
    any_blocked: AtomicBool,
    log_limit: Mutex<LogLimiter>,
}

impl Default for CallerGuard {
    fn default() -> Self {
        Self::new(ThrottleLimits::default())
    }
}

impl CallerGuard {
    /// A guard with these throttle limits.
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            throttle: Mutex::new(FailureThrottle::new(limits)),
            any_blocked: AtomicBool::new(false),
            log_limit: Mutex::new(LogLimiter::new(LOG_EVERY, LOG_SOURCES)),
        }
    }

    /// How long `source` stays blocked, if it is.
    pub fn blocked(&self, source: IpAddr) -> Option<Duration> {
        if !self.any_blocked.load(Ordering::Relaxed) {
            return None;
        }
        let mut throttle = lock(&self.throttle);
        let left = throttle.blocked(source, Instant::now());
        self.any_blocked.store(throttle.any_blocked(), Ordering::Relaxed);
        left
    }

    /// Counts a failed check from `source` for the throttle, and logs it at warn, at most one
    /// line per source per [`LOG_EVERY`] (the secret is never logged; the name is, escaped by
    /// the logger).
    pub fn refused(&self, log: &Logger, source: IpAddr, acl: &str, why: AclRefusal) {
        let now = Instant::now();
        let blocked = {
            let mut throttle = lock(&self.throttle);
            let blocked = throttle.record_failure(source, now);
            self.any_blocked.store(throttle.any_blocked(), Ordering::Relaxed);
            blocked
        };
        if let Some(cooldown) = blocked {
            warn!(log, "too many failed acl checks: source blocked"; "source" => %source,
                "acl" => shorten(acl), "cooldown_s" => cooldown.as_secs());
        }
        // The name is the caller's input, up to the body limit: log its start only.
        let acl = shorten(acl);
        let verdict = lock(&self.log_limit).check(source, now);
        if let Verdict::Log { suppressed } = verdict {
            warn!(log, "call refused: acl check failed"; "source" => %source, "acl" => acl,
                "reason" => %why, "suppressed" => suppressed);
        }
    }
}

/// Longest ACL name written to the log, in characters.
const NAME_SHOWN: usize = 64;

/// `name`, cut to [`NAME_SHOWN`] characters with `...` when longer.
fn shorten(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(NAME_SHOWN) {
        Some((at, _)) => format!("{}...", &name[..at]).into(),
        None => name.into(),
    }
}

// A poisoned lock only means a thread panicked while holding it; the tables stay usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_for_the_log() {
        assert_eq!(shorten("caller"), "caller");
        let long = "é".repeat(100);
        assert_eq!(shorten(&long), format!("{}...", "é".repeat(64)));
    }

    #[test]
    fn the_guard_blocks_after_ten_failures_and_only_that_source() {
        let guard = CallerGuard::default();
        let log = crate::logging::discard();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..9 {
            guard.refused(&log, a, "x", AclRefusal::WrongSecret);
            assert_eq!(guard.blocked(a), None);
        }
        guard.refused(&log, a, "x", AclRefusal::UnknownName);
        assert!(guard.blocked(a).is_some_and(|d| d <= Duration::from_secs(60)));
        assert_eq!(guard.blocked("192.0.2.2".parse().unwrap()), None);
    }
}
