//! Per-key ordering (`ordering = "key"`): the calls of one partition key go one at a time,
//! in offset order; calls of other keys pass.
//!
//! ```text
//!  fetch loop ─► arrive(key, call) ─┬─ no call of the key alive ─► dispatcher (slots) ─► call task
//!                                   └─ else: held, in offset order        │
//!  call task ends (any way) ─► ended(key) ─► the key's next held call ────┘
//! ```
//!
//! A call that keeps failing holds its key (its retries wait in the window: see
//! `call::attempts`) until its retry budget is spent and it is dead-lettered; then the key
//! moves on. Calls without a key (an empty `partition_key`, Go's records) are not ordered.

use std::collections::{HashMap, VecDeque};

/// The calls held behind an earlier call of their key.
#[derive(Debug)]
pub struct KeyGate<T> {
    /// Per key with a call alive: the calls of that key waiting behind it, in offset order.
    held: HashMap<Vec<u8>, VecDeque<T>>,
}

impl<T> Default for KeyGate<T> {
    fn default() -> Self {
        Self { held: HashMap::new() }
    }
}

impl<T> KeyGate<T> {
    /// A call of `key` arrives: it may go now (returned) when no call of its key is alive,
    /// else it is held. Once returned, the caller must report its end with [`ended`](Self::ended).
    pub fn arrive(&mut self, key: &[u8], call: T) -> Option<T> {
        match self.held.get_mut(key) {
            Some(queue) => {
                queue.push_back(call);
                None
            }
            None => {
                self.held.insert(key.to_vec(), VecDeque::new());
                Some(call)
            }
        }
    }

    /// The alive call of `key` ended: the key's next call, now alive, if one was held.
    pub fn ended(&mut self, key: &[u8]) -> Option<T> {
        let queue = self.held.get_mut(key)?;
        let next = queue.pop_front();
        if next.is_none() {
            self.held.remove(key);
        }
        next
    }

    /// Calls held (not counting the alive one of each key).
    pub fn held(&self) -> usize {
        self.held.values().map(VecDeque::len).sum()
    }

    /// Keys with a call alive.
    pub fn keys(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn one_call_per_key_in_order_and_other_keys_pass() {
        let mut gate = KeyGate::default();
        assert_eq!(gate.arrive(b"a", 1), Some(1));
        assert_eq!(gate.arrive(b"a", 2), None);
        assert_eq!(gate.arrive(b"b", 3), Some(3), "another key is not held");
        assert_eq!(gate.arrive(b"a", 4), None);
        assert_eq!((gate.held(), gate.keys()), (2, 2));
        assert_eq!(gate.ended(b"a"), Some(2));
        assert_eq!(gate.ended(b"b"), None);
        assert_eq!(gate.arrive(b"b", 5), Some(5), "b had nothing alive any more");
        assert_eq!(gate.ended(b"a"), Some(4));
        assert_eq!(gate.ended(b"a"), None);
        assert_eq!(gate.arrive(b"a", 6), Some(6));
        assert_eq!(gate.ended(b"unknown"), None);
    }

    proptest! {
        /// Whatever the interleaving of arrivals and ends: at most one call per key is alive,
        /// each key's calls come alive in arrival order, and every call comes alive once
        /// all have ended.
        #[test]
        fn at_most_one_alive_per_key_in_arrival_order(
            steps in prop::collection::vec((0u8..4, any::<bool>()), 1..200),
        ) {
            let mut gate = KeyGate::default();
            let mut alive: HashMap<u8, u32> = HashMap::new();
            let mut started: HashMap<u8, Vec<u32>> = HashMap::new();
            let mut sent: HashMap<u8, Vec<u32>> = HashMap::new();
            for (n, (key, arrive)) in (0u32..).zip(steps) {
                let mut went = Vec::new();
                if arrive {
                    sent.entry(key).or_default().push(n);
                    went.extend(gate.arrive(&[key], (key, n)));
                } else if alive.remove(&key).is_some() {
                    went.extend(gate.ended(&[key]));
                }
                for (k, call) in went {
                    prop_assert!(alive.insert(k, call).is_none(), "two calls of key {k} alive");
                    started.entry(k).or_default().push(call);
                }
            }
            // End everything still alive, key by key.
            while let Some((&key, _)) = alive.iter().next() {
                alive.remove(&key);
                if let Some((k, call)) = gate.ended(&[key]) {
                    alive.insert(k, call);
                    started.entry(k).or_default().push(call);
                }
            }
            prop_assert_eq!(started, sent);
            prop_assert_eq!(gate.keys(), 0);
        }
    }
}
