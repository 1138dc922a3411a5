//! Retry inputs that come from outside: the retry-tier headers of a record (any producer can
//! write them) and a target's `Retry-After`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use awc::http::header::HttpDate;
use proptest::prelude::*;

use super::{config, nasty_string};
use crate::consumer::tiers::{
    ATTEMPTS_HEADER, DUE_HEADER, FIRST_ATTEMPT_HEADER, Progress, REASON_HEADER, SOURCE_HEADER, hold_for,
};
use crate::delivery::retry::parse_retry_after;

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            ATTEMPTS_HEADER,
            DUE_HEADER,
            FIRST_ATTEMPT_HEADER,
            SOURCE_HEADER,
            REASON_HEADER
        ])
        .prop_map(str::to_owned),
        nasty_string(12),
    ]
}

/// Bytes that are sometimes numbers (with spaces, signs, overflow) and sometimes anything.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        any::<u64>().prop_map(|n| format!(" {n}\t").into_bytes()),
        "[-+ 0-9]{0,24}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..32),
    ]
}

fn progress() -> impl Strategy<Value = Progress> {
    (
        any::<u32>(),
        prop::option::of(any::<i64>()),
        prop::option::of(any::<i64>()),
        prop::option::of(nasty_string(20)),
    )
        .prop_map(|(attempts, first_attempt_ms, due_ms, source)| Progress {
            attempts,
            first_attempt_ms,
            due_ms,
            source,
        })
}

fn epoch_plus(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

proptest! {
    #![proptest_config(config(256))]

    /// Hostile retry headers read as some progress, never a panic; a hold never exceeds the
    /// tier's delay, whatever due time they claim.
    #[test]
    fn retry_headers_never_panic_and_holds_stay_bounded(
        headers in prop::collection::btree_map(header_name(), header_value(), 0..8),
        now in any::<i64>(),
        written in any::<i64>(),
        delay_ms in 0u64..86_400_000,
    ) {
        let p = Progress::from_headers(&headers);
        let hold = hold_for(now, p.due_ms, written, Duration::from_millis(delay_ms));
        if written <= now {
            prop_assert!(hold <= Duration::from_millis(delay_ms));
        }
    }

    /// What a park writes, the next tier reads back; the reason header stays short and UTF-8.
    #[test]
    fn park_headers_round_trip(
        p in progress(),
        original in prop::collection::btree_map(header_name(), header_value(), 0..6),
        source in nasty_string(20),
        reason in nasty_string(400),
    ) {
        let parked = p.park_headers(&original, &source, &reason);
        let back = Progress::from_headers(&parked);
        prop_assert_eq!(back.attempts, p.attempts);
        prop_assert_eq!(back.first_attempt_ms, p.first_attempt_ms);
        prop_assert_eq!(back.due_ms, p.due_ms);
        prop_assert_eq!(back.source, Some(p.source.clone().unwrap_or(source)));
        let written = std::str::from_utf8(&parked[REASON_HEADER]);
        prop_assert!(written.is_ok());
        let written = written.expect("checked");
        prop_assert!(written.len() <= 256 && reason.starts_with(written));
        let kept: BTreeMap<_, _> = original.iter().filter(|(k, _)| !k.starts_with("bigpipe-retry-")).collect();
        prop_assert!(kept.iter().all(|(k, v)| parked.get(k.as_str()) == Some(v)));
    }

    #[test]
    fn retry_after_never_panics(value in prop_oneof![nasty_string(40), "[0-9 ]{0,30}", "-?[0-9]{1,5}(\\.[0-9]{1,3})?"], now in any::<u32>()) {
        let _ = parse_retry_after(&value, epoch_plus(u64::from(now)));
    }

    #[test]
    fn retry_after_seconds_parse(secs in any::<u64>(), now in any::<u32>()) {
        prop_assert_eq!(parse_retry_after(&format!(" {secs} "), epoch_plus(u64::from(now))), Some(Duration::from_secs(secs)));
    }

    /// An HTTP-date `delta` seconds after `now` gives `delta`; one before gives zero.
    #[test]
    fn retry_after_dates_are_relative_to_now(now in 1_000_000u64..4_000_000_000, delta in -1_000_000i64..1_000_000) {
        let when = epoch_plus(now.saturating_add_signed(delta));
        let text = HttpDate::from(when).to_string();
        let got = parse_retry_after(&text, epoch_plus(now));
        prop_assert_eq!(got, Some(Duration::from_secs(u64::try_from(delta).unwrap_or(0))));
    }
}
