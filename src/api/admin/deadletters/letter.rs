//! One dead letter as the admin API shows it, read from its record (the format written by
//! `consumer::dlq`), and the record a replay writes back to the main topic.

use std::collections::BTreeMap;

use rskafka::record::Record;
use serde_json::{Value, json};

use crate::delivery::breaker::host_key;
use crate::delivery::redact::redact_url;
use crate::message::{CALL_ID_HEADER, CallMessage};
use crate::producer::partitioner::go_hash;

/// Header prefix of what the dead-letter path adds (`consumer::dlq`).
const DLQ_PREFIX: &str = "bigpipe-dlq-";
/// Header prefix of a call's retry progress (`consumer::tiers`): a replay starts afresh.
const RETRY_PREFIX: &str = "bigpipe-retry-";
/// Header a replayed call carries: `<dlqTopic>/<partition>/<offset>` of its dead letter.
pub use crate::message::REPLAY_OF_HEADER as REPLAY_HEADER;

/// Most ids one replay request may name.
pub const MAX_IDS: usize = 500;

/// The summary of one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Partition of the dead-letter topic.
    pub partition: i32,
    /// Offset in it.
    pub offset: i64,
    /// The call's id (its header, else `topic-partition-offset` of its source record).
    pub call_id: String,
    /// Target URL, credentials and query redacted; `None` when the value is absent or no call.
    pub url: Option<String>,
    /// Target host key (`scheme://host:port`).
    pub host: Option<String>,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Last HTTP status, when a response came.
    pub status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// First attempt, epoch ms.
    pub first_attempt_ms: Option<i64>,
    /// Last attempt, epoch ms.
    pub last_attempt_ms: Option<i64>,
    /// When the dead letter was written (its record timestamp), epoch ms.
    pub dead_lettered_at_ms: i64,
    /// True when Kafka refused the value and the letter carries only its size and hash.
    pub value_omitted: bool,
}

fn header(record: &Record, name: &str) -> Option<String> {
    record
        .headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn dlq(record: &Record, name: &str) -> Option<String> {
    header(record, &format!("{DLQ_PREFIX}{name}"))
}

impl Summary {
    /// Reads the dead letter at `partition`/`offset` of `dlq_topic`.
    pub fn read(dlq_topic: &str, partition: i32, offset: i64, record: &Record) -> Self {
        let message = record.value.as_deref().and_then(|v| CallMessage::decode(v).ok());
        let url = message.as_ref().map(|m| m.url.clone());
        Self {
            partition,
            offset,
            call_id: call_id(dlq_topic, partition, offset, record),
            host: url.as_deref().and_then(host_key),
            url: url.as_deref().map(redact_url),
            reason: dlq(record, "reason").unwrap_or_default(),
            status: dlq(record, "status").and_then(|s| s.parse().ok()),
            attempts: dlq(record, "attempts").and_then(|s| s.parse().ok()).unwrap_or(0),
            first_attempt_ms: dlq(record, "first-attempt-ms").and_then(|s| s.parse().ok()),
            last_attempt_ms: dlq(record, "last-attempt-ms").and_then(|s| s.parse().ok()),
            dead_lettered_at_ms: record.timestamp.timestamp_millis(),
            value_omitted: record.value.is_none() || dlq(record, "value-omitted").is_some(),
        }
    }

    /// `<partition>-<offset>`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.partition, self.offset)
    }

    /// The JSON of the contract, `replayed` filled in by the caller.
    pub fn to_json(&self, replayed: Option<Value>) -> Value {
        json!({
            "id": self.id(),
            "partition": self.partition,
            "offset": self.offset,
            "callId": self.call_id,
            "url": self.url,
            "host": self.host,
            "reason": self.reason,
            "status": self.status,
            "attempts": self.attempts,
            "firstAttemptMs": self.first_attempt_ms,
            "lastAttemptMs": self.last_attempt_ms,
            "deadLetteredAtMs": self.dead_lettered_at_ms,
            "valueOmitted": self.value_omitted,
            "replayed": replayed,
        })
    }
}

/// The call id of a dead letter: its call-id header; for a Go-written call (no header) the id
/// the consumer gave it, `topic-partition-offset` of its source record (from the
/// `bigpipe-dlq-source` header `topic/partition/offset`); failing both, the letter's own place.
pub fn call_id(dlq_topic: &str, partition: i32, offset: i64, record: &Record) -> String {
    if let Some(id) = header(record, CALL_ID_HEADER) {
        return id;
    }
    if let Some(source) = dlq(record, "source") {
        let mut parts = source.rsplitn(3, '/');
        if let (Some(o), Some(p), Some(t)) = (parts.next(), parts.next(), parts.next())
            && o.parse::<i64>().is_ok()
            && p.parse::<i32>().is_ok()
        {
            return format!("{t}-{p}-{o}");
        }
    }
    format!("{dlq_topic}-{partition}-{offset}")
}

/// The source partition named by the letter's `bigpipe-dlq-source` header.
fn source_partition(record: &Record) -> Option<i32> {
    let source = dlq(record, "source")?;
    let mut parts = source.rsplitn(3, '/');
    parts.next()?;
    parts.next()?.parse().ok()
}

/// Why an id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("id {0:?} is not <partition>-<offset>")]
pub struct IdError(pub String);

/// Reads an id `<partition>-<offset>` (both non-negative).
///
/// # Errors
/// [`IdError`] with (the start of) the id.
pub fn parse_id(id: &str) -> Result<(i32, i64), IdError> {
    let bad = || IdError(id.chars().take(40).collect());
    let (p, o) = id.split_once('-').ok_or_else(bad)?;
    // `parse` accepts a leading `+`; ids never carry one.
    if !p.bytes().all(|b| b.is_ascii_digit()) || !o.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    Ok((p.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?))
}

/// The record a replay writes to the main topic: the original key and value; the original
/// headers minus the dead-letter ones and the retry progress (a fresh retry budget), plus
/// the call id (so the target sees the same id) and `bigpipe-replay-of`.
pub fn replay_record(dlq_topic: &str, partition: i32, offset: i64, letter: &Record) -> Record {
    let call_id = call_id(dlq_topic, partition, offset, letter);
    let mut headers: BTreeMap<String, Vec<u8>> = letter
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(DLQ_PREFIX) && !k.starts_with(RETRY_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    headers.insert(CALL_ID_HEADER.to_owned(), call_id.into_bytes());
    headers.insert(
        REPLAY_HEADER.to_owned(),
        format!("{dlq_topic}/{partition}/{offset}").into_bytes(),
    );
    Record {
        key: letter.key.clone(),
        value: letter.value.clone(),
        headers,
        timestamp: chrono::Utc::now(),
    }
}

/// The main-topic partition a replay writes to: the one the producer chooses for the key
/// (the Go hash, so a key keeps its partition and order with its neighbours); a call without
/// a key goes back to the partition it came from.
pub fn replay_partition(letter: &Record, dlq_partition: i32, count: i32) -> i32 {
    let count = count.max(1);
    match letter.key.as_deref() {
        Some(key) if !key.is_empty() => go_hash(&String::from_utf8_lossy(key), count),
        _ => source_partition(letter)
            .unwrap_or(dlq_partition)
            .rem_euclid(count),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::consumer::dlq::DeadLetter;
    use crate::consumer::tiers;

    fn letter(key: Option<&str>, call_id: Option<&str>) -> Record {
        let mut headers = BTreeMap::from([(tiers::ATTEMPTS_HEADER.to_owned(), b"4".to_vec())]);
        headers.insert("x-caller".into(), b"kept".to_vec());
        if let Some(id) = call_id {
            headers.insert(CALL_ID_HEADER.into(), id.as_bytes().to_vec());
        }
        let message = CallMessage {
            headers: BTreeMap::new(),
            url: "http://user:pw@t.example:8080/hook?token=s".into(),
            data: "{}".into(),
            topic: "calls".into(),
            partition: 2,
            create_time: 1,
            ..CallMessage::default()
        };
        let mut r = DeadLetter {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: message.encode(),
            headers,
            source: (2, 17),
            reason: "attempts exhausted: status 503".into(),
            last_status: Some(503),
            attempts: 3,
            first_attempt_ms: 1000,
            last_attempt_ms: 2000,
        }
        .to_record("G1", "calls");
        r.timestamp = chrono::Utc.timestamp_millis_opt(5000).unwrap();
        r
    }

    #[test]
    fn a_summary_reads_the_dead_letter_headers() {
        let s = Summary::read("calls.dlq", 1, 9, &letter(Some("k"), Some("id-1")));
        assert_eq!(s.id(), "1-9");
        assert_eq!(s.call_id, "id-1");
        assert_eq!(s.status, Some(503));
        assert_eq!(s.attempts, 3);
        assert_eq!(s.first_attempt_ms, Some(1000));
        assert_eq!(s.last_attempt_ms, Some(2000));
        assert_eq!(s.dead_lettered_at_ms, 5000);
        assert_eq!(s.host.as_deref(), Some("http://t.example:8080"));
        let url = s.url.clone().unwrap();
        assert!(!url.contains("pw") && !url.contains("token=s"), "{url}");
        assert!(!s.value_omitted);
        let j = s.to_json(None);
        assert_eq!(j["deadLetteredAtMs"], 5000);
        assert_eq!(j["replayed"], Value::Null);
    }

    #[test]
    fn a_letter_without_value_or_call_id_still_summarises() {
        let mut r = letter(None, None);
        r.value = None;
        let s = Summary::read("calls.dlq", 0, 3, &r);
        assert!(s.value_omitted);
        assert_eq!(s.url, None);
        // The id the consumer gave the Go-written call: its source place.
        assert_eq!(s.call_id, "calls-2-17");
        r.headers.remove("bigpipe-dlq-source");
        assert_eq!(call_id("calls.dlq", 0, 3, &r), "calls.dlq-0-3");
        r.headers.insert("bigpipe-dlq-source".into(), b"garbage".to_vec());
        assert_eq!(call_id("calls.dlq", 0, 3, &r), "calls.dlq-0-3");
    }

    #[test]
    fn a_replay_keeps_the_call_and_starts_a_fresh_budget() {
        let original = letter(Some("k"), Some("id-1"));
        let r = replay_record("calls.dlq", 1, 9, &original);
        assert_eq!(r.key, original.key);
        assert_eq!(r.value, original.value);
        let h = |k: &str| r.headers.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        assert_eq!(h(CALL_ID_HEADER).as_deref(), Some("id-1"));
        assert_eq!(h(REPLAY_HEADER).as_deref(), Some("calls.dlq/1/9"));
        assert_eq!(h("x-caller").as_deref(), Some("kept"));
        assert!(
            r.headers.keys().all(|k| !k.starts_with("bigpipe-dlq-")),
            "{:?}",
            r.headers
        );
        assert!(
            r.headers.keys().all(|k| !k.starts_with("bigpipe-retry-")),
            "{:?}",
            r.headers
        );
        // A Go-written call gets the id the consumer knew it by.
        let go = replay_record("calls.dlq", 1, 9, &letter(None, None));
        assert_eq!(go.headers[CALL_ID_HEADER], b"calls-2-17");
    }

    #[test]
    fn a_replay_goes_where_the_producer_would_put_the_key() {
        let keyed = letter(Some("order-42"), None);
        assert_eq!(replay_partition(&keyed, 0, 6), go_hash("order-42", 6));
        // No key: back to the source partition (2 of `calls/2/17`), within the count.
        assert_eq!(replay_partition(&letter(None, None), 0, 6), 2);
        assert_eq!(replay_partition(&letter(None, None), 0, 2), 0);
        assert_eq!(replay_partition(&letter(Some(""), None), 5, 0), 0);
    }

    #[test]
    fn ids_are_partition_dash_offset_and_nothing_else() {
        assert_eq!(parse_id("0-0"), Ok((0, 0)));
        assert_eq!(parse_id("12-345"), Ok((12, 345)));
        for bad in [
            "",
            "-",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-b",
            "+1-2",
            "1-+2",
            "1--2",
            "1-2-3",
            "99999999999-1",
            "1-99999999999999999999",
            " 1-2",
        ] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
    }
}
