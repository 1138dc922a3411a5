//! The control topic's contents as one process knows them: key → latest JSON value, built
//! record by record in offset order. Pure: no Kafka, no clock, so every rule (ordering,
//! tombstones, malformed records) is unit-tested here.

use std::collections::HashMap;

use serde_json::Value;

/// Why a control record was skipped instead of applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The record has no key: nothing to file it under.
    #[error("record without a key")]
    NoKey,
    /// The key is not UTF-8.
    #[error("key is not UTF-8")]
    KeyNotUtf8,
    /// The value is not JSON.
    #[error("value is not JSON: {0}")]
    NotJson(String),
    /// The value is JSON but not an object (every control value is one, with `by` and `atMs`).
    #[error("value is not a JSON object")]
    NotAnObject,
}

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The key now has a new value.
    Set,
    /// The key was removed (a tombstone).
    Deleted,
    /// A tombstone for a key that was not set, or a value equal to the one held: no change.
    Unchanged,
    /// An offset below the next expected one (a fetch that overlapped the last): ignored.
    Old,
    /// Skipped and counted.
    Skipped(Malformed),
}

/// Whether `applied` changed what [`ControlState::get`] answers.
pub fn changed(applied: &Applied) -> bool {
    matches!(applied, Applied::Set | Applied::Deleted)
}

/// Key → latest value, plus where reading has got to.
#[derive(Debug, Default, Clone)]
pub struct ControlState {
    entries: HashMap<String, Value>,
    /// The offset after the last record applied (or skipped).
    next_offset: i64,
    malformed: u64,
}

impl ControlState {
    /// An empty state, to be filled from `start` (the partition's earliest offset).
    pub fn starting_at(start: i64) -> Self {
        Self {
            next_offset: start,
            ..Self::default()
        }
    }

    /// Applies the record at `offset`. Records must come in offset order; one below
    /// [`Self::next_offset`] was seen already and is ignored, so a re-fetch is harmless.
    /// Never panics, whatever the bytes.
    pub fn apply(&mut self, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Applied {
        if offset < self.next_offset {
            return Applied::Old;
        }
        self.next_offset = offset.saturating_add(1);
        match parse(key, value) {
            Err(why) => {
                self.malformed = self.malformed.saturating_add(1);
                Applied::Skipped(why)
            }
            Ok((key, None)) => match self.entries.remove(&key) {
                Some(_) => Applied::Deleted,
                None => Applied::Unchanged,
            },
            Ok((key, Some(value))) => {
                if self.entries.get(&key) == Some(&value) {
                    Applied::Unchanged
                } else {
                    self.entries.insert(key, value);
                    Applied::Set
                }
            }
        }
    }

    /// Moves the read position past a gap (compaction leaves holes in the offsets).
    pub fn skip_to(&mut self, offset: i64) {
        self.next_offset = self.next_offset.max(offset);
    }

    /// Starts over from `start` after the log was truncated under us (out of range): what is
    /// held stays until newer records replace it, since the topic's latest values are a superset.
    pub fn restart_at(&mut self, start: i64) {
        self.next_offset = start;
    }

    /// The latest value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(key)
    }

    /// The keys starting with `prefix`, with their values (sorted by key).
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, Value)> {
        let mut found: Vec<(String, Value)> = self
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// The offset the next fetch starts at.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Records skipped as malformed so far.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The key, and the value (`None`: a tombstone).
fn parse(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(String, Option<Value>), Malformed> {
    let key = key.ok_or(Malformed::NoKey)?;
    let key = std::str::from_utf8(key).map_err(|_| Malformed::KeyNotUtf8)?;
    let Some(value) = value else {
        return Ok((key.to_owned(), None));
    };
    let value: Value = serde_json::from_slice(value).map_err(|e| Malformed::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(Malformed::NotAnObject);
    }
    Ok((key.to_owned(), Some(value)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn put(s: &mut ControlState, offset: i64, key: &str, value: &Value) -> Applied {
        s.apply(offset, Some(key.as_bytes()), Some(value.to_string().as_bytes()))
    }

    #[test]
    fn the_latest_value_per_key_wins() {
        let mut s = ControlState::starting_at(0);
        assert_eq!(
            put(&mut s, 0, "pause/g/t", &json!({"paused": true})),
            Applied::Set
        );
        assert_eq!(
            put(&mut s, 1, "pause/g/u", &json!({"paused": true})),
            Applied::Set
        );
        assert_eq!(
            put(&mut s, 2, "pause/g/t", &json!({"paused": false})),
            Applied::Set
        );
        assert_eq!(s.get("pause/g/t"), Some(&json!({"paused": false})));
        assert_eq!(s.get("pause/g/u"), Some(&json!({"paused": true})));
        assert_eq!(s.next_offset(), 3);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn records_already_applied_are_ignored() {
        let mut s = ControlState::starting_at(0);
        put(&mut s, 4, "k", &json!({"v": 2}));
        // A fetch that starts lower again (overlap) must not roll the value back.
        assert_eq!(put(&mut s, 3, "k", &json!({"v": 1})), Applied::Old);
        assert_eq!(put(&mut s, 4, "k", &json!({"v": 1})), Applied::Old);
        assert_eq!(s.get("k"), Some(&json!({"v": 2})));
        assert_eq!(s.next_offset(), 5);
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        let mut s = ControlState::starting_at(0);
        put(&mut s, 10, "a", &json!({}));
        put(&mut s, 17, "b", &json!({}));
        assert_eq!(s.next_offset(), 18);
        s.skip_to(30);
        assert_eq!(s.next_offset(), 30);
        s.skip_to(20);
        assert_eq!(s.next_offset(), 30, "never backwards");
    }

    #[test]
    fn a_tombstone_deletes_the_key() {
        let mut s = ControlState::starting_at(0);
        put(&mut s, 0, "k", &json!({"v": 1}));
        assert_eq!(s.apply(1, Some(b"k"), None), Applied::Deleted);
        assert_eq!(s.get("k"), None);
        assert_eq!(s.apply(2, Some(b"k"), None), Applied::Unchanged);
        assert_eq!(put(&mut s, 3, "k", &json!({"v": 2})), Applied::Set);
        assert_eq!(s.get("k"), Some(&json!({"v": 2})));
    }

    #[test]
    fn the_same_value_again_is_no_change() {
        let mut s = ControlState::starting_at(0);
        put(&mut s, 0, "k", &json!({"v": 1}));
        assert_eq!(put(&mut s, 1, "k", &json!({"v": 1})), Applied::Unchanged);
        assert_eq!(s.next_offset(), 2);
    }

    #[test]
    fn malformed_records_are_skipped_and_counted() {
        let mut s = ControlState::starting_at(0);
        put(&mut s, 0, "k", &json!({"v": 1}));
        type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, Malformed);
        let cases: [Case<'_>; 5] = [
            (None, Some(b"{}"), Malformed::NoKey),
            (Some(b"\xff\xfe"), Some(b"{}"), Malformed::KeyNotUtf8),
            (Some(b"k"), Some(b"{not json"), Malformed::NotJson(String::new())),
            (Some(b"k"), Some(b"[1,2]"), Malformed::NotAnObject),
            (Some(b"k"), Some(b"null"), Malformed::NotAnObject),
        ];
        for (n, (key, value, want)) in cases.into_iter().enumerate() {
            let offset = i64::try_from(n).unwrap() + 1;
            match (s.apply(offset, key, value), want) {
                (Applied::Skipped(Malformed::NotJson(_)), Malformed::NotJson(_)) => {}
                (got, want) => assert_eq!(got, Applied::Skipped(want), "case {n}"),
            }
        }
        assert_eq!(s.malformed(), 5);
        assert_eq!(s.get("k"), Some(&json!({"v": 1})), "the good value survives");
        assert_eq!(s.next_offset(), 6, "skipped records are passed, not re-read");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut s = ControlState::starting_at(0);
        let samples: [&[u8]; 6] = [b"", b"\0", b"{\"a\":", b"\"str\"", b"1e999999", &[0xc3, 0x28]];
        let mut offset = 0;
        for k in samples {
            for v in samples {
                s.apply(offset, Some(k), Some(v));
                s.apply(offset + 1, Some(k), None);
                offset += 2;
            }
        }
        s.apply(i64::MAX, Some(b"k"), Some(b"{}"));
        assert_eq!(s.next_offset(), i64::MAX, "saturates");
    }

    #[test]
    fn a_prefix_lists_keys_in_order() {
        let mut s = ControlState::starting_at(0);
        put(&mut s, 0, "replay/d/1/5", &json!({}));
        put(&mut s, 1, "pause/g/t", &json!({}));
        put(&mut s, 2, "replay/d/0/9", &json!({}));
        let keys: Vec<String> = s.with_prefix("replay/").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["replay/d/0/9", "replay/d/1/5"]);
    }
}
