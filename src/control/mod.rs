//! The control topic: shared, durable operator state every bigpipe process reads.
//!
//! Operator actions that must hold for a whole consumer group, across processes and restarts
//! (pause, retransmit, dead-letter replay markers), are written as records to one compacted,
//! single-partition topic (`admin.control.topic`, default `bigpipe.control`). Every process runs
//! one [`reader::ControlReader`] that reads it from the start and keeps key → latest JSON value
//! ([`state::ControlState`]); compaction keeps the topic as small as the set of keys.
//!
//! - [`Control`]: the shared handle. [`Control::get`] reads this process's view,
//!   [`Control::put`] writes and waits until the reader has passed the write
//!   (read-your-writes), [`Control::subscribe`] notifies on every change.
//! - [`keys`]: the key layout (`pause/<group>/<topic>`, `seek/<group>/<topic>`,
//!   `replay/<dlqTopic>/<partition>/<offset>`).
//!
//! Values are JSON objects carrying `by` (the operator) and `atMs` (when; [`Control::put`] adds
//! it when missing). A record whose key or value cannot be read is skipped and counted, never
//! fatal: one bad record must not stop every process from reading the others.

pub mod keys;
pub mod reader;
pub mod state;

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rskafka::record::Record;
use serde_json::Value;
use tokio::sync::watch;

use crate::kafka::client::KafkaClient;
use crate::kafka::records::{RecordWriter, WriteError};
use state::ControlState;

/// Why a [`Control::put`] did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The value is neither a JSON object nor `null` (a tombstone).
    #[error("control values are JSON objects (or null to delete)")]
    NotAnObject,
    /// The key is empty.
    #[error("control keys are not empty")]
    EmptyKey,
    /// Kafka did not take the record.
    #[error("control topic write failed: {0}")]
    Write(#[from] WriteError),
    /// The record was written, but this process's reader did not reach it in time (the
    /// control topic cannot be read): the change holds, this process does not see it yet.
    #[error("control record written at offset {offset}, but not read back within {after:?}")]
    NotSeen {
        /// Where the record was written.
        offset: i64,
        /// The bound that ran out.
        after: Duration,
    },
}

/// Where the reader has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The offset after the last record read.
    pub next_offset: i64,
    /// True once the reader reached the high watermark it found first (everything written
    /// before this process started is known).
    pub caught_up: bool,
}

/// The reader's health, for `/readyz` and `/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlStatus {
    /// See [`Progress::caught_up`].
    pub caught_up: bool,
    /// The last read error, cleared by the next successful read.
    pub error: Option<String>,
    /// Records skipped as malformed.
    pub malformed: u64,
    /// Keys held.
    pub keys: usize,
    /// The offset after the last record read.
    pub next_offset: i64,
}

/// The control topic as this process sees it. One per process, shared as `Arc<Control>`;
/// when `admin.control.topic` is `""` there is none (`Option<Arc<Control>>` is `None`).
#[derive(Debug)]
pub struct Control {
    topic: String,
    state: RwLock<ControlState>,
    version: watch::Sender<u64>,
    progress: watch::Sender<Progress>,
    error: Mutex<Option<String>>,
    /// `None`: kept in memory only (tests, see [`Control::in_memory`]).
    writer: Option<RecordWriter>,
    /// Bound of the write, and separately of the wait for the reader to see it.
    put_timeout: Duration,
}

impl Control {
    /// The handle for `topic`, read through `client` by a [`reader::ControlReader`] the caller
    /// runs (see [`Control::reader`]). `put_timeout` bounds a write and the wait to see it.
    pub fn new(topic: String, client: Arc<KafkaClient>, put_timeout: Duration) -> Arc<Self> {
        Arc::new(Self::build(
            topic.clone(),
            Some(RecordWriter::new(topic, client)),
            put_timeout,
        ))
    }

    /// A control with no Kafka behind it: `put` applies at once, and it counts as caught up.
    /// For tests of the code that uses a `Control`.
    pub fn in_memory() -> Arc<Self> {
        let control = Self::build("in-memory".into(), None, Duration::from_secs(1));
        control.progress.send_modify(|p| p.caught_up = true);
        Arc::new(control)
    }

    fn build(topic: String, writer: Option<RecordWriter>, put_timeout: Duration) -> Self {
        Self {
            topic,
            state: RwLock::new(ControlState::starting_at(0)),
            version: watch::Sender::new(0),
            progress: watch::Sender::new(Progress::default()),
            error: Mutex::new(None),
            writer,
            put_timeout,
        }
    }

    /// The control topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Latest value of `key` as seen by this process's reader (None: never set / tombstoned).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.state().get(key).cloned()
    }

    /// Every key starting with `prefix`, with its value, sorted by key.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, Value)> {
        self.state().with_prefix(prefix)
    }

    /// Writes key=value and returns once this process's reader has seen it (read-your-writes),
    /// bounded by a timeout. `value` is a JSON object (`atMs`, now, is added when missing) or
    /// `null`, which deletes the key (a tombstone).
    ///
    /// # Errors
    /// [`ControlError`]: a bad key or value, Kafka refusing the write, or the reader not
    /// reaching the record in time (the write itself then holds).
    pub async fn put(&self, key: &str, value: Value) -> Result<(), ControlError> {
        if key.is_empty() {
            return Err(ControlError::EmptyKey);
        }
        let value = match value {
            Value::Null => None,
            Value::Object(mut fields) => {
                fields
                    .entry("atMs")
                    .or_insert_with(|| Value::from(chrono::Utc::now().timestamp_millis()));
                Some(Value::Object(fields).to_string().into_bytes())
            }
            _ => return Err(ControlError::NotAnObject),
        };
        let Some(writer) = &self.writer else {
            self.apply_in_memory(key, value.as_deref());
            return Ok(());
        };
        let record = Record {
            key: Some(key.as_bytes().to_vec()),
            value,
            headers: std::collections::BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        };
        let offset = writer.write(0, record, self.put_timeout).await?;
        let mut progress = self.progress.subscribe();
        let seen =
            tokio::time::timeout(self.put_timeout, progress.wait_for(|p| p.next_offset > offset)).await;
        match seen {
            Ok(Ok(_)) => Ok(()),
            // Err(_) of wait_for: the sender is gone, impossible while `self` lives.
            Ok(Err(_)) | Err(_) => Err(ControlError::NotSeen {
                offset,
                after: self.put_timeout,
            }),
        }
    }

    /// Notified on every change (the value is a version counter that only grows).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Where the reader is; `caught_up` turns true once and stays.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// True once everything written before this process started has been read.
    pub fn caught_up(&self) -> bool {
        self.progress.borrow().caught_up
    }

    /// The reader's health.
    pub fn status(&self) -> ControlStatus {
        let state = self.state();
        ControlStatus {
            caught_up: self.caught_up(),
            error: self.error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            malformed: state.malformed(),
            keys: state.len(),
            next_offset: state.next_offset(),
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, ControlState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state under the write lock; bumps the version when it reports a
    /// change, and publishes the new read position.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut ControlState) -> (R, bool)) -> R {
        let (out, changed, next_offset) = {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            let (out, changed) = f(&mut state);
            (out, changed, state.next_offset())
        };
        if changed {
            self.version.send_modify(|v| *v = v.wrapping_add(1));
        }
        self.progress.send_if_modified(|p| {
            let moved = p.next_offset != next_offset;
            p.next_offset = next_offset;
            moved
        });
        out
    }

    /// Marks the first catch-up (wakes entries waiting to start).
    pub(crate) fn mark_caught_up(&self) {
        self.progress
            .send_if_modified(|p| !std::mem::replace(&mut p.caught_up, true));
        // Entries watch the version: a first catch-up is a change for them too.
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Records the reader's last error (`None` after a successful read).
    pub(crate) fn set_error(&self, error: Option<String>) {
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }

    fn apply_in_memory(&self, key: &str, value: Option<&[u8]>) {
        self.update(|s| {
            let offset = s.next_offset();
            let applied = s.apply(offset, Some(key.as_bytes()), value);
            ((), state::changed(&applied))
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn in_memory_put_get_and_notify() {
        let c = Control::in_memory();
        let mut changes = c.subscribe();
        let before = *changes.borrow_and_update();
        c.put("pause/g/t", json!({"paused": true, "by": "ann"}))
            .await
            .unwrap();
        assert!(changes.has_changed().unwrap());
        assert!(*changes.borrow_and_update() > before);
        let got = c.get("pause/g/t").unwrap();
        assert_eq!(got["paused"], true);
        assert_eq!(got["by"], "ann");
        assert!(got["atMs"].as_i64().unwrap() > 0, "atMs stamped: {got}");
        c.put("pause/g/t", Value::Null).await.unwrap();
        assert_eq!(c.get("pause/g/t"), None);
        assert!(changes.has_changed().unwrap());
    }

    #[tokio::test]
    async fn put_refuses_non_objects_and_empty_keys() {
        let c = Control::in_memory();
        assert!(matches!(
            c.put("k", json!([1])).await,
            Err(ControlError::NotAnObject)
        ));
        assert!(matches!(c.put("", json!({})).await, Err(ControlError::EmptyKey)));
        assert_eq!(c.status().keys, 0);
    }

    #[tokio::test]
    async fn an_explicit_at_ms_is_kept() {
        let c = Control::in_memory();
        c.put("k", json!({"atMs": 5})).await.unwrap();
        assert_eq!(c.get("k").unwrap()["atMs"], 5);
        assert!(c.caught_up());
    }
}
