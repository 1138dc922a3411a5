//! Per-target-host counters with a cap on how many hosts get their own label.
//!
//! A target host is caller input: without a cap, a caller sending calls to a million hosts
//! would make a million series. The first `cap` hosts seen get their own counters; the
//! rest share "other". Lookups read an `ArcSwap`ped map (no lock); the map is copied and
//! swapped only when a host is seen for the first time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::classes::{Outcome, StatusClass, index};

/// The host label of the hosts past the cap (and of calls whose URL had no host).
pub const OTHER_HOST: &str = "other";

/// Default of `metrics.max_hosts`.
pub const DEFAULT_MAX_HOSTS: usize = 100;

/// No breaker state recorded for the host (it never changed state).
const NO_CIRCUIT: i64 = -1;

/// The counters of one host (or of "other").
#[derive(Debug)]
pub struct HostCounters {
    /// Attempts per (outcome, status class), `outcome * StatusClass::ALL.len() + class`.
    attempts: [AtomicU64; Outcome::ALL.len() * StatusClass::ALL.len()],
    /// The breaker state: 0 closed, 1 open, 2 half-open; -1 never changed.
    circuit: AtomicI64,
}

impl Default for HostCounters {
    fn default() -> Self {
        Self {
            attempts: std::array::from_fn(|_| AtomicU64::new(0)),
            circuit: AtomicI64::new(NO_CIRCUIT),
        }
    }
}

impl HostCounters {
    /// Counts one attempt.
    pub fn attempt(&self, outcome: Outcome, class: StatusClass) {
        let i = index(&Outcome::ALL, &outcome) * StatusClass::ALL.len() + index(&StatusClass::ALL, &class);
        if let Some(c) = self.attempts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The non-zero attempt counts.
    pub fn attempts(&self) -> Vec<(Outcome, StatusClass, u64)> {
        let mut out = Vec::new();
        for (o, outcome) in Outcome::ALL.iter().enumerate() {
            for (c, class) in StatusClass::ALL.iter().enumerate() {
                let n = self
                    .attempts
                    .get(o * StatusClass::ALL.len() + c)
                    .map_or(0, |a| a.load(Ordering::Relaxed));
                if n > 0 {
                    out.push((*outcome, *class, n));
                }
            }
        }
        out
    }

    /// Sets the breaker state (0 closed, 1 open, 2 half-open).
    pub fn set_circuit(&self, state: i64) {
        self.circuit.store(state, Ordering::Relaxed);
    }

    /// The breaker state, if it ever changed.
    pub fn circuit(&self) -> Option<i64> {
        let s = self.circuit.load(Ordering::Relaxed);
        (s != NO_CIRCUIT).then_some(s)
    }
}

/// The hosts of one consumer entry.
#[derive(Debug)]
pub struct HostTable {
    cap: AtomicUsize,
    hosts: ArcSwap<HashMap<String, Arc<HostCounters>>>,
    /// Serialises first sightings, so two threads never both copy-and-swap the map.
    adding: Mutex<()>,
    other: Arc<HostCounters>,
}

impl Default for HostTable {
    fn default() -> Self {
        Self {
            cap: AtomicUsize::new(DEFAULT_MAX_HOSTS),
            hosts: ArcSwap::default(),
            adding: Mutex::new(()),
            other: Arc::default(),
        }
    }
}

impl HostTable {
    /// Sets how many hosts get their own label (hosts already seen keep theirs).
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// The counters of `host`: its own, or "other" past the cap.
    pub fn get(&self, host: &str) -> Arc<HostCounters> {
        if host.is_empty() || host == OTHER_HOST {
            return Arc::clone(&self.other);
        }
        if let Some(found) = self.hosts.load().get(host) {
            return Arc::clone(found);
        }
        let _adding = self
            .adding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.hosts.load_full();
        if let Some(found) = current.get(host) {
            return Arc::clone(found);
        }
        if current.len() >= self.cap.load(Ordering::Relaxed) {
            return Arc::clone(&self.other);
        }
        let mut next = HashMap::clone(&current);
        let created = Arc::new(HostCounters::default());
        next.insert(host.to_owned(), Arc::clone(&created));
        self.hosts.store(Arc::new(next));
        created
    }

    /// Every host with its counters, "other" last, sorted by host for a stable scrape.
    pub fn snapshot(&self) -> Vec<(String, Arc<HostCounters>)> {
        let mut out: Vec<(String, Arc<HostCounters>)> = self
            .hosts
            .load()
            .iter()
            .map(|(h, c)| (h.clone(), Arc::clone(c)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.push((OTHER_HOST.to_owned(), Arc::clone(&self.other)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_past_the_cap_share_other() {
        let t = HostTable::default();
        t.set_cap(2);
        t.get("http://a").attempt(Outcome::Delivered, StatusClass::S2xx);
        t.get("http://b").attempt(Outcome::HttpError, StatusClass::S5xx);
        t.get("http://c").attempt(Outcome::Timeout, StatusClass::None);
        t.get("http://d").attempt(Outcome::Timeout, StatusClass::None);
        t.get("http://a").attempt(Outcome::Delivered, StatusClass::S2xx);
        let snap = t.snapshot();
        let names: Vec<&str> = snap.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(names, ["http://a", "http://b", "other"]);
        assert_eq!(snap[0].1.attempts(), [(Outcome::Delivered, StatusClass::S2xx, 2)]);
        assert_eq!(snap[2].1.attempts(), [(Outcome::Timeout, StatusClass::None, 2)]);
    }

    #[test]
    fn circuit_state_is_absent_until_set() {
        let t = HostTable::default();
        let h = t.get("http://a");
        assert_eq!(h.circuit(), None);
        h.set_circuit(1);
        assert_eq!(t.get("http://a").circuit(), Some(1));
    }
}
