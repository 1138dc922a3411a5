//! Partition choice, compatible with the Go version.
//!
//! A non-empty `partition_key` is hashed with the Go version's ×33 hash over
//! the key's Unicode code points (not its UTF-8 bytes), reduced modulo the
//! partition count at every step, so a mixed fleet sends a key to the same
//! partition whichever implementation accepted the call. An empty key is spread
//! round-robin (Go used an unseeded `math/rand`, which repeated the same
//! sequence after every restart).
//!
//! The partition count comes from Kafka metadata ([`PartitionTable`]), not from
//! the config as in the Go version; the configured count is only a fallback
//! until the first metadata answer arrives.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::kafka::metadata::PartitionTable;

/// The Go version's hash: `h = (h*33 + code_point) % partitions`, from 0.
///
/// `partitions` must be positive; callers get it from [`PartitionTable`],
/// which never stores a count below 1.
pub fn go_hash(key: &str, partitions: i32) -> i32 {
    let n = u64::from(partitions.max(1).unsigned_abs());
    let mut hash: u64 = 0;
    for c in key.chars() {
        hash = (hash * 33 + u64::from(c)) % n;
    }
    // hash < n ≤ i32::MAX, so the conversion cannot fail.
    i32::try_from(hash % n).unwrap_or(0)
}

/// Partition choice over the counts of a [`PartitionTable`]. One per producer: the
/// round-robin position of calls without a key.
#[derive(Debug, Default)]
pub struct Partitioner {
    next: AtomicU32,
}

impl Partitioner {
    /// Chooses the partition for a call: the Go hash of a non-empty key,
    /// round-robin otherwise. `None` when the topic is unknown.
    pub fn choose(&self, table: &PartitionTable, topic: &str, key: &str) -> Option<i32> {
        let count = table.count(topic)?;
        if key.is_empty() {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            Some(i32::try_from(n % count.unsigned_abs()).unwrap_or(0))
        } else {
            Some(go_hash(key, count))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_hand_computed_go_values() {
        // "a" = 97: 97 % 3 = 1.
        assert_eq!(go_hash("a", 3), 1);
        // "ab": h=97%3=1; h=(1*33+98)%3 = 131%3 = 2.
        assert_eq!(go_hash("ab", 3), 2);
        // "uid-1" over 8 partitions: u=117→5, i=105: (165+105)%8=270%8=6,
        // d=100: (198+100)%8=298%8=2, '-'=45: (66+45)%8=111%8=7, '1'=49: (231+49)%8=280%8=0.
        assert_eq!(go_hash("uid-1", 8), 0);
    }

    #[test]
    fn hash_iterates_code_points_not_bytes() {
        // '中' is U+4E2D = 20013; 20013 % 7 = 0. Over UTF-8 bytes (e4 b8 ad) it would be
        // h=228%7=4, (132+184)%7=316%7=1, (33+173)%7=206%7=3.
        assert_eq!(go_hash("中", 7), 0);
        // "暂时": 26242 % 5 = 2; (66 + 26102) % 5 = 26168 % 5 = 3.
        assert_eq!(go_hash("暂时", 5), 3);
    }

    #[test]
    fn same_key_same_partition_and_single_partition_is_zero() {
        assert_eq!(go_hash("user-42", 12), go_hash("user-42", 12));
        assert_eq!(go_hash("anything", 1), 0);
    }

    #[test]
    fn empty_key_spreads_evenly() {
        let table = PartitionTable::new([("t", 4)]);
        let partitioner = Partitioner::default();
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[partitioner.choose(&table, "t", "").unwrap() as usize] += 1;
        }
        assert_eq!(seen, [100; 4]);
    }

    #[test]
    fn an_unknown_topic_has_no_partition() {
        let table = PartitionTable::new([("t", 3)]);
        assert_eq!(Partitioner::default().choose(&table, "missing", "k"), None);
    }
}
