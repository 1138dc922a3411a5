//! The dead-letter topic of a consumer entry.
//!
//! A call that used all its attempts (or cannot be decoded) is written here,
//! and only then counts as finished, so its offset can be committed. The
//! record keeps the original key and value (the Go JSON) and adds headers that
//! say why.
//!
//! Every dead letter ends, so no call can hold its partition's committed
//! offset forever:
//!
//! ```text
//!  full letter ──ok──► Written
//!     │ too large (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE)
//!     ▼
//!  letter without its value (+ value size and SHA-256) ──ok──► WrittenWithoutValue
//!     │ too large again, or the time budget ran out on transient errors
//!     ▼
//!  Reported: one error log line with the reference (never the value) + deadLetterFailed
//! ```
//!
//! Transient errors (broker down, leader moving, timeouts) are retried with
//! backoff within the entry's `deadLetterTimeout`.
//!
//! # Cancellation
//! Dropping [`DeadLetterWriter::write`] (the partition is revoked) gives up at
//! once: the call stays uncommitted and the next owner reads it again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rskafka::record::Record;
use sha2::{Digest, Sha256};
use slog::{Logger, error, warn};
use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffConfig};
use crate::kafka::client::KafkaClient;
// The classification lives with the writer (retry tiers use it too); the dead-letter
// steps and their tests read it from here.
use crate::kafka::metadata::PartitionTable;
use crate::kafka::records::RecordWriter;
pub use crate::kafka::records::{Fault, WriteError};
use crate::stats::{ConsumerStats, inc};

/// Header prefix of everything the dead-letter path adds.
const PREFIX: &str = "bigpipe-dlq-";

/// Why a call was dead-lettered, and what happened to it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Original record key.
    pub key: Option<Vec<u8>>,
    /// Original record value.
    pub value: Vec<u8>,
    /// Original record headers.
    pub headers: BTreeMap<String, Vec<u8>>,
    /// Source partition and offset.
    pub source: (i32, i64),
    /// Human-readable reason.
    pub reason: String,
    /// Last HTTP status, when there was a response.
    pub last_status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// First and last attempt, ms since the epoch.
    pub first_attempt_ms: i64,
    /// Last attempt, ms since the epoch.
    pub last_attempt_ms: i64,
}

impl DeadLetter {
    /// The record written to the dead-letter topic.
    pub fn to_record(&self, group: &str, topic: &str) -> Record {
        let mut headers = self.headers.clone();
        let mut put = |k: &str, v: String| {
            headers.insert(format!("{PREFIX}{k}"), v.into_bytes());
        };
        put("reason", self.reason.clone());
        if let Some(status) = self.last_status {
            put("status", status.to_string());
        }
        put("attempts", self.attempts.to_string());
        put("first-attempt-ms", self.first_attempt_ms.to_string());
        put("last-attempt-ms", self.last_attempt_ms.to_string());
        put("group", group.to_owned());
        put("source", format!("{topic}/{}/{}", self.source.0, self.source.1));
        Record {
            key: self.key.clone(),
            value: Some(self.value.clone()),
            headers,
            timestamp: chrono::Utc::now(),
        }
    }

    /// The fallback record when Kafka refuses [`DeadLetter::to_record`] as too large: no
    /// value (absent, not empty), and headers giving the value's size
    /// (`bigpipe-dlq-value-bytes`) and SHA-256 (`bigpipe-dlq-value-sha256`, lower-case
    /// hex), so the call can still be matched with the caller's copy.
    pub fn to_record_without_value(&self, group: &str, topic: &str) -> Record {
        let mut record = self.to_record(group, topic);
        record.value = None;
        let mut put = |k: &str, v: String| {
            record.headers.insert(format!("{PREFIX}{k}"), v.into_bytes());
        };
        put("value-bytes", self.value.len().to_string());
        put("value-sha256", sha256_hex(&self.value));
        put(
            "value-omitted",
            "the dead letter with its value was too large for the dead-letter topic".to_owned(),
        );
        record
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    Sha256::digest(bytes)
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

/// How a dead letter ended. Every variant finishes the call: its offset may be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The full dead letter was written.
    Written,
    /// Kafka refused the full letter as too large; it was written without its value.
    WrittenWithoutValue,
    /// Nothing could be written within the budget; the call was reported in the log.
    Reported,
}

impl Outcome {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Written => "written",
            Self::WrittenWithoutValue => "written without value",
            Self::Reported => "reported",
        }
    }

    /// True when a letter (full or without its value) reached the dead-letter topic.
    pub fn written(self) -> bool {
        matches!(self, Self::Written | Self::WrittenWithoutValue)
    }

    /// Counts this outcome in the entry's `/stats`: `deadLettered` for a written
    /// letter (also `deadLetteredWithoutValue` for the fallback), `deadLetterFailed`
    /// for a reported one.
    pub fn count(self, stats: &ConsumerStats) {
        match self {
            Self::Written => inc(&stats.dead_lettered),
            Self::WrittenWithoutValue => {
                inc(&stats.dead_lettered);
                inc(&stats.dead_lettered_without_value);
            }
            Self::Reported => inc(&stats.dead_letter_failed),
        }
    }
}

/// Which record is being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The full letter, value included.
    Full,
    /// The fallback without the value.
    WithoutValue,
}

impl Stage {
    /// The outcome when this stage's record is written.
    pub fn written(self) -> Outcome {
        match self {
            Self::Full => Outcome::Written,
            Self::WithoutValue => Outcome::WrittenWithoutValue,
        }
    }
}

/// What to do after a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Try the same record again after this delay.
    Retry(Duration),
    /// Write the letter without its value, at once.
    DropValue,
    /// Give up writing: report the call in the log.
    Report,
}

/// The decision after a write failed with `fault` at `stage`, when the next backoff
/// is `delay` and `remaining` is left of the time budget. A too-large record is never
/// retried as it is; a transient error is retried until the budget is spent, the last
/// retry starting when it runs out.
pub fn next_step(stage: Stage, fault: Fault, delay: Duration, remaining: Duration) -> Step {
    match (fault, stage) {
        (Fault::TooLarge, Stage::Full) => Step::DropValue,
        (Fault::TooLarge, Stage::WithoutValue) => Step::Report,
        (Fault::Transient, _) if remaining.is_zero() => Step::Report,
        (Fault::Transient, _) => Step::Retry(delay.min(remaining)),
    }
}

/// Writes dead letters of one consumer entry.
#[derive(Debug)]
pub struct DeadLetterWriter {
    /// Dead-letter topic.
    pub topic: String,
    /// Consumer group, recorded in a header.
    pub group: String,
    /// Source topic, recorded in a header.
    pub source_topic: String,
    /// How long one dead letter may keep trying through transient errors (`deadLetterTimeout`).
    budget: Duration,
    client: Arc<KafkaClient>,
    table: Arc<PartitionTable>,
    writer: RecordWriter,
    log: Logger,
}

impl DeadLetterWriter {
    /// Creates a writer for `topic`; each letter tries for at most `budget`.
    pub fn new(
        topic: String,
        group: String,
        source_topic: String,
        budget: Duration,
        client: Arc<KafkaClient>,
        table: Arc<PartitionTable>,
        log: Logger,
    ) -> Self {
        let writer = RecordWriter::new(topic.clone(), Arc::clone(&client));
        Self {
            topic,
            group,
            source_topic,
            budget,
            writer,
            client,
            table,
            log,
        }
    }

    /// Writes `letter` of the call `call_id`: the full letter, else (too large) the
    /// letter without its value, else (too large again, or the budget spent on
    /// transient errors) one error log line. Always ends within about the budget
    /// plus one Kafka timeout, and every outcome finishes the call.
    ///
    /// # Cancellation
    /// Dropping the future gives up at once; the call then stays uncommitted.
    pub async fn write(&self, call_id: &str, letter: &DeadLetter) -> Outcome {
        let deadline = Instant::now() + self.budget;
        let count = self.table.count(&self.topic).unwrap_or(1).max(1);
        let partition = letter.source.0.rem_euclid(count);
        let mut stage = Stage::Full;
        let mut record = letter.to_record(&self.group, &self.source_topic);
        let mut backoff = Self::backoff();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Within the budget, but every try (the last one included) gets at least one timeout.
            let timeout = self.client.timeout();
            let bound = (timeout * 2).min(remaining.max(timeout));
            let error = match self.writer.write(partition, record.clone(), bound).await {
                Ok(_) => return stage.written(),
                Err(e) => e,
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match next_step(stage, error.fault(), backoff.next_delay(), remaining) {
                Step::Retry(delay) => {
                    warn!(self.log, "dead letter not written, retrying";
                        "call_id" => call_id, "topic" => &self.topic, "partition" => partition,
                        "error" => %error, "retry_in_ms" => delay.as_millis());
                    tokio::time::sleep(delay).await;
                }
                Step::DropValue => {
                    warn!(self.log, "dead letter too large, writing it without its value";
                        "call_id" => call_id, "topic" => &self.topic, "partition" => partition,
                        "value_bytes" => letter.value.len(), "error" => %error);
                    stage = Stage::WithoutValue;
                    record = letter.to_record_without_value(&self.group, &self.source_topic);
                    backoff = Self::backoff();
                }
                Step::Report => {
                    self.report(call_id, letter, &error);
                    return Outcome::Reported;
                }
            }
        }
    }

    /// The last resort: the call's reference in one error line (never its value).
    fn report(&self, call_id: &str, letter: &DeadLetter, error: &WriteError) {
        error!(self.log, "dead letter not written; the call is finished and only reported here";
            "call_id" => call_id,
            "source" => format!("{}/{}/{}", self.source_topic, letter.source.0, letter.source.1),
            "reason" => &letter.reason,
            "value_bytes" => letter.value.len(),
            "value_sha256" => sha256_hex(&letter.value),
            "dead_letter_topic" => &self.topic,
            "error" => %error);
    }

    fn backoff() -> Backoff {
        Backoff::new(BackoffConfig {
            max: Duration::from_secs(10),
            ..BackoffConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use rskafka::client::error::{Error as KafkaError, ProtocolError, RequestContext, RequestError};

    use super::*;

    fn letter() -> DeadLetter {
        DeadLetter {
            key: Some(b"k".to_vec()),
            value: b"{\"Url\":\"u\"}".to_vec(),
            headers: BTreeMap::from([("bigpipe-call-id".into(), b"id-1".to_vec())]),
            source: (2, 17),
            reason: "attempts exhausted: status 503".into(),
            last_status: Some(503),
            attempts: 3,
            first_attempt_ms: 1000,
            last_attempt_ms: 2000,
        }
    }

    fn server_error(protocol_error: ProtocolError) -> KafkaError {
        KafkaError::ServerError {
            protocol_error,
            error_message: None,
            request: RequestContext::Partition("calls.dlq".into(), 0),
            response: None,
            is_virtual: false,
        }
    }

    #[test]
    fn record_keeps_the_original_and_says_why() {
        let r = letter().to_record("G1", "calls");
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"{\"Url\":\"u\"}"[..]));
        let h = |k: &str| String::from_utf8(r.headers[k].clone()).unwrap();
        assert_eq!(h("bigpipe-call-id"), "id-1");
        assert_eq!(h("bigpipe-dlq-reason"), "attempts exhausted: status 503");
        assert_eq!(h("bigpipe-dlq-status"), "503");
        assert_eq!(h("bigpipe-dlq-attempts"), "3");
        assert_eq!(h("bigpipe-dlq-first-attempt-ms"), "1000");
        assert_eq!(h("bigpipe-dlq-group"), "G1");
        assert_eq!(h("bigpipe-dlq-source"), "calls/2/17");
        assert!(!r.headers.contains_key("bigpipe-dlq-value-bytes"));
    }

    #[test]
    fn record_without_value_keeps_the_headers_and_identifies_the_value() {
        let full = letter().to_record("G1", "calls");
        let r = letter().to_record_without_value("G1", "calls");
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value, None, "absent, not empty");
        let h = |k: &str| String::from_utf8(r.headers[k].clone()).unwrap();
        assert_eq!(h("bigpipe-dlq-value-bytes"), "11");
        // sha256 of {"Url":"u"}, as `printf '{"Url":"u"}' | sha256sum` prints it.
        assert_eq!(h("bigpipe-dlq-value-sha256"), sha256_hex(b"{\"Url\":\"u\"}"));
        assert_eq!(h("bigpipe-dlq-value-sha256").len(), 64);
        for (k, v) in &full.headers {
            assert_eq!(r.headers.get(k), Some(v), "{k} kept");
        }
    }

    #[test]
    fn sha256_is_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn too_large_refusals_are_final_everything_else_transient() {
        for p in [ProtocolError::MessageTooLarge, ProtocolError::RecordListTooLarge] {
            assert_eq!(WriteError::Produce(server_error(p)).fault(), Fault::TooLarge);
        }
        for p in [
            ProtocolError::NotLeaderOrFollower,
            ProtocolError::LeaderNotAvailable,
            ProtocolError::RequestTimedOut,
            ProtocolError::UnknownTopicOrPartition,
        ] {
            assert_eq!(WriteError::Produce(server_error(p)).fault(), Fault::Transient);
        }
        // The same code from a lookup is not about our record.
        let lookup = WriteError::Lookup(crate::kafka::client::Error::Kafka(server_error(
            ProtocolError::MessageTooLarge,
        )));
        assert_eq!(lookup.fault(), Fault::Transient);
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        let io = WriteError::Produce(KafkaError::Request(RequestError::IO(io)));
        assert_eq!(io.fault(), Fault::Transient);
        let timeout = WriteError::Timeout {
            what: "dead letter produce",
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.fault(), Fault::Transient);
        assert_eq!(WriteError::Produce(KafkaError::Timeout).fault(), Fault::Transient);
    }

    #[test]
    fn the_error_keeps_rskafka_as_its_source() {
        let e = WriteError::Produce(server_error(ProtocolError::MessageTooLarge));
        let source = std::error::Error::source(&e).expect("source");
        assert!(source.downcast_ref::<KafkaError>().is_some());
    }

    #[test]
    fn too_large_drops_the_value_once_then_reports() {
        let (s, m) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(next_step(Stage::Full, Fault::TooLarge, s, m), Step::DropValue);
        assert_eq!(
            next_step(Stage::WithoutValue, Fault::TooLarge, s, m),
            Step::Report
        );
        // Even with no budget left, a too-large full letter still gets its one fallback try.
        assert_eq!(
            next_step(Stage::Full, Fault::TooLarge, s, Duration::ZERO),
            Step::DropValue
        );
    }

    #[test]
    fn transient_errors_retry_until_the_budget_is_spent_then_report() {
        let s = Duration::from_secs(1);
        let ms = Duration::from_millis(300);
        for stage in [Stage::Full, Stage::WithoutValue] {
            assert_eq!(
                next_step(stage, Fault::Transient, s, Duration::from_secs(5)),
                Step::Retry(s)
            );
            // The last retry waits only for what is left, then tries once more.
            assert_eq!(next_step(stage, Fault::Transient, s, ms), Step::Retry(ms));
            assert_eq!(
                next_step(stage, Fault::Transient, s, Duration::ZERO),
                Step::Report
            );
        }
    }

    #[test]
    fn each_stage_names_its_outcome_and_counts_it() {
        assert_eq!(Stage::Full.written(), Outcome::Written);
        assert_eq!(Stage::WithoutValue.written(), Outcome::WrittenWithoutValue);
        let stats = ConsumerStats::default();
        for o in [Outcome::Written, Outcome::WrittenWithoutValue, Outcome::Reported] {
            o.count(&stats);
        }
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(load(&stats.dead_lettered), 2);
        assert_eq!(load(&stats.dead_lettered_without_value), 1);
        assert_eq!(load(&stats.dead_letter_failed), 1);
    }
}
