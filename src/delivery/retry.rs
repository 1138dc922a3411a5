//! The retry policy for delivery attempts: pure functions of (attempt number,
//! outcome, random source), so the consumer's retry loop, a future retry topic
//! and the tests all get the same answers.
//!
//! Classification follows vector's `RetryLogic` (house style P8): 408, 429 and
//! 5xx are worth retrying, except 501 (Not Implemented) and 505 (HTTP Version
//! Not Supported), which will not change on their own. Transport failures
//! (timeout, connect errors, an unavailable pool) are retried too. Anything
//! else that is not a success code is the target's final word.
//!
//! Delays are exponential with **full jitter**: uniform in
//! `[0, min(max_backoff, initial_backoff * 2^(attempt-1))]`, so many calls that
//! failed together (a target restart) do not come back together. The Go
//! version retried at once, with no delay at all.
//!
//! This is deliberately not built on [`crate::backoff::Backoff`]: that is a
//! stateful iterator whose step counter cannot be set, while a delivery's
//! attempt number comes from outside (it may have been carried in a retry
//! record), so the delay must be a function of the attempt number alone. The
//! computation is done in integer nanoseconds, which keeps the bounds exact.

use std::fmt;
use std::time::{Duration, SystemTime};

use awc::http::header::HttpDate;
use rand::Rng;

use super::AttemptOutcome;

/// The HTTP statuses that count as a delivered call.
///
/// The Go version accepted exactly 200; the default here is every 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessCodes(Vec<(u16, u16)>);

impl SuccessCodes {
    /// Parses a list of codes: a class (`"2xx"`), a single status (`"200"`) or
    /// an inclusive range (`"200-204"`). Statuses must lie in 100..=599.
    ///
    /// # Errors
    /// An empty list, or the first entry that is none of the above, with the
    /// reason.
    pub fn parse(spec: &[String]) -> Result<Self, String> {
        if spec.is_empty() {
            return Err("the list of success codes is empty".to_owned());
        }
        spec.iter()
            // One parser for the syntax, shared with config validation.
            .map(|item| crate::config::status_range(item.trim()).map(|r| (*r.start(), *r.end())))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Every 2xx status.
    pub fn default_2xx() -> Self {
        Self(vec![(200, 299)])
    }

    /// Whether `status` counts as a success.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl Default for SuccessCodes {
    fn default() -> Self {
        Self::default_2xx()
    }
}

/// How one consumer entry retries its calls.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; a call gets at most `max_retries + 1`
    /// attempts.
    pub max_retries: u32,
    /// Upper bound of the delay after the first attempt.
    pub initial_backoff: Duration,
    /// Cap of the (pre-jitter) delay bound.
    pub max_backoff: Duration,
    /// Cap of a delay asked for by the target with `Retry-After`, so a target
    /// cannot park a call for days.
    pub retry_after_max: Duration,
    /// Which statuses mean "delivered".
    pub success: SuccessCodes,
    /// Time budget (`retryFor`): a failing call gives up only when its attempts are
    /// used *and* this long has passed since its first attempt (the rule of Cloud
    /// Tasks' `max_attempts` + `max_retry_duration`). Zero: attempts alone decide.
    pub retry_for: Duration,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The call is delivered.
    Success,
    /// Try again after this delay.
    Retry {
        /// How long to wait before the next attempt.
        after: Duration,
    },
    /// Stop trying; the call failed.
    GiveUp {
        /// Why.
        reason: GiveUpReason,
    },
}

/// Why a call was given up.
#[derive(Debug, Clone, PartialEq)]
pub enum GiveUpReason {
    /// The target answered with a status that retrying will not change.
    Status(u16),
    /// Every allowed attempt failed; `last` describes the final one.
    AttemptsExhausted {
        /// The final attempt's outcome, for logs and dead-letter records.
        last: String,
    },
    /// The request can never be sent as built (bad URL or header).
    Invalid(String),
    /// The destination policy refused the target's addresses.
    Refused(String),
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "HTTP {s} is not retried"),
            Self::AttemptsExhausted { last } => write!(f, "attempts exhausted, last: {last}"),
            Self::Invalid(why) => write!(f, "invalid request: {why}"),
            Self::Refused(why) => write!(f, "destination not allowed: {why}"),
        }
    }
}

impl RetryPolicy {
    /// Decides what follows the attempt that just finished.
    ///
    /// `attempt` is 1-based (0 is treated as 1). Retryable failures are
    /// retried while `attempt <= max_retries`, so with `max_retries = 3` the
    /// 4th failed attempt gives up.
    ///
    /// **Retry-After** (honoured on 429 and 503 only) is a floor, not a
    /// replacement: the delay is `max(jittered, min(retry_after,
    /// retry_after_max))`. Waiting at least as long as the target asked (up
    /// to our cap) is what the header means; never going below our own
    /// jittered backoff means a target that keeps answering `Retry-After: 0`
    /// cannot turn the retries into a tight loop, and calls that were
    /// throttled together stay spread out.
    pub fn decide<R: Rng + ?Sized>(&self, attempt: u32, outcome: &AttemptOutcome, rng: &mut R) -> Verdict {
        self.decide_after(attempt, Duration::MAX, outcome, rng)
    }

    /// [`decide`](Self::decide) for a call whose first attempt was `elapsed` ago: with a
    /// `retry_for` budget, used-up attempts give up only once `elapsed` reaches it.
    pub fn decide_after<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        elapsed: Duration,
        outcome: &AttemptOutcome,
        rng: &mut R,
    ) -> Verdict {
        let retry_after = match outcome {
            AttemptOutcome::Response { status, .. } if self.success.contains(*status) => {
                return Verdict::Success;
            }
            AttemptOutcome::Response { status, retry_after } => {
                if !is_retryable_status(*status) {
                    return Verdict::GiveUp {
                        reason: GiveUpReason::Status(*status),
                    };
                }
                if matches!(status, 429 | 503) {
                    *retry_after
                } else {
                    None
                }
            }
            AttemptOutcome::Invalid(why) => {
                return Verdict::GiveUp {
                    reason: GiveUpReason::Invalid(why.clone()),
                };
            }
            // Final: the policy will not change its mind before the next attempt.
            AttemptOutcome::Refused(why) => {
                return Verdict::GiveUp {
                    reason: GiveUpReason::Refused(why.clone()),
                };
            }
            AttemptOutcome::Timeout | AttemptOutcome::Connect(_) | AttemptOutcome::Unavailable => None,
        };
        let attempt = attempt.max(1);
        if self.exhausted(attempt, elapsed) {
            return Verdict::GiveUp {
                reason: GiveUpReason::AttemptsExhausted {
                    last: outcome.to_string(),
                },
            };
        }
        let jittered = self.jittered_delay(attempt, rng);
        let after = match retry_after {
            Some(asked) => jittered.max(asked.min(self.retry_after_max)),
            None => jittered,
        };
        Verdict::Retry { after }
    }

    /// Whether a call that has made `attempts` attempts, the first `elapsed` ago, is out
    /// of both budgets.
    pub fn exhausted(&self, attempts: u32, elapsed: Duration) -> bool {
        attempts > self.max_retries && elapsed >= self.retry_for
    }

    /// The delay bound after `attempt` (1-based), before jitter:
    /// `min(max_backoff, initial_backoff * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        2u32.checked_pow(attempt.max(1) - 1)
            .and_then(|factor| self.initial_backoff.checked_mul(factor))
            .map_or(self.max_backoff, |d| d.min(self.max_backoff))
    }

    /// A delay drawn uniformly from `[0, ceiling(attempt)]`.
    fn jittered_delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let bound = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=bound))
    }
}

/// Whether a non-success status is worth another attempt.
fn is_retryable_status(status: u16) -> bool {
    match status {
        408 | 429 => true,
        501 | 505 => false,
        500..=599 => true,
        _ => false,
    }
}

/// Parses a `Retry-After` value: delta-seconds, or an HTTP-date (IMF-fixdate,
/// and the obsolete RFC 850 and asctime forms RFC 9110 asks recipients to
/// accept) taken relative to `now`.
///
/// A date in the past gives zero; a delta too large for a `u64` saturates
/// (the policy clamps it anyway); anything else, including negative or
/// fractional numbers, gives `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            v.parse::<u64>()
                .map_or(Duration::from_secs(u64::MAX), Duration::from_secs),
        );
    }
    let when: SystemTime = v.parse::<HttpDate>().ok()?.into();
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::backoff::test_rng::{OnesRng, ZeroRng};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            retry_after_max: Duration::from_secs(30),
            success: SuccessCodes::default_2xx(),
            retry_for: Duration::ZERO,
        }
    }

    #[test]
    fn a_time_budget_keeps_retrying_after_the_attempts() {
        let mut p = policy();
        p.retry_for = Duration::from_secs(60);
        let mut rng = ZeroRng;
        let early = p.decide_after(9, Duration::from_secs(59), &resp(503), &mut rng);
        assert!(is_retry(&early), "attempts used, time left: retry");
        let late = p.decide_after(9, Duration::from_secs(60), &resp(503), &mut rng);
        assert!(matches!(late, Verdict::GiveUp { .. }), "both used: give up");
        let too_soon = p.decide_after(2, Duration::from_secs(600), &resp(503), &mut rng);
        assert!(is_retry(&too_soon), "time used, attempts left: retry");
        assert_eq!(
            p.decide_after(1, Duration::ZERO, &resp(404), &mut rng),
            Verdict::GiveUp {
                reason: GiveUpReason::Status(404)
            },
            "a final status is final whatever the budget"
        );
    }

    fn resp(status: u16) -> AttemptOutcome {
        AttemptOutcome::Response {
            status,
            retry_after: None,
        }
    }

    fn resp_ra(status: u16, secs: u64) -> AttemptOutcome {
        AttemptOutcome::Response {
            status,
            retry_after: Some(Duration::from_secs(secs)),
        }
    }

    fn is_retry(v: &Verdict) -> bool {
        matches!(v, Verdict::Retry { .. })
    }

    #[test]
    fn status_table() {
        let p = policy();
        let mut rng = ZeroRng;
        for s in [200, 201, 202, 204, 226, 299] {
            assert_eq!(p.decide(1, &resp(s), &mut rng), Verdict::Success, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 507, 599] {
            assert!(is_retry(&p.decide(1, &resp(s), &mut rng)), "{s} should retry");
        }
        for s in [
            100, 101, 300, 301, 302, 304, 307, 400, 401, 403, 404, 409, 410, 422, 451, 501, 505,
        ] {
            assert_eq!(
                p.decide(1, &resp(s), &mut rng),
                Verdict::GiveUp {
                    reason: GiveUpReason::Status(s)
                },
                "{s}"
            );
        }
    }

    #[test]
    fn custom_success_codes_change_the_table() {
        let mut p = policy();
        p.success = SuccessCodes::parse(&["200".to_owned()]).unwrap();
        let mut rng = ZeroRng;
        // Go's 200-only rule: a 204 is a final failure, not a retry.
        assert_eq!(
            p.decide(1, &resp(204), &mut rng),
            Verdict::GiveUp {
                reason: GiveUpReason::Status(204)
            }
        );
        p.success = SuccessCodes::parse(&["2xx".to_owned(), "404".to_owned()]).unwrap();
        assert_eq!(p.decide(1, &resp(404), &mut rng), Verdict::Success);
    }

    #[test]
    fn transport_failures_retry() {
        let p = policy();
        let mut rng = ZeroRng;
        for o in [
            AttemptOutcome::Timeout,
            AttemptOutcome::Connect("refused".into()),
            AttemptOutcome::Unavailable,
        ] {
            assert_eq!(
                p.decide(1, &o, &mut rng),
                Verdict::Retry {
                    after: Duration::ZERO
                },
                "{o:?}"
            );
        }
    }

    #[test]
    fn invalid_gives_up_at_once() {
        let p = policy();
        assert_eq!(
            p.decide(1, &AttemptOutcome::Invalid("bad url".into()), &mut ZeroRng),
            Verdict::GiveUp {
                reason: GiveUpReason::Invalid("bad url".into())
            }
        );
    }

    #[test]
    fn a_refused_destination_gives_up_at_once_even_with_attempts_left() {
        let p = policy();
        assert_eq!(
            p.decide(1, &AttemptOutcome::Refused("127.0.0.1:80".into()), &mut ZeroRng),
            Verdict::GiveUp {
                reason: GiveUpReason::Refused("127.0.0.1:80".into())
            }
        );
    }

    #[test]
    fn exhaustion_at_exactly_max_retries() {
        let p = policy(); // max_retries = 3: attempts 1..=3 may retry, attempt 4 is the last.
        for attempt in 1..=3 {
            assert!(
                is_retry(&p.decide(attempt, &resp(503), &mut ZeroRng)),
                "{attempt}"
            );
        }
        assert_eq!(
            p.decide(4, &resp(503), &mut ZeroRng),
            Verdict::GiveUp {
                reason: GiveUpReason::AttemptsExhausted {
                    last: "HTTP 503".into()
                }
            }
        );
        assert_eq!(
            p.decide(4, &AttemptOutcome::Timeout, &mut ZeroRng),
            Verdict::GiveUp {
                reason: GiveUpReason::AttemptsExhausted {
                    last: "timed out".into()
                }
            }
        );
        // A success on the last attempt is still a success.
        assert_eq!(p.decide(4, &resp(200), &mut ZeroRng), Verdict::Success);
        // No retries at all.
        let p0 = RetryPolicy { max_retries: 0, ..p };
        assert!(matches!(
            p0.decide(1, &AttemptOutcome::Timeout, &mut ZeroRng),
            Verdict::GiveUp {
                reason: GiveUpReason::AttemptsExhausted { .. }
            }
        ));
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = policy();
        let ms: Vec<u128> = (1..=6).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling(0), p.ceiling(1));
        // 2^(n-1) overflows u32 and Duration long before u32::MAX attempts.
        assert_eq!(p.ceiling(40), Duration::from_secs(1));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_bounds() {
        let p = RetryPolicy {
            max_retries: 100,
            ..policy()
        };
        // Smallest and largest draws hit the ends of [0, ceiling].
        for attempt in 1..=6 {
            assert_eq!(
                p.decide(attempt, &AttemptOutcome::Timeout, &mut ZeroRng),
                Verdict::Retry {
                    after: Duration::ZERO
                }
            );
            let Verdict::Retry { after } = p.decide(attempt, &AttemptOutcome::Timeout, &mut OnesRng) else {
                panic!("expected a retry");
            };
            let ceiling = p.ceiling(attempt);
            assert!(after <= ceiling, "{after:?} > {ceiling:?}");
            assert!(after >= ceiling.mul_f64(0.99), "{after:?} far below {ceiling:?}");
        }
        // Many draws stay in bounds and actually spread over the interval.
        let mut rng = StdRng::seed_from_u64(7);
        let ceiling = p.ceiling(3);
        let (mut low, mut high) = (0, 0);
        for _ in 0..1000 {
            let Verdict::Retry { after } = p.decide(3, &AttemptOutcome::Connect("x".into()), &mut rng) else {
                panic!("expected a retry");
            };
            assert!(after <= ceiling);
            if after < ceiling / 4 {
                low += 1;
            }
            if after > ceiling * 3 / 4 {
                high += 1;
            }
        }
        assert!(low > 150 && high > 150, "low={low} high={high}");
    }

    #[test]
    fn retry_after_on_429_and_503() {
        let p = policy();
        // Without the header: plain jitter.
        assert_eq!(
            p.decide(1, &resp(429), &mut ZeroRng),
            Verdict::Retry {
                after: Duration::ZERO
            }
        );
        // With it: at least what the target asked for.
        for s in [429, 503] {
            assert_eq!(
                p.decide(1, &resp_ra(s, 5), &mut ZeroRng),
                Verdict::Retry {
                    after: Duration::from_secs(5)
                },
                "{s}"
            );
        }
        // Clamped to retry_after_max.
        assert_eq!(
            p.decide(1, &resp_ra(429, 3600), &mut ZeroRng),
            Verdict::Retry {
                after: Duration::from_secs(30)
            }
        );
        // Never below the jittered delay: Retry-After 0 at attempt 3 with the largest draw.
        let Verdict::Retry { after } = p.decide(3, &resp_ra(503, 0), &mut OnesRng) else {
            panic!("expected a retry");
        };
        assert!(after >= Duration::from_millis(396), "{after:?}");
        // Ignored on other retryable statuses.
        assert_eq!(
            p.decide(1, &resp_ra(500, 60), &mut ZeroRng),
            Verdict::Retry {
                after: Duration::ZERO
            }
        );
        // And it does not extend the attempt budget.
        assert!(matches!(
            p.decide(4, &resp_ra(429, 1), &mut ZeroRng),
            Verdict::GiveUp { .. }
        ));
    }

    #[test]
    fn retry_after_parsing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // The obsolete forms RFC 9110 says to accept.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:47 1994", now),
            Some(Duration::from_secs(10))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for garbage in ["", "  ", "-5", "1.5", "soon", "120s", "Sun, 06 Nov 1994", "0x10"] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn success_codes_parsing() {
        let s = |v: &[&str]| SuccessCodes::parse(&v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
        let c = s(&["2xx"]).unwrap();
        assert!(c.contains(200) && c.contains(299) && !c.contains(199) && !c.contains(300));
        assert_eq!(c, SuccessCodes::default_2xx());
        assert_eq!(SuccessCodes::default(), SuccessCodes::default_2xx());
        let c = s(&["200", " 202-204 ", "3XX"]).unwrap();
        for ok in [200, 202, 203, 204, 300, 399] {
            assert!(c.contains(ok), "{ok}");
        }
        for no in [201, 205, 299, 400] {
            assert!(!c.contains(no), "{no}");
        }
        assert!(s(&["204-204"]).unwrap().contains(204));
        for bad in [
            &[][..],
            &["6xx"],
            &["0xx"],
            &["x"],
            &["99"],
            &["600"],
            &["204-200"],
            &["200-"],
            &["2xx", "abc"],
            &["é2x"],
            &[""],
        ] {
            assert!(s(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn give_up_reasons_read_well() {
        assert_eq!(GiveUpReason::Status(404).to_string(), "HTTP 404 is not retried");
        assert_eq!(
            GiveUpReason::AttemptsExhausted {
                last: "timed out".into()
            }
            .to_string(),
            "attempts exhausted, last: timed out"
        );
    }
}
