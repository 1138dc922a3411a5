//! Partition counts per topic, as Kafka metadata last reported them.
//!
//! # Which partition-count reader serves whom
//!
//! bigpipe reads partition counts in two places, on purpose:
//! - [`PartitionTable`] (this module) is filled by the topic upkeep task
//!   ([`super::topics`], rskafka `list_topics` every refresh, seeded with the configured
//!   counts until the first answer). It serves everything that can live with a count a
//!   refresh old: the producer's partition choice, the dead-letter and retry-tier writers,
//!   the consumer's rate share, and hot reload (which seeds newly configured topics).
//! - The group leader asks the coordinator itself (`wire::admin::partition_counts`, Metadata
//!   with auto-create off) when it computes an assignment, because the plan must match what
//!   the broker holds at that rebalance and must never create a topic as a side effect.
//!   Those counts are not written here.

use std::collections::HashMap;
use std::sync::RwLock;

/// Partition counts per topic, refreshed from Kafka metadata. Never holds a count below 1.
#[derive(Debug, Default)]
pub struct PartitionTable {
    counts: RwLock<HashMap<String, i32>>,
}

impl PartitionTable {
    /// Creates a table seeded with the configured counts.
    pub fn new<'a>(configured: impl IntoIterator<Item = (&'a str, i32)>) -> Self {
        let table = Self::default();
        for (topic, count) in configured {
            table.set(topic, count);
        }
        table
    }

    /// Records the partition count Kafka reported for `topic`. Counts below 1 are ignored.
    pub fn set(&self, topic: &str, count: i32) {
        if count < 1 {
            return;
        }
        let mut counts = self
            .counts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.insert(topic.to_owned(), count);
    }

    /// The current partition count of `topic`, if known.
    pub fn count(&self, topic: &str) -> Option<i32> {
        let counts = self
            .counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.get(topic).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_overrides_config_and_bad_counts_are_ignored() {
        let table = PartitionTable::new([("t", 3)]);
        table.set("t", 6);
        table.set("t", 0);
        assert_eq!(table.count("t"), Some(6));
        assert_eq!(table.count("missing"), None);
    }
}
