//! Circuit breakers: one per target host of a consumer entry (`circuitBreaker`).
//!
//! The Go version's breaker (spec §5.5), kept: a sliding window of one-second buckets of
//! attempt outcomes; below `minStats` samples the target counts as healthy, above it healthy
//! means a success rate of at least `healthRate`. The states:
//!
//! ```text
//!  Normal ──unhealthy──► Open ──breakPeriod over and healthy──► Recovering ──recoverPeriod over──► Normal
//!                         ▲                                        │
//!                         └────────────────unhealthy───────────────┘
//! ```
//!
//! While Open no attempt starts, so the window empties and the target turns healthy again
//! once `winSize` seconds have passed. Recovering lets a growing share of attempts through,
//! from one probe to all of them over `recoverPeriod`.
//!
//! Deliberate differences from Go: one breaker per target host (scheme and authority of the
//! URL) instead of one per consumer entry, so one broken target does not stall the others;
//! the ramp is measured from the start of recovery (Go measured it from the start of the
//! break, so a break longer than `breakPeriod + recoverPeriod` skipped the ramp); a held call
//! gives back its concurrency slot while it waits; and a held call is abandoned, uncommitted,
//! at shutdown or revoke (Go sent it anyway, past the open breaker).
//!
//! Time is passed in ([`Breaker::admit`] and [`Breaker::record`] take the time since an
//! arbitrary start), so the state machine is tested without clocks.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerSettings;

/// Breakers kept per entry before idle ones (closed, no recent samples) are dropped.
const MAX_IDLE_HOSTS: usize = 1024;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Every attempt passes.
    Normal,
    /// No attempt passes; entered at `since`.
    Open {
        /// When the breaker opened.
        since: Duration,
    },
    /// A growing share of attempts passes; entered at `since`.
    Recovering {
        /// When recovery started.
        since: Duration,
    },
}

impl State {
    /// The name used in logs and stats.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "closed",
            Self::Open { .. } => "open",
            Self::Recovering { .. } => "recovering",
        }
    }
}

/// A change of state, for logs and stats.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Success rate over the window when it happened (1 with no samples).
    pub success_rate: f64,
    /// Samples in the window when it happened.
    pub samples: u64,
}

impl Transition {
    /// Whether the breaker left the closed state (+1 open circuit) or returned to it (-1).
    pub fn open_delta(&self) -> i64 {
        match (self.from, self.to) {
            (State::Normal, State::Normal) => 0,
            (State::Normal, _) => 1,
            (_, State::Normal) => -1,
            _ => 0,
        }
    }
}

/// The answer to "may an attempt start now?".
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// Whether the attempt may start.
    pub pass: bool,
    /// The state change this decision made, if any.
    pub transition: Option<Transition>,
}

/// Success and failure counts of one one-second bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    second: u64,
    success: u64,
    fail: u64,
}

/// Attempt outcomes of the last `size` seconds.
#[derive(Debug)]
struct Window {
    size: u64,
    buckets: VecDeque<Bucket>,
}

impl Window {
    fn new(size: u64) -> Self {
        Self {
            size: size.max(1),
            buckets: VecDeque::new(),
        }
    }

    /// Drops buckets that have left the window at `second`.
    fn expire(&mut self, second: u64) {
        while let Some(front) = self.buckets.front() {
            if front.second + self.size <= second {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    fn record(&mut self, second: u64, success: bool) {
        self.expire(second);
        let (ok, failed) = (u64::from(success), u64::from(!success));
        match self.buckets.back_mut() {
            // Samples arrive in time order but from many tasks: one that read the clock
            // a little earlier joins the newest bucket rather than reordering the window.
            Some(b) if b.second >= second => {
                b.success += ok;
                b.fail += failed;
            }
            _ => self.buckets.push_back(Bucket {
                second,
                success: ok,
                fail: failed,
            }),
        }
    }

    /// `(success, total)` at `second`.
    fn totals(&mut self, second: u64) -> (u64, u64) {
        self.expire(second);
        self.buckets
            .iter()
            .fold((0, 0), |(s, t), b| (s + b.success, t + b.success + b.fail))
    }
}

/// One target's breaker.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    window: Window,
    state: State,
}

impl Breaker {
    /// A closed breaker with an empty window.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            window: Window::new(u64::from(settings.window_secs)),
            settings,
            state: State::Normal,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// `(healthy, success rate, samples)` at `now`.
    fn health(&mut self, now: Duration) -> (bool, f64, u64) {
        let (success, total) = self.window.totals(now.as_secs());
        if total == 0 {
            return (true, 1.0, 0);
        }
        // Sample counts stay far below 2^52, so the conversions are exact.
        let rate = success as f64 / total as f64;
        let healthy = total < u64::from(self.settings.min_stats) || rate >= self.settings.health_rate;
        (healthy, rate, total)
    }

    fn go_to(&mut self, to: State, rate: f64, samples: u64) -> Transition {
        let from = self.state;
        self.state = to;
        Transition {
            from,
            to,
            success_rate: rate,
            samples,
        }
    }

    /// Whether an attempt may start at `now`. `roll` is a uniform random number in `[0, 1)`
    /// that decides the pass while recovering.
    pub fn admit(&mut self, now: Duration, roll: f64) -> Admission {
        let (healthy, rate, samples) = self.health(now);
        let (pass, to) = match self.state {
            State::Normal if healthy => (true, None),
            State::Normal => (false, Some(State::Open { since: now })),
            State::Open { since } => {
                if now.saturating_sub(since) < self.settings.break_period || !healthy {
                    (false, None)
                } else {
                    // The first call after the break is the probe.
                    (true, Some(State::Recovering { since: now }))
                }
            }
            State::Recovering { .. } if !healthy => (false, Some(State::Open { since: now })),
            State::Recovering { since } => {
                let elapsed = now.saturating_sub(since);
                if elapsed >= self.settings.recover_period {
                    (true, Some(State::Normal))
                } else {
                    let share = elapsed.as_secs_f64() / self.settings.recover_period.as_secs_f64();
                    (roll < share, None)
                }
            }
        };
        let transition = to.map(|to| self.go_to(to, rate, samples));
        Admission { pass, transition }
    }

    /// Records an attempt's outcome at `now`. A closed breaker whose target has just turned
    /// unhealthy opens here, so calls already waiting for a slot are held too.
    pub fn record(&mut self, now: Duration, success: bool) -> Option<Transition> {
        self.window.record(now.as_secs(), success);
        let (healthy, rate, samples) = self.health(now);
        match self.state {
            State::Normal | State::Recovering { .. } if !healthy => {
                Some(self.go_to(State::Open { since: now }, rate, samples))
            }
            _ => None,
        }
    }

    /// Closed, and nothing in the window: forgetting it changes nothing.
    fn idle(&mut self, now: Duration) -> bool {
        self.state == State::Normal && self.window.totals(now.as_secs()).1 == 0
    }
}

/// The breakers of one consumer entry, by target host. Without settings every call passes
/// and nothing is stored.
pub struct Breakers {
    settings: Option<BreakerSettings>,
    start: Instant,
    hosts: Mutex<HashMap<String, Breaker>>,
}

impl fmt::Debug for Breakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breakers")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Breakers {
    /// Breakers with `settings`, or none.
    pub fn new(settings: Option<BreakerSettings>) -> Self {
        Self {
            settings,
            start: Instant::now(),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the entry has breakers at all.
    pub fn enabled(&self) -> bool {
        self.settings.is_some()
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn with<T>(&self, host: &str, f: impl FnOnce(&mut Breaker, Duration) -> T) -> Option<T> {
        let settings = self.settings?;
        let now = self.now();
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // get_mut first: `entry` would allocate the key on every call.
        if let Some(breaker) = hosts.get_mut(host) {
            return Some(f(breaker, now));
        }
        if hosts.len() >= MAX_IDLE_HOSTS {
            hosts.retain(|_, b| !b.idle(now));
        }
        let breaker = hosts
            .entry(host.to_owned())
            .or_insert_with(|| Breaker::new(settings));
        Some(f(breaker, now))
    }

    /// Whether an attempt to `host` may start now (always, without settings).
    pub fn admit(&self, host: &str) -> Admission {
        let roll = rand::random::<f64>();
        self.with(host, |b, now| b.admit(now, roll)).unwrap_or(Admission {
            pass: true,
            transition: None,
        })
    }

    /// Hosts whose breaker is open or recovering.
    pub fn open_hosts(&self) -> usize {
        self.hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|b| b.state != State::Normal)
            .count()
    }

    /// Records an attempt's outcome for `host`.
    pub fn record(&self, host: &str, success: bool) -> Option<Transition> {
        self.with(host, |b, now| b.record(now, success)).flatten()
    }
}

/// The breaker (and host-slot) key of a URL: its scheme, host and port, lower case
/// (`http://host:port`). `None` when the URL has no scheme or host (such a call fails as
/// invalid, and is no sample).
///
/// Userinfo is left out: it names no other host, and a key is logged and shown in `/stats`,
/// where a password must not appear; nor may a caller get a fresh breaker (and fresh host
/// slots) per made-up user name for a host that is failing.
pub fn host_key(url: &str) -> Option<String> {
    let uri: awc::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    let key = match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    Some(key.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            break_period: Duration::from_secs(10),
            recover_period: Duration::from_secs(30),
            window_secs: 60,
            min_stats: 10,
            health_rate: 0.85,
        }
    }

    const fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// A breaker opened at 100 s by ten failures.
    fn opened() -> Breaker {
        let mut b = Breaker::new(settings());
        for _ in 0..9 {
            assert_eq!(b.record(s(100), false), None, "below minStats stays closed");
        }
        let t = b.record(s(100), false).expect("tenth failure opens");
        assert_eq!(t.to, State::Open { since: s(100) });
        assert_eq!(t.samples, 10);
        assert_eq!(t.open_delta(), 1);
        b
    }

    #[test]
    fn below_min_stats_the_target_is_healthy_whatever_its_rate() {
        let mut b = Breaker::new(settings());
        for i in 0..9 {
            b.record(s(i), false);
        }
        assert!(b.admit(s(9), 0.99).pass);
        assert_eq!(b.state(), State::Normal);
    }

    #[test]
    fn a_rate_at_the_threshold_is_healthy() {
        let mut b = Breaker::new(BreakerSettings {
            health_rate: 0.8,
            ..settings()
        });
        // 16 successes then 4 failures: the rate falls to exactly 0.8 and no lower
        for i in 0..20 {
            assert_eq!(b.record(s(1), i < 16), None, "sample {i}");
        }
        assert!(b.admit(s(2), 0.99).pass);
        // 16 in 21
        assert_eq!(
            b.record(s(2), false).map(|t| t.to),
            Some(State::Open { since: s(2) })
        );
    }

    #[test]
    fn open_blocks_until_the_break_is_over_and_the_window_healthy() {
        let mut b = opened();
        assert!(!b.admit(s(105), 0.0).pass);
        // breakPeriod (10 s) is over, but the failures are still in the 60 s window
        assert!(!b.admit(s(111), 0.0).pass);
        assert!(!b.admit(s(159), 0.0).pass);
        // at 160 s the 100 s bucket leaves the window: healthy, one probe passes
        let a = b.admit(s(160), 0.99);
        assert!(a.pass);
        let t = a.transition.expect("recovering");
        assert_eq!(t.to, State::Recovering { since: s(160) });
        assert_eq!(t.open_delta(), 0);
    }

    #[test]
    fn a_short_window_lets_the_break_period_decide() {
        let mut b = Breaker::new(BreakerSettings {
            window_secs: 2,
            min_stats: 1,
            ..settings()
        });
        b.record(s(50), false);
        assert_eq!(b.state(), State::Open { since: s(50) });
        assert!(!b.admit(s(59), 0.0).pass, "window empty but breakPeriod not over");
        assert!(b.admit(s(60), 0.0).pass);
    }

    #[test]
    fn recovery_ramps_up_from_its_own_start_then_closes() {
        let mut b = opened();
        assert!(b.admit(s(160), 0.5).pass);
        // 3 s into a 30 s ramp: 10 % pass
        assert!(b.admit(s(163), 0.09).pass);
        assert!(!b.admit(s(163), 0.11).pass);
        // 15 s in: half
        assert!(b.admit(s(175), 0.49).pass);
        assert!(!b.admit(s(175), 0.51).pass);
        let a = b.admit(s(190), 0.99);
        assert!(a.pass);
        let t = a.transition.expect("closed");
        assert_eq!(t.to, State::Normal);
        assert_eq!(t.open_delta(), -1);
    }

    #[test]
    fn failing_while_recovering_opens_again() {
        let mut b = opened();
        assert!(b.admit(s(160), 0.0).pass);
        for _ in 0..9 {
            assert_eq!(b.record(s(161), false), None);
        }
        let t = b.record(s(161), false).expect("opens again");
        assert_eq!(t.from, State::Recovering { since: s(160) });
        assert_eq!(t.to, State::Open { since: s(161) });
        assert_eq!(t.open_delta(), 0, "still one open circuit");
        assert!(!b.admit(s(162), 0.0).pass);
    }

    #[test]
    fn successes_while_recovering_keep_it_recovering() {
        let mut b = opened();
        assert!(b.admit(s(160), 0.0).pass);
        for _ in 0..50 {
            assert_eq!(b.record(s(170), true), None);
        }
        assert_eq!(b.state(), State::Recovering { since: s(160) });
    }

    #[test]
    fn the_window_slides_by_whole_seconds() {
        let mut w = Window::new(3);
        w.record(10, false);
        w.record(11, true);
        w.record(12, true);
        assert_eq!(w.totals(12), (2, 3));
        assert_eq!(w.totals(13), (2, 2), "second 10 left the window");
        // a sample stamped a second late joins the newest bucket
        w.record(11, false);
        assert_eq!(w.totals(13), (2, 3));
        assert_eq!(w.totals(100), (0, 0));
    }

    #[test]
    fn without_settings_everything_passes_and_nothing_is_kept() {
        let breakers = Breakers::new(None);
        assert!(!breakers.enabled());
        for _ in 0..100 {
            assert_eq!(breakers.record("http://a", false), None);
        }
        assert!(breakers.admit("http://a").pass);
        assert!(breakers.hosts.lock().unwrap().is_empty());
    }

    #[test]
    fn hosts_have_breakers_of_their_own() {
        let breakers = Breakers::new(Some(BreakerSettings {
            min_stats: 2,
            ..settings()
        }));
        assert_eq!(breakers.record("http://a:1", false), None);
        let t = breakers.record("http://a:1", false).expect("a opens");
        assert_eq!(t.to.name(), "open");
        assert!(!breakers.admit("http://a:1").pass);
        assert!(breakers.admit("http://b:1").pass);
    }

    #[test]
    fn idle_breakers_are_dropped_when_there_are_too_many() {
        let breakers = Breakers::new(Some(BreakerSettings {
            min_stats: 1,
            ..settings()
        }));
        breakers.record("http://broken", false);
        for i in 0..MAX_IDLE_HOSTS {
            breakers.admit(&format!("http://idle-{i}"));
        }
        breakers.admit("http://one-more");
        let hosts = breakers.hosts.lock().unwrap();
        assert!(hosts.len() < 10, "{} kept", hosts.len());
        assert_eq!(hosts["http://broken"].state().name(), "open");
    }

    #[test]
    fn host_keys_are_scheme_and_authority() {
        assert_eq!(
            host_key("http://Example.com:8080/a/b?c=d").as_deref(),
            Some("http://example.com:8080")
        );
        // Userinfo never reaches a key: no password in logs, no fresh breaker per user name.
        assert_eq!(host_key("https://u@h/x").as_deref(), Some("https://h"));
        assert_eq!(
            host_key("http://admin:pw@H:81/x").as_deref(),
            host_key("http://other@h:81/").as_deref()
        );
        assert_eq!(
            host_key("http://[::1]:8080/").as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(host_key("/relative"), None);
        assert_eq!(host_key("not a url"), None);
    }
}
