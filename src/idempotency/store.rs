//! The claims of idempotency keys as one process has read them: pure state, no I/O.
//!
//! Every record of the claims topic is keyed by the scoped key (`<acl>\0<Idempotency-Key>`)
//! and holds one [`ClaimRecord`]. Who holds a key is decided by the log alone, so that every
//! process reading it agrees: a `claimed` record takes the key unless the key is held at the
//! claim's own time (`at`, the writer's clock), and the first claim read wins.
//!
//! - A key is **held** by its claim while the claim is `done` (the call reached Kafka) and
//!   younger than the window, or while it is still pending and younger than the pending
//!   bound (the longest a call can take to reach Kafka; past it, the claimer is taken to have
//!   died before writing the call, and the key is free again).
//! - A `released` record frees the key at once (the call was not written).
//! - `done` and `released` records of a claim that no longer holds the key change nothing.
//!
//! Memory is bounded: entries older than the window (plus a grace, so processes whose clocks
//! differ a little still agree) are pruned, and past `max_keys` the oldest go first, counted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Kept a little past the window, so that two processes whose clocks differ by less than
/// this still hold the same keys when a late claim arrives.
const PRUNE_GRACE_MS: i64 = 60_000;

/// The value of one claims record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ClaimRecord {
    /// A process wants the key for call `id`, accepted at `at` (ms since the epoch).
    Claimed {
        /// The call id the key would answer with.
        id: uuid::Uuid,
        /// When the claim was made, by the claimer's clock.
        at: i64,
    },
    /// Call `id` reached Kafka: its key answers with `id` for the window.
    Done {
        /// The call id.
        id: uuid::Uuid,
    },
    /// Call `id` was not written: its key is free again.
    Released {
        /// The call id.
        id: uuid::Uuid,
    },
}

impl ClaimRecord {
    /// The record's JSON value.
    pub fn encode(&self) -> Vec<u8> {
        // A derived Serialize of uuids and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Who holds a key, as a caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The key's call reached Kafka: answer with its id.
    Done(uuid::Uuid),
    /// The key's call is on its way to Kafka: the caller should try again shortly.
    Pending(uuid::Uuid),
}

/// Why a record was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The record has no key.
    #[error("record without a key")]
    NoKey,
    /// The value is not a claims record.
    #[error("value is not a claims record: {0}")]
    Value(String),
}

/// One held key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: uuid::Uuid,
    at: i64,
    done: bool,
}

/// The keys and their claims.
#[derive(Debug)]
pub struct Store {
    window_ms: i64,
    pending_ms: i64,
    max_keys: usize,
    keys: HashMap<Arc<[u8]>, Entry>,
    /// Keys in the order their entries were made, with the entry's `at`: pruning and
    /// eviction take from the front. An item whose key has a newer entry is stale and dropped.
    order: VecDeque<(i64, Arc<[u8]>)>,
    evicted: u64,
    malformed: u64,
}

impl Store {
    /// An empty store: keys hold for `window_ms` once done, `pending_ms` before; at most
    /// `max_keys` are kept.
    pub fn new(window_ms: i64, pending_ms: i64, max_keys: usize) -> Self {
        Self {
            window_ms,
            pending_ms,
            max_keys: max_keys.max(1),
            keys: HashMap::new(),
            order: VecDeque::new(),
            evicted: 0,
            malformed: 0,
        }
    }

    /// Applies one record.
    ///
    /// # Errors
    /// [`Malformed`] for a record without a key or with a value that is not a
    /// [`ClaimRecord`]; it is counted and changes nothing.
    pub fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(), Malformed> {
        let record = key
            .ok_or(Malformed::NoKey)
            .and_then(|key| {
                let value = value.unwrap_or_default();
                serde_json::from_slice::<ClaimRecord>(value)
                    .map(|record| (key, record))
                    .map_err(|e| Malformed::Value(e.to_string()))
            })
            .inspect_err(|_| self.malformed += 1)?;
        let (key, record) = record;
        match record {
            ClaimRecord::Claimed { id, at } => {
                if self.keys.get(key).is_some_and(|e| self.holds(e, at)) {
                    return Ok(());
                }
                let key: Arc<[u8]> = Arc::from(key);
                self.keys.insert(Arc::clone(&key), Entry { id, at, done: false });
                self.order.push_back((at, key));
                self.evict_over_bound();
            }
            ClaimRecord::Done { id } => {
                if let Some(entry) = self.keys.get_mut(key).filter(|e| e.id == id) {
                    entry.done = true;
                }
            }
            ClaimRecord::Released { id } => {
                if self.keys.get(key).is_some_and(|e| e.id == id && !e.done) {
                    self.keys.remove(key);
                }
            }
        }
        Ok(())
    }

    /// Who holds `key` at `now` (ms), `None` when it is free.
    pub fn holder(&self, key: &[u8], now: i64) -> Option<Holder> {
        let entry = self.keys.get(key).filter(|e| self.holds(e, now))?;
        Some(if entry.done {
            Holder::Done(entry.id)
        } else {
            Holder::Pending(entry.id)
        })
    }

    /// The id of the claim that took `key` last, held or not (a claimer's read-back).
    pub fn claimant(&self, key: &[u8]) -> Option<uuid::Uuid> {
        self.keys.get(key).map(|e| e.id)
    }

    /// Forgets keys no claim could find held any more at `now` (ms).
    pub fn prune(&mut self, now: i64) {
        let horizon = self.window_ms.max(self.pending_ms).saturating_add(PRUNE_GRACE_MS);
        while let Some((at, _)) = self.order.front() {
            if now.saturating_sub(*at) <= horizon {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Keys held in memory (held or not yet pruned).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys forgotten before their window ended, because of `max_keys`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Records skipped as malformed.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    fn holds(&self, entry: &Entry, at: i64) -> bool {
        let age = at.saturating_sub(entry.at);
        let bound = if entry.done {
            self.window_ms
        } else {
            self.pending_ms
        };
        age < bound
    }

    /// Past `max_keys` keys (or twice as many order items, stale ones included), the
    /// oldest go.
    fn evict_over_bound(&mut self) {
        while self.keys.len() > self.max_keys || self.order.len() > self.max_keys.saturating_mul(2) {
            if let Some(removed) = self.pop_oldest()
                && removed
            {
                self.evicted += 1;
            }
        }
    }

    /// Drops the oldest order item and its entry when the item is current. `Some(true)`: an
    /// entry went; `None`: nothing was left.
    fn pop_oldest(&mut self) -> Option<bool> {
        let (at, key) = self.order.pop_front()?;
        let current = self.keys.get(&key).is_some_and(|e| e.at == at);
        if current {
            self.keys.remove(&key);
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 10_000;
    const PENDING: i64 = 1_000;

    fn id(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    fn put(s: &mut Store, key: &str, record: &ClaimRecord) {
        s.apply(Some(key.as_bytes()), Some(&record.encode())).unwrap();
    }

    fn claimed(n: u128, at: i64) -> ClaimRecord {
        ClaimRecord::Claimed { id: id(n), at }
    }

    #[test]
    fn the_first_claim_wins_and_a_done_key_answers_for_the_window() {
        let mut s = Store::new(WINDOW, PENDING, 10);
        put(&mut s, "a\0k", &claimed(1, 100));
        put(&mut s, "a\0k", &claimed(2, 150));
        assert_eq!(s.claimant(b"a\0k"), Some(id(1)));
        assert_eq!(s.holder(b"a\0k", 200), Some(Holder::Pending(id(1))));
        put(&mut s, "a\0k", &ClaimRecord::Done { id: id(2) });
        assert_eq!(
            s.holder(b"a\0k", 200),
            Some(Holder::Pending(id(1))),
            "the loser's done is ignored"
        );
        put(&mut s, "a\0k", &ClaimRecord::Done { id: id(1) });
        assert_eq!(s.holder(b"a\0k", 100 + WINDOW - 1), Some(Holder::Done(id(1))));
        assert_eq!(s.holder(b"a\0k", 100 + WINDOW), None, "the window has passed");
        put(&mut s, "a\0k", &claimed(3, 100 + WINDOW - 1));
        assert_eq!(
            s.claimant(b"a\0k"),
            Some(id(1)),
            "still held at the claim's own time"
        );
        put(&mut s, "a\0k", &claimed(3, 100 + WINDOW));
        assert_eq!(s.claimant(b"a\0k"), Some(id(3)));
    }

    #[test]
    fn a_pending_claim_holds_only_for_the_pending_bound() {
        let mut s = Store::new(WINDOW, PENDING, 10);
        put(&mut s, "k", &claimed(1, 0));
        put(&mut s, "k", &claimed(2, PENDING - 1));
        assert_eq!(s.claimant(b"k"), Some(id(1)));
        // The claimer died before writing the call: a later claim takes the key.
        put(&mut s, "k", &claimed(2, PENDING));
        assert_eq!(s.claimant(b"k"), Some(id(2)));
        // The first claimer's late done changes nothing.
        put(&mut s, "k", &ClaimRecord::Done { id: id(1) });
        assert_eq!(s.holder(b"k", PENDING), Some(Holder::Pending(id(2))));
    }

    #[test]
    fn a_release_frees_a_pending_key_but_not_a_done_one() {
        let mut s = Store::new(WINDOW, PENDING, 10);
        put(&mut s, "k", &claimed(1, 0));
        put(&mut s, "k", &ClaimRecord::Released { id: id(2) });
        assert_eq!(s.claimant(b"k"), Some(id(1)), "another claim's release");
        put(&mut s, "k", &ClaimRecord::Released { id: id(1) });
        assert_eq!(s.holder(b"k", 1), None);
        put(&mut s, "k", &claimed(2, 5));
        put(&mut s, "k", &ClaimRecord::Done { id: id(2) });
        put(&mut s, "k", &ClaimRecord::Released { id: id(2) });
        assert_eq!(s.holder(b"k", 6), Some(Holder::Done(id(2))));
    }

    #[test]
    fn keys_are_scoped_by_their_bytes() {
        let mut s = Store::new(WINDOW, PENDING, 10);
        put(&mut s, "a\0k", &claimed(1, 0));
        put(&mut s, "b\0k", &claimed(2, 0));
        assert_eq!(s.claimant(b"a\0k"), Some(id(1)));
        assert_eq!(s.claimant(b"b\0k"), Some(id(2)));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn pruning_forgets_keys_past_the_window_and_grace() {
        let mut s = Store::new(WINDOW, PENDING, 10);
        put(&mut s, "old", &claimed(1, 0));
        put(&mut s, "new", &claimed(2, 5_000));
        s.prune(WINDOW + PRUNE_GRACE_MS);
        assert_eq!(s.len(), 2, "not yet past the grace");
        s.prune(WINDOW + PRUNE_GRACE_MS + 1);
        assert_eq!(s.claimant(b"old"), None);
        assert_eq!(s.claimant(b"new"), Some(id(2)));
        assert_eq!(s.evicted(), 0, "pruning is not eviction");
    }

    #[test]
    fn past_max_keys_the_oldest_go_and_are_counted() {
        let mut s = Store::new(WINDOW, PENDING, 3);
        for n in 0..5u8 {
            put(&mut s, &format!("k{n}"), &claimed(u128::from(n), i64::from(n)));
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.evicted(), 2);
        assert_eq!(s.claimant(b"k0"), None);
        assert_eq!(s.claimant(b"k4"), Some(id(4)));
    }

    #[test]
    fn replaced_entries_leave_stale_order_items_that_never_remove_the_new_one() {
        let mut s = Store::new(WINDOW, PENDING, 2);
        put(&mut s, "k", &claimed(1, 0));
        put(&mut s, "k", &claimed(2, PENDING)); // the pending claim expired: replaced
        put(&mut s, "j", &claimed(3, PENDING + 1));
        // Order holds [k@0 (stale), k@PENDING, j]: three items for two keys, within 2 * max.
        s.prune(PENDING + WINDOW.max(PENDING) + PRUNE_GRACE_MS);
        assert_eq!(
            s.claimant(b"k"),
            Some(id(2)),
            "the stale item went, the entry stayed"
        );
        assert_eq!(s.evicted(), 0);
    }

    #[test]
    fn malformed_records_are_counted_and_change_nothing() {
        let mut s = Store::new(WINDOW, PENDING, 10);
        assert_eq!(s.apply(None, Some(b"{}")), Err(Malformed::NoKey));
        assert!(matches!(
            s.apply(Some(b"k"), Some(b"{\"state\":\"x\"}")),
            Err(Malformed::Value(_))
        ));
        assert!(matches!(s.apply(Some(b"k"), None), Err(Malformed::Value(_))));
        assert_eq!(s.malformed(), 3);
        assert!(s.is_empty());
    }

    #[test]
    fn the_record_json_is_stable() {
        let r = ClaimRecord::Claimed { id: id(1), at: 7 };
        assert_eq!(
            String::from_utf8(r.encode()).unwrap(),
            r#"{"state":"claimed","id":"00000000-0000-0000-0000-000000000001","at":7}"#
        );
        let d = ClaimRecord::Done { id: id(1) };
        assert_eq!(
            String::from_utf8(d.encode()).unwrap(),
            r#"{"state":"done","id":"00000000-0000-0000-0000-000000000001"}"#
        );
    }
}
