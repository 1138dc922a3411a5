//! The table of each topic's `max.message.bytes`, as Kafka reports it.
//!
//! Filled by the topic watcher (`kafka::topics`) from DescribeConfigs on every metadata
//! refresh, read by ingest on every call (`producer::ProducerHandle::submit`) and by each
//! partition writer when it builds its batch producer. A topic Kafka has not described yet
//! answers [`KAFKA_DEFAULT_MAX_MESSAGE_BYTES`], the broker's default.

use std::collections::HashMap;
use std::sync::RwLock;

use super::record_size::KAFKA_DEFAULT_MAX_MESSAGE_BYTES;

/// `max.message.bytes` per topic. Shared as `Arc<TopicLimits>`.
#[derive(Debug, Default)]
pub struct TopicLimits {
    /// Reads (one per call) far outnumber writes (one per topic per refresh).
    by_topic: RwLock<HashMap<String, usize>>,
}

impl TopicLimits {
    /// An empty table: every topic gets the default until described.
    pub fn new() -> Self {
        Self::default()
    }

    /// The topic's `max.message.bytes`, or Kafka's default when not (yet) known.
    pub fn max_message_bytes(&self, topic: &str) -> usize {
        self.by_topic
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .copied()
            .unwrap_or(KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// Records what Kafka reported for `topic`. Returns the previous value, if one was known.
    pub fn set(&self, topic: &str, max_message_bytes: usize) -> Option<usize> {
        self.by_topic
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned(), max_message_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_topics_get_kafkas_default_until_described() {
        let t = TopicLimits::new();
        assert_eq!(t.max_message_bytes("a"), 1_048_588);
        assert_eq!(t.set("a", 20_000), None);
        assert_eq!(t.max_message_bytes("a"), 20_000);
        assert_eq!(t.set("a", 30_000), Some(20_000));
        assert_eq!(t.max_message_bytes("b"), 1_048_588);
    }
}
