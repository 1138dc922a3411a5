//! Retransmit: a group moved back (or forward) to a point in time while its members run.
//!
//! The admin API writes the control topic's `seek/<group>/<topic>` with an id and the target
//! offset of every partition. Each process, for the partitions it owns, stops the partition's
//! run (drained like a revoke), commits the target offset with the OffsetCommit metadata
//! `bigpipe-seek:<id>`, and fetches from there; every later commit of the partition carries
//! the same metadata. A new owner compares the committed metadata with the latest seek: a
//! partition whose metadata names another (or no) seek has not had this one applied yet.
//! So a seek is applied exactly once per partition, even when partitions move meanwhile.
//!
//! The decision is [`decide`], pure; the lane in [`super`] acts on it.

use std::collections::BTreeMap;

use serde_json::Value;

/// The metadata prefix naming the seek a committed offset descends from.
pub const MARK_PREFIX: &str = "bigpipe-seek:";

/// One retransmit, as the control topic holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seek {
    /// Unique per retransmit (a UUID v7).
    pub id: String,
    /// The point in time, epoch milliseconds.
    pub from_ms: i64,
    /// The target offset per partition.
    pub offsets: BTreeMap<i32, i64>,
}

impl Seek {
    /// Reads a `seek/<group>/<topic>` value: `{"id", "fromMs", "offsets": {"<partition>": offset}}`.
    /// `None` when it is not one (a malformed value is never acted on).
    pub fn parse(value: &Value) -> Option<Self> {
        let id = value.get("id")?.as_str()?;
        if id.is_empty() {
            return None;
        }
        let from_ms = value.get("fromMs")?.as_i64()?;
        let mut offsets = BTreeMap::new();
        for (partition, offset) in value.get("offsets")?.as_object()? {
            let partition: i32 = partition.parse().ok().filter(|p| *p >= 0)?;
            let offset = offset.as_i64().filter(|o| *o >= 0)?;
            offsets.insert(partition, offset);
        }
        Some(Self {
            id: id.to_owned(),
            from_ms,
            offsets,
        })
    }

    /// The value written to the control topic (without `by`/`atMs`, which the writer adds).
    pub fn to_value(&self) -> Value {
        let offsets: serde_json::Map<String, Value> = self
            .offsets
            .iter()
            .map(|(p, o)| (p.to_string(), Value::from(*o)))
            .collect();
        serde_json::json!({"id": self.id, "fromMs": self.from_ms, "offsets": offsets})
    }

    /// The commit metadata of partitions this seek was applied to.
    pub fn mark(&self) -> String {
        format!("{MARK_PREFIX}{}", self.id)
    }
}

/// What to do with a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave it where it is (no seek, the seek does not name it, or it is applied already).
    Keep,
    /// Move it: commit `offset` with `mark`, then fetch from there.
    Apply {
        /// The target offset.
        offset: i64,
        /// The metadata every commit of the partition carries from now on.
        mark: String,
    },
}

/// Whether `seek` still has to be applied to `partition`, whose committed offset carries
/// `committed_mark` (empty when none, or committed before any seek).
pub fn decide(seek: Option<&Seek>, partition: i32, committed_mark: &str) -> Decision {
    let Some(seek) = seek else {
        return Decision::Keep;
    };
    let Some(&offset) = seek.offsets.get(&partition) else {
        return Decision::Keep;
    };
    let mark = seek.mark();
    if committed_mark == mark {
        return Decision::Keep;
    }
    Decision::Apply { offset, mark }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seek(id: &str) -> Seek {
        Seek::parse(&json!({"id": id, "fromMs": 1000, "offsets": {"0": 5, "1": 0}})).unwrap()
    }

    #[test]
    fn no_seek_keeps_everything() {
        assert_eq!(decide(None, 0, ""), Decision::Keep);
        assert_eq!(decide(None, 0, "bigpipe-seek:x"), Decision::Keep);
    }

    #[test]
    fn a_partition_without_the_mark_is_moved_once() {
        let s = seek("a");
        let Decision::Apply { offset, mark } = decide(Some(&s), 0, "") else {
            panic!("not applied");
        };
        assert_eq!((offset, mark.as_str()), (5, "bigpipe-seek:a"));
        // Once committed with the mark, the same seek is never applied again: not by this
        // owner's next look, not by a new owner after a rebalance, not after a restart.
        assert_eq!(decide(Some(&s), 0, &mark), Decision::Keep);
    }

    #[test]
    fn a_newer_seek_replaces_an_applied_older_one() {
        let old = seek("a");
        let new = seek("b");
        assert_eq!(
            decide(Some(&new), 1, &old.mark()),
            Decision::Apply {
                offset: 0,
                mark: "bigpipe-seek:b".into()
            }
        );
    }

    #[test]
    fn partitions_the_seek_does_not_name_are_kept() {
        // Partitions added after the retransmit was written.
        assert_eq!(decide(Some(&seek("a")), 7, ""), Decision::Keep);
    }

    #[test]
    fn foreign_metadata_counts_as_not_applied() {
        assert!(matches!(
            decide(Some(&seek("a")), 0, "written by another tool"),
            Decision::Apply { .. }
        ));
    }

    #[test]
    fn malformed_seek_values_are_ignored() {
        for bad in [
            json!({}),
            json!({"id": "", "fromMs": 1, "offsets": {}}),
            json!({"id": "a", "fromMs": "x", "offsets": {}}),
            json!({"id": "a", "fromMs": 1, "offsets": {"x": 1}}),
            json!({"id": "a", "fromMs": 1, "offsets": {"-1": 1}}),
            json!({"id": "a", "fromMs": 1, "offsets": {"0": -3}}),
            json!({"id": "a", "fromMs": 1, "offsets": [1]}),
            json!("seek"),
        ] {
            assert_eq!(Seek::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_seek_round_trips_through_its_value() {
        let s = seek("a");
        assert_eq!(Seek::parse(&s.to_value()), Some(s));
    }
}
