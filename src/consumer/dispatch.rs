//! Starts the calls of a partition's read-ahead window only when they can be attempted:
//! when their target host and the entry each have a free slot.
//!
//! ```text
//!  fetch loop ─► decode ─(host, call)─► queue of its host ─► host slot ─► entry slot ─► start(call, slots)
//!                                        (plain data)        one wait per host          (spawns the call task)
//! ```
//!
//! Why: a call task spawned as soon as its record entered the window (up to
//! `prefetchRecords` per partition) kept a call future each (~18 KB) that mostly waited
//! for a slot: six partitions of 1000 records held ~100 MiB while draining a backlog.
//! Waiting calls are now plain data, and the call tasks alive are those with slots (at most
//! the entry's `concurrency`) plus calls that wait to retry.
//!
//! What stays as before: a host at its cap holds back no call to another host (each host
//! has its own queue and waits for its own slot); the host's slot is taken before the
//! entry's, as [`super::call`] does for later attempts, so a call waiting for a busy host
//! holds nothing other hosts need; calls of one host start in offset order; and a stop
//! drops the calls still waiting (they never started an attempt, so they stay uncommitted
//! for the next owner, as when they waited in their own tasks).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::call::Slots;
use super::hosts::{HostSlot, HostSlots};

/// A call for `host` (its host key, `scheme://authority`) waiting for its slots.
pub type Waiting<T> = (String, T);

/// The wait for one host's slot.
type SlotWait = Pin<Box<dyn Future<Output = (String, HostSlot)> + Send>>;

fn wait_for_slot(hosts: &Arc<HostSlots>, host: String) -> SlotWait {
    let hosts = Arc::clone(hosts);
    Box::pin(async move {
        let slot = hosts.acquire(&host).await;
        (host, slot)
    })
}

/// The slots calls need before they start.
#[derive(Debug, Clone)]
pub struct SlotSource {
    /// The entry's per-host caps (`hostConcurrency`).
    pub hosts: Arc<HostSlots>,
    /// The entry's calls in flight (`concurrency`).
    pub entry: Arc<Semaphore>,
}

/// Takes the calls of `intake` and hands each to `start` with its slots, until `stop` or
/// until the intake closes. Calls still waiting then are dropped.
pub async fn run<T: Send>(
    mut intake: mpsc::UnboundedReceiver<Waiting<T>>,
    slots: SlotSource,
    stop: CancellationToken,
    mut start: impl FnMut(T, Slots),
) {
    let mut waiting: HashMap<String, VecDeque<T>> = HashMap::new();
    // One wait per host with calls waiting, never more: a host's queue is served in order.
    let mut slot_waits: FuturesUnordered<SlotWait> = FuturesUnordered::new();
    let enqueue = |waiting: &mut HashMap<String, VecDeque<T>>,
                   slot_waits: &FuturesUnordered<SlotWait>,
                   (host, call): Waiting<T>| {
        let queue = waiting.entry(host.clone()).or_default();
        if queue.is_empty() {
            slot_waits.push(wait_for_slot(&slots.hosts, host));
        }
        queue.push_back(call);
    };
    loop {
        // Everything read so far is queued before the next slot is given, so a host whose
        // calls keep starting cannot keep another host's calls out of their queue.
        while let Ok(call) = intake.try_recv() {
            enqueue(&mut waiting, &slot_waits, call);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            got = intake.recv() => match got {
                Some(call) => enqueue(&mut waiting, &slot_waits, call),
                None => return,
            },
            Some((host, host_slot)) = slot_waits.next() => {
                let entry = Arc::clone(&slots.entry).acquire_owned();
                // The entry's semaphore is never closed; if it were, nothing more starts.
                let Some(Ok(entry_slot)) = stop.run_until_cancelled(entry).await else {
                    return;
                };
                let Some(queue) = waiting.get_mut(&host) else {
                    continue;
                };
                if let Some(call) = queue.pop_front() {
                    start(call, Slots::new(host_slot, entry_slot));
                }
                if queue.is_empty() {
                    waiting.remove(&host);
                } else {
                    slot_waits.push(wait_for_slot(&slots.hosts, host));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Calls started, with the slots they hold until [`Harness::finish`].
    type Started = Arc<Mutex<Vec<(u32, Option<Slots>)>>>;

    struct Harness {
        tx: mpsc::UnboundedSender<Waiting<u32>>,
        hosts: Arc<HostSlots>,
        started: Started,
        stop: CancellationToken,
        run: tokio::task::JoinHandle<()>,
    }

    fn harness(per_host: usize, entry: usize) -> Harness {
        let (tx, rx) = mpsc::unbounded_channel();
        let started: Started = Arc::default();
        let stop = CancellationToken::new();
        let hosts = Arc::new(HostSlots::new(per_host));
        let slots = SlotSource {
            hosts: Arc::clone(&hosts),
            entry: Arc::new(Semaphore::new(entry)),
        };
        let sink = Arc::clone(&started);
        let run = tokio::spawn(run(rx, slots, stop.clone(), move |call, slots| {
            sink.lock().unwrap().push((call, Some(slots)));
        }));
        Harness {
            tx,
            hosts,
            started,
            stop,
            run,
        }
    }

    impl Harness {
        fn send(&self, host: &str, call: u32) {
            self.tx.send((host.to_owned(), call)).unwrap();
        }

        /// The calls started so far, sorted, once the dispatcher has nothing left to do.
        async fn started(&self) -> Vec<u32> {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut started: Vec<u32> = self.started.lock().unwrap().iter().map(|(c, _)| *c).collect();
            started.sort_unstable();
            started
        }

        /// Call `call` ends: its slots are free.
        fn finish(&self, call: u32) {
            let mut started = self.started.lock().unwrap();
            let found = started.iter_mut().find(|(c, _)| *c == call).unwrap();
            found.1 = None;
        }

        async fn stop(self) -> Arc<HostSlots> {
            self.stop.cancel();
            self.run.await.unwrap();
            self.started.lock().unwrap().clear();
            self.hosts
        }
    }

    #[tokio::test]
    async fn a_full_window_starts_no_more_calls_than_the_entry_has_slots() {
        let h = harness(256, 4);
        for call in 0..1000 {
            h.send("http://a", call);
        }
        assert_eq!(
            h.started().await,
            [0, 1, 2, 3],
            "four slots, four calls, in offset order"
        );
        h.finish(0);
        h.finish(2);
        assert_eq!(h.started().await, [0, 1, 2, 3, 4, 5]);
        h.stop().await;
    }

    #[tokio::test]
    async fn a_host_at_its_cap_does_not_hold_back_another_host() {
        let h = harness(1, 8);
        for (host, call) in [("slow", 0), ("slow", 1), ("slow", 2), ("fast", 3), ("fast", 4)] {
            h.send(host, call);
        }
        assert_eq!(
            h.started().await,
            [0, 3],
            "one each at a cap of one; the others wait"
        );
        h.finish(3);
        assert_eq!(
            h.started().await,
            [0, 3, 4],
            "the fast host goes on, the slow one waits"
        );
        h.finish(0);
        assert_eq!(h.started().await, [0, 1, 3, 4]);
        h.stop().await;
    }

    #[tokio::test]
    async fn a_stop_drops_the_waiting_calls_and_leaves_no_host_entry() {
        let h = harness(1, 1);
        for call in 0..10 {
            h.send("http://a", call);
        }
        assert_eq!(h.started().await, [0]);
        let hosts = h.stop().await;
        assert_eq!(hosts.hosts(), 0, "no slot held, no wait left behind");
    }
}
