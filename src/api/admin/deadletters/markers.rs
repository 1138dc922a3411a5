//! Where replay markers (and the pause flags the group list shows) are read and written:
//! the control topic. The admin handlers see it through this small trait so that they do
//! not depend on how the control topic is kept, and so unit tests can use [`MemoryStore`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;

use futures::future::BoxFuture;
use serde_json::Value;

/// A key-value store with read-your-writes, as the control topic offers.
pub trait ControlStore: Send + Sync + Debug {
    /// The latest value of `key` (None: never set or deleted).
    fn get(&self, key: &str) -> Option<Value>;
    /// Writes `key` = `value`; returns once a later [`ControlStore::get`] sees it.
    fn put<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<(), String>>;
}

/// The marker key of the dead letter at `partition`/`offset` of `dlq_topic`.
pub fn replay_key(dlq_topic: &str, partition: i32, offset: i64) -> String {
    format!("replay/{dlq_topic}/{partition}/{offset}")
}

/// The pause key of a consumer entry.
pub fn pause_key(group: &str, topic: &str) -> String {
    format!("pause/{group}/{topic}")
}

/// True when the pause value says paused: `true`, or an object with `"paused": true`.
pub fn is_paused(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Object(o)) => o.get("paused").and_then(Value::as_bool).unwrap_or(false),
        _ => false,
    }
}

/// An in-memory [`ControlStore`], for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: Mutex<BTreeMap<String, Value>>,
}

impl ControlStore for MemoryStore {
    fn get(&self, key: &str) -> Option<Value> {
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn put<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<(), String>> {
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_owned(), value);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_reads_its_writes() {
        let s = MemoryStore::default();
        assert_eq!(s.get("k"), None);
        s.put("k", json!({"count": 1})).await.unwrap();
        assert_eq!(s.get("k"), Some(json!({"count": 1})));
    }

    #[test]
    fn keys_and_pause_values() {
        assert_eq!(replay_key("calls.dlq", 2, 9), "replay/calls.dlq/2/9");
        assert_eq!(pause_key("g", "t"), "pause/g/t");
        assert!(is_paused(Some(&json!(true))));
        assert!(is_paused(Some(&json!({"paused": true}))));
        assert!(!is_paused(Some(&json!({"paused": false}))));
        assert!(!is_paused(Some(&json!("yes"))));
        assert!(!is_paused(None));
    }
}
