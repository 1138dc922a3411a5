//! Callbacks (`callback_url`): a call's final outcome, POSTed to the URL its caller gave.
//!
//! ```text
//!  call ends (delivered | dead-lettered) ─► callback record written to the entry's topic
//!        (same partition and key, before the call's offset may be committed)
//!                                                 │
//!  callback record ─► delivered by the same group as any call: rate, slots, signing,
//!                     retries, retry tiers, dead letter (other groups finish it unsent)
//! ```
//!
//! So a callback arrives at least once, across crashes, restarts and rebalances: if the
//! process dies after writing it and before committing the call, the call is delivered
//! again and a second callback is written (the same `X-Bigpipe-Call-Id`, `<call id>.callback`,
//! so a receiver can tell). The body never carries the call's data or headers.

use std::collections::BTreeMap;
use std::time::Duration;

use rskafka::record::Record;
use serde::Serialize;
use slog::{debug, error, warn};

use super::Lane;
use super::call::{Call, End};
use crate::kafka::records::Fault;
use crate::message::{CALL_ID_HEADER, CallMessage};
use crate::stats::inc;

/// How a call ended, as its callback reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The target took it.
    Delivered {
        /// The target's status.
        status: Option<u16>,
    },
    /// Given up and dead-lettered (or, without a dead-letter topic, reported in the log).
    DeadLettered {
        /// Why.
        reason: &'a str,
        /// The last status the target answered, if it answered.
        status: Option<u16>,
    },
}

/// The JSON a callback URL receives.
#[derive(Debug, Serialize)]
struct Body<'a> {
    /// The call the outcome is about.
    call_id: &'a str,
    /// The consumer group that delivered (or gave up on) it.
    group: &'a str,
    /// `delivered` or `dead_lettered`.
    outcome: &'static str,
    /// The target's last HTTP status, when it answered.
    status: Option<u16>,
    /// Attempts made, across retry tiers.
    attempts: u32,
    /// Why the call was given up (dead letters only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// When the call ended, ms since the Unix epoch.
    finished_at: i64,
}

/// The id of the callback call of `call_id`.
pub fn callback_id(call_id: &str) -> String {
    format!("{call_id}.callback")
}

/// The record of `call`'s callback when it asked for one (and is not itself a callback):
/// a call to its `callback_url` with the outcome as JSON, on `topic`, for `group` only.
pub fn record(
    call: &Call,
    group: &str,
    topic: &str,
    outcome: Outcome<'_>,
    attempts: u32,
    now_ms: i64,
) -> Option<Record> {
    let url = call.message.callback_url.clone()?;
    if call.message.callback_group.is_some() {
        return None;
    }
    let (outcome_name, status, reason) = match outcome {
        Outcome::Delivered { status } => ("delivered", status, None),
        Outcome::DeadLettered { reason, status } => ("dead_lettered", status, Some(reason)),
    };
    let body = Body {
        call_id: &call.id,
        group,
        outcome: outcome_name,
        status,
        attempts,
        reason,
        finished_at: now_ms,
    };
    let message = CallMessage {
        url,
        // Serialising a struct of strings and numbers cannot fail.
        data: serde_json::to_string(&body).unwrap_or_default(),
        topic: topic.to_owned(),
        partition: call.partition,
        create_time: now_ms,
        content_type: Some("application/json".to_owned()),
        callback_group: Some(group.to_owned()),
        ..CallMessage::default()
    };
    Some(Record {
        key: call.record.key.clone(),
        value: Some(message.encode()),
        headers: BTreeMap::from([(CALL_ID_HEADER.to_owned(), callback_id(&call.id).into_bytes())]),
        timestamp: chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_else(chrono::Utc::now),
    })
}

/// Whether `call` is a callback another group must deliver: this group finishes it unsent.
pub fn for_another_group(call: &Call, group: &str) -> bool {
    call.message.callback_group.as_deref().is_some_and(|g| g != group)
}

/// Writes `call`'s callback, when it asked for one, before its life ends: retried until the
/// entry's `deadLetterTimeout`, then reported in the log and counted (`callbackFailed`).
/// A stop does not cut it short: the drain timeout does, and then the call is read again.
pub async fn send(lane: &Lane, call: &Call, outcome: Outcome<'_>, attempts: u32) -> End {
    let entry = &*lane.entry;
    let now = chrono::Utc::now().timestamp_millis();
    let Some(record) = record(
        call,
        &entry.settings.group_id,
        &entry.settings.topic,
        outcome,
        attempts,
        now,
    ) else {
        return End::Finished;
    };
    let deadline = tokio::time::Instant::now() + entry.settings.dead_letter_timeout;
    let bound = entry.client.timeout() * 2;
    let mut tries = 0u32;
    loop {
        tries += 1;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match entry
            .callbacks
            .write(call.partition, record.clone(), bound.min(left))
            .await
        {
            Ok(offset) => {
                inc(&entry.stats.callbacks);
                debug!(lane.log, "callback written"; "call_id" => &call.id, "offset" => offset);
                return End::Finished;
            }
            Err(e) if e.fault() == Fault::TooLarge || tokio::time::Instant::now() >= deadline => {
                // Reported: the call itself is finished (delivered or dead-lettered).
                inc(&entry.stats.callback_failed);
                error!(lane.log, "callback not written, the caller will not hear of the call's end";
                    "call_id" => &call.id, "tries" => tries, "error" => %e);
                return End::Finished;
            }
            Err(e) => {
                warn!(lane.log, "callback write failed, trying again"; "call_id" => &call.id, "error" => %e);
                let pause = (Duration::from_millis(200) * tries).min(Duration::from_secs(5));
                tokio::time::sleep(
                    pause.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
                )
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rskafka::record::RecordAndOffset;

    use super::*;
    use crate::consumer::call::decode;

    fn call(value: &str) -> Call {
        let read = RecordAndOffset {
            record: Record {
                key: Some(b"k".to_vec()),
                value: Some(value.as_bytes().to_vec()),
                headers: BTreeMap::from([(CALL_ID_HEADER.to_owned(), b"id-1".to_vec())]),
                timestamp: chrono::Utc::now(),
            },
            offset: 7,
        };
        decode("calls", 2, read).unwrap()
    }

    const WITH_CALLBACK: &str = r#"{"Headers":{"Cookie":["secret"]},"Url":"http://t/x","Data":"private","Topic":"calls","Partition":2,"CreateTime":1,"CallbackUrl":"http://cb/done"}"#;

    #[test]
    fn the_outcome_is_a_call_to_the_callback_url_for_this_group_only() {
        let c = call(WITH_CALLBACK);
        let outcome = Outcome::DeadLettered {
            reason: "status 500 is not retryable",
            status: Some(500),
        };
        let r = record(&c, "G1", "calls", outcome, 3, 1_700_000_000_000).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.headers[CALL_ID_HEADER], b"id-1.callback");
        let m = CallMessage::decode(r.value.as_deref().unwrap()).unwrap();
        assert_eq!((m.url.as_str(), m.partition), ("http://cb/done", 2));
        assert_eq!(m.callback_group.as_deref(), Some("G1"));
        assert_eq!(m.content_type.as_deref(), Some("application/json"));
        assert_eq!(m.callback_url, None, "a callback has no callback");
        assert!(m.headers.is_empty(), "the caller's headers stay out");
        assert_eq!(
            m.data,
            r#"{"call_id":"id-1","group":"G1","outcome":"dead_lettered","status":500,"attempts":3,"reason":"status 500 is not retryable","finished_at":1700000000000}"#
        );
        let delivered = record(&c, "G1", "calls", Outcome::Delivered { status: Some(204) }, 1, 5).unwrap();
        let m = CallMessage::decode(delivered.value.as_deref().unwrap()).unwrap();
        assert_eq!(
            m.data,
            r#"{"call_id":"id-1","group":"G1","outcome":"delivered","status":204,"attempts":1,"finished_at":5}"#
        );
    }

    #[test]
    fn no_callback_without_a_url_and_none_for_a_callback() {
        let plain = call(
            r#"{"Headers":{},"Url":"http://t/x","Data":"","Topic":"calls","Partition":2,"CreateTime":1}"#,
        );
        assert!(record(&plain, "G", "calls", Outcome::Delivered { status: None }, 1, 1).is_none());
        let cb = call(
            r#"{"Headers":{},"Url":"http://cb/","Data":"","Topic":"calls","Partition":2,"CreateTime":1,"CallbackUrl":"http://x/","CallbackGroup":"G"}"#,
        );
        assert!(record(&cb, "G", "calls", Outcome::Delivered { status: None }, 1, 1).is_none());
        assert!(!for_another_group(&cb, "G"));
        assert!(for_another_group(&cb, "G2"));
        assert!(!for_another_group(&plain, "G2"));
    }
}
