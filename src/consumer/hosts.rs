//! Per-target-host cap on calls in flight (`hostConcurrency`), so one slow host
//! cannot take every delivery slot of an entry and delay calls to other hosts.
//!
//! Calls waiting for their host's slot hold nothing else: they take the entry's
//! concurrency slot and rate token only after this one, so a host at its cap
//! never blocks the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The hosts' semaphores of one consumer entry. A host's entry lives only while
/// some call holds or waits for its slot, so the map is bounded by the calls in
/// flight, not by how many hosts callers name.
#[derive(Debug)]
pub struct HostSlots {
    per_host: usize,
    hosts: Mutex<HashMap<String, Host>>,
}

/// A host's semaphore and how many calls hold or wait for it (counted by hand: it
/// decides when the entry goes, and `Arc` counts also see in-flight acquire futures).
#[derive(Debug)]
struct Host {
    semaphore: Arc<Semaphore>,
    users: usize,
}

/// One call's slot at its host; dropping it frees the slot (and the host's entry
/// when nobody else uses it). Owns its share of the slots, so a call task can take
/// a slot acquired before the task was spawned.
#[derive(Debug)]
pub struct HostSlot {
    slots: Arc<HostSlots>,
    host: String,
    permit: Option<OwnedSemaphorePermit>,
}

impl HostSlots {
    /// At most `per_host` calls in flight per host (at least 1).
    pub fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot at `host`. Cancel-safe: the guard is built before the wait,
    /// so a dropped future still gives its use of the host's entry back.
    pub async fn acquire(self: &Arc<Self>, host: &str) -> HostSlot {
        let semaphore = {
            let mut hosts = self.lock();
            let entry = hosts.entry(host.to_owned()).or_insert_with(|| Host {
                semaphore: Arc::new(Semaphore::new(self.per_host)),
                users: 0,
            });
            entry.users += 1;
            Arc::clone(&entry.semaphore)
        };
        let mut slot = HostSlot {
            slots: Arc::clone(self),
            host: host.to_owned(),
            permit: None,
        };
        // The semaphore is never closed, so acquiring cannot fail; if it did, the call
        // would go on without a host slot rather than stall.
        slot.permit = semaphore.acquire_owned().await.ok();
        slot
    }

    /// Hosts with calls holding or waiting for a slot.
    pub fn hosts(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Host>> {
        self.hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut hosts = self.slots.lock();
        if let Some(host) = hosts.get_mut(&self.host) {
            host.users = host.users.saturating_sub(1);
            if host.users == 0 {
                hosts.remove(&self.host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_full_host_does_not_block_another() {
        let slots = Arc::new(HostSlots::new(2));
        let _a1 = slots.acquire("http://slow").await;
        let _a2 = slots.acquire("http://slow").await;
        let third = tokio::time::timeout(Duration::from_millis(50), slots.acquire("http://slow")).await;
        assert!(third.is_err(), "a third call to a host at its cap waits");
        let other = tokio::time::timeout(Duration::from_millis(50), slots.acquire("http://fast")).await;
        assert!(other.is_ok(), "another host gets a slot at once");
    }

    #[tokio::test]
    async fn entries_are_pruned_when_the_last_call_leaves() {
        let slots = Arc::new(HostSlots::new(1));
        let a = slots.acquire("h1").await;
        let b = slots.acquire("h2").await;
        assert_eq!(slots.hosts(), 2);
        drop(a);
        assert_eq!(slots.hosts(), 1);
        drop(b);
        assert_eq!(slots.hosts(), 0);
    }

    #[tokio::test]
    async fn a_waiter_keeps_the_entry_and_gets_the_slot() {
        let slots = Arc::new(HostSlots::new(1));
        let first = slots.acquire("h").await;
        let s2 = Arc::clone(&slots);
        let waiter = tokio::spawn(async move {
            let _slot = s2.acquire("h").await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert_eq!(slots.hosts(), 1, "the waiter still needs the entry");
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("waiter gets the slot")
            .expect("waiter ran");
        assert_eq!(slots.hosts(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_nothing_behind() {
        let slots = Arc::new(HostSlots::new(1));
        let held = slots.acquire("h").await;
        let waited = tokio::time::timeout(Duration::from_millis(20), slots.acquire("h")).await;
        assert!(waited.is_err());
        drop(held);
        assert_eq!(slots.hosts(), 0);
    }
}
