//! Retry tiers: delay topics where calls wait for their next attempt, so a
//! failing target never holds a partition's window (uForwarder's retry queues,
//! done for bigpipe).
//!
//! ```text
//!  main partition ── attempt fails, next due in ≥ 1 s ──► <topic>.retry.<groupId>.<tier> (acked) ──► main commits past it
//!                                                              │ group <groupId>.retry.<tier>
//!  tier partition ── hold until due (at most the tier's delay) ─┴─► attempt ─► delivered | next tier | dead letter
//! ```
//!
//! A parked record is the original (key, value, headers) plus the headers below.
//! Every record of one tier waits about the same time, so a tier partition is in
//! due order and holding its head delays the records behind it by at most the
//! tier's delay.

use std::collections::BTreeMap;
use std::time::Duration;

/// A retry due sooner than this waits in the partition's window: a round trip
/// through Kafka would cost more than it saves.
pub const IN_WINDOW_RETRY_MAX: Duration = Duration::from_secs(1);

/// Attempts made so far (decimal).
pub const ATTEMPTS_HEADER: &str = "bigpipe-retry-attempts";
/// When the next attempt is due, ms since the epoch.
pub const DUE_HEADER: &str = "bigpipe-retry-due-ms";
/// The first attempt, ms since the epoch (for `retryFor` and dead letters).
pub const FIRST_ATTEMPT_HEADER: &str = "bigpipe-retry-first-attempt-ms";
/// Where the call was first read: `topic/partition/offset`.
pub const SOURCE_HEADER: &str = "bigpipe-retry-source";
/// Why the call was parked (the last attempt's outcome, or an open circuit).
pub const REASON_HEADER: &str = "bigpipe-retry-reason";

/// What a call carries from one attempt to the next, across tier topics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Attempts made (0 for a fresh call).
    pub attempts: u32,
    /// The first attempt, ms since the epoch.
    pub first_attempt_ms: Option<i64>,
    /// When the next attempt is due, ms since the epoch.
    pub due_ms: Option<i64>,
    /// Where the call was first read, when it came from a tier.
    pub source: Option<String>,
}

impl Progress {
    /// Reads the retry headers. Anything missing or malformed (a record written by
    /// another producer, or a hostile one) reads as a fresh call's value: the worst
    /// case is one attempt too many, never a stuck or lost call.
    pub fn from_headers(headers: &BTreeMap<String, Vec<u8>>) -> Self {
        fn parse<T: std::str::FromStr>(headers: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<T> {
            std::str::from_utf8(headers.get(key)?).ok()?.trim().parse().ok()
        }
        Self {
            attempts: parse(headers, ATTEMPTS_HEADER).unwrap_or(0),
            first_attempt_ms: parse(headers, FIRST_ATTEMPT_HEADER),
            due_ms: parse(headers, DUE_HEADER),
            source: headers
                .get(SOURCE_HEADER)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        }
    }

    /// The headers of the parked record: the original ones without any earlier retry
    /// headers, plus this progress, `source` (kept from the first park) and `reason`.
    pub fn park_headers(
        &self,
        original: &BTreeMap<String, Vec<u8>>,
        source: &str,
        reason: &str,
    ) -> BTreeMap<String, Vec<u8>> {
        let mut headers: BTreeMap<String, Vec<u8>> = original
            .iter()
            .filter(|(k, _)| !k.starts_with("bigpipe-retry-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut put = |k: &str, v: String| {
            headers.insert(k.to_owned(), v.into_bytes());
        };
        put(ATTEMPTS_HEADER, self.attempts.to_string());
        if let Some(first) = self.first_attempt_ms {
            put(FIRST_ATTEMPT_HEADER, first.to_string());
        }
        if let Some(due) = self.due_ms {
            put(DUE_HEADER, due.to_string());
        }
        put(
            SOURCE_HEADER,
            self.source.clone().unwrap_or_else(|| source.to_owned()),
        );
        // Bounded: a reason is one attempt's outcome, but a target's error text must not
        // grow the record without limit.
        put(REASON_HEADER, truncate(reason, 256).to_owned());
        headers
    }
}

/// Where a retry waits for its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// In the partition's window: short, or there are no tiers.
    InWindow(Duration),
    /// In tier `index` (of the entry's `retryTiers`).
    Tier(usize),
}

/// Chooses where a retry `delay` from now waits: the smallest tier at least as long
/// as the delay (so holding the tier's head delays others by no more than needed),
/// the largest tier for longer delays (the call is parked again when it comes back
/// early), and the window for delays under [`IN_WINDOW_RETRY_MAX`] or without tiers.
pub fn place(delay: Duration, tiers: &[Duration]) -> Wait {
    if delay < IN_WINDOW_RETRY_MAX || tiers.is_empty() {
        return Wait::InWindow(delay);
    }
    let index = tiers.iter().position(|&t| t >= delay).unwrap_or(tiers.len() - 1);
    Wait::Tier(index)
}

/// How long a tier consumer holds a record read at `now_ms` before its attempt:
/// until it is due, but never longer than the tier's delay after it was written,
/// so a record with a far (or forged) due time cannot hold the partition.
pub fn hold_for(now_ms: i64, due_ms: Option<i64>, written_ms: i64, tier_delay: Duration) -> Duration {
    let cap = written_ms.saturating_add(i64::try_from(tier_delay.as_millis()).unwrap_or(i64::MAX));
    let until = due_ms.unwrap_or(now_ms).min(cap);
    Duration::from_millis(u64::try_from(until.saturating_sub(now_ms)).unwrap_or(0))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIERS: [Duration; 3] = [
        Duration::from_secs(5),
        Duration::from_secs(60),
        Duration::from_secs(600),
    ];

    #[test]
    fn short_delays_stay_in_the_window() {
        assert_eq!(
            place(Duration::from_millis(999), &TIERS),
            Wait::InWindow(Duration::from_millis(999))
        );
        assert_eq!(
            place(Duration::from_secs(30), &[]),
            Wait::InWindow(Duration::from_secs(30))
        );
    }

    #[test]
    fn the_smallest_tier_that_covers_the_delay() {
        assert_eq!(place(Duration::from_secs(1), &TIERS), Wait::Tier(0));
        assert_eq!(place(Duration::from_secs(5), &TIERS), Wait::Tier(0));
        assert_eq!(place(Duration::from_millis(5001), &TIERS), Wait::Tier(1));
        assert_eq!(place(Duration::from_secs(600), &TIERS), Wait::Tier(2));
        assert_eq!(place(Duration::from_secs(86_400), &TIERS), Wait::Tier(2));
    }

    #[test]
    fn hold_until_due_but_never_past_the_tier_delay() {
        let tier = Duration::from_secs(5);
        assert_eq!(hold_for(1_000, Some(3_000), 1_000, tier), Duration::from_secs(2));
        assert_eq!(hold_for(1_000, Some(99_000), 1_000, tier), Duration::from_secs(5));
        assert_eq!(hold_for(10_000, Some(3_000), 1_000, tier), Duration::ZERO);
        assert_eq!(hold_for(1_000, None, 1_000, tier), Duration::ZERO);
        assert_eq!(
            hold_for(1_000, Some(i64::MAX), i64::MAX, tier),
            Duration::from_millis(u64::try_from(i64::MAX - 1_000).unwrap())
        );
    }

    #[test]
    fn headers_round_trip_and_replace_older_ones() {
        let original = BTreeMap::from([
            ("bigpipe-call-id".to_owned(), b"id-1".to_vec()),
            (ATTEMPTS_HEADER.to_owned(), b"1".to_vec()),
            (SOURCE_HEADER.to_owned(), b"calls/2/17".to_vec()),
        ]);
        let first = Progress::from_headers(&original);
        assert_eq!(first.attempts, 1);
        let next = Progress {
            attempts: 2,
            first_attempt_ms: Some(100),
            due_ms: Some(5_100),
            source: first.source.clone(),
        };
        let headers = next.park_headers(&original, "calls.retry.G1.5s/0/3", "status 503");
        assert_eq!(headers["bigpipe-call-id"], b"id-1");
        assert_eq!(headers[SOURCE_HEADER], b"calls/2/17", "the first source is kept");
        assert_eq!(headers[REASON_HEADER], b"status 503");
        assert_eq!(Progress::from_headers(&headers), next);
    }

    #[test]
    fn garbage_headers_read_as_a_fresh_call() {
        let headers = BTreeMap::from([
            (ATTEMPTS_HEADER.to_owned(), b"-3".to_vec()),
            (DUE_HEADER.to_owned(), vec![0xff, 0xfe]),
            (
                FIRST_ATTEMPT_HEADER.to_owned(),
                b"99999999999999999999999".to_vec(),
            ),
        ]);
        assert_eq!(Progress::from_headers(&headers), Progress::default());
    }

    #[test]
    fn reasons_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(300);
        let h = Progress::default().park_headers(&BTreeMap::new(), "t/0/0", &long);
        let reason = std::str::from_utf8(&h[REASON_HEADER]).unwrap();
        assert!(reason.len() <= 256 && reason.chars().all(|c| c == 'é'));
    }
}
