//! Counters per ACL name, read without a lock.
//!
//! Only names that passed the ACL check are keys (a refused caller's name is "" in the
//! labels), so the map holds at most the configured ACLs (plus those of earlier reloads).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// A counter per ACL name.
#[derive(Debug, Default)]
pub struct AclCounters {
    map: ArcSwap<HashMap<String, Arc<AtomicU64>>>,
    /// Serialises first sightings of a name.
    adding: Mutex<()>,
}

impl AclCounters {
    /// Adds one to `acl`'s counter.
    pub fn inc(&self, acl: &str) {
        if let Some(c) = self.map.load().get(acl) {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _adding = self
            .adding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.map.load_full();
        if let Some(c) = current.get(acl) {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut next = HashMap::clone(&current);
        next.insert(acl.to_owned(), Arc::new(AtomicU64::new(1)));
        self.map.store(Arc::new(next));
    }

    /// Every name with its count, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .map
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_name() {
        let c = AclCounters::default();
        c.inc("b");
        c.inc("a");
        c.inc("b");
        assert_eq!(c.snapshot(), [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    }
}
