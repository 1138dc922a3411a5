//! One assigned partition of a lane: the fetch loop ([`super::fetch`]), the dispatcher
//! that starts calls when they have slots ([`super::dispatch`]), one task per call started
//! ([`super::call`]), plus the offsets to commit.
//!
//! Stopping (revoke) stops the fetch loop, waits up to the drain timeout for
//! calls in flight, then abandons the rest: abandoned calls stay uncommitted
//! and the next owner delivers them again (at least once).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Lane;
use super::call::{self, Call, End, InFlight, Slots};
use super::callback;
use super::dispatch;
use super::fetch::{self, FetchLoop, KafkaSource, SharedTracker, StartAt, Window, Work};
use super::keys::KeyGate;
use super::offsets::OffsetTracker;
use crate::config::Ordering;

/// State shared by a partition's fetch loop, its call tasks and its owner.
#[derive(Debug)]
struct Shared {
    /// `None` until the start position is known.
    tracker: SharedTracker,
    /// Stops fetching, and calls that have not started an attempt (revoke, shutdown).
    stop_fetch: CancellationToken,
    /// Makes every call give up at once, leaving its offset uncommitted.
    abandon: CancellationToken,
    /// The fetch loop and every call task.
    tasks: TaskTracker,
}

impl Shared {
    fn with_tracker<T>(&self, f: impl FnOnce(&mut OffsetTracker) -> T) -> Option<T> {
        fetch::lock(&self.tracker).as_mut().map(f)
    }
}

/// A running partition.
#[derive(Debug)]
pub struct PartitionRun {
    /// The partition number.
    pub partition: i32,
    shared: Arc<Shared>,
}

impl PartitionRun {
    /// Starts fetching and delivering `partition` of `lane` from `start`.
    pub fn start(lane: Arc<Lane>, partition: i32, start: StartAt) -> Self {
        let shared = Arc::new(Shared {
            tracker: std::sync::Mutex::new(None),
            stop_fetch: CancellationToken::new(),
            abandon: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        shared
            .tasks
            .spawn(run(lane, partition, start, Arc::clone(&shared)));
        Self { partition, shared }
    }

    /// The position to commit, if it moved since the last commit.
    pub fn take_commit(&self) -> Option<i64> {
        self.shared.with_tracker(OffsetTracker::take_commit).flatten()
    }

    /// The position to commit now, moved or not.
    pub fn committable(&self) -> Option<i64> {
        self.shared.with_tracker(|t| t.committable())
    }

    /// Calls read and not finished.
    pub fn in_flight(&self) -> usize {
        self.shared.with_tracker(|t| t.in_flight()).unwrap_or(0)
    }

    /// A commit of this partition failed; send it again next time.
    pub fn commit_failed(&self) {
        self.shared.with_tracker(OffsetTracker::commit_failed);
    }

    /// Stops fetching, waits up to `drain` for calls in flight, abandons the
    /// rest. Returns the position to commit (None if the start position was
    /// never known) and how many calls were abandoned.
    pub async fn stop(self, drain: Duration) -> (Option<i64>, usize) {
        self.shared.stop_fetch.cancel();
        self.shared.tasks.close();
        if tokio::time::timeout(drain, self.shared.tasks.wait())
            .await
            .is_err()
        {
            self.shared.abandon.cancel();
            self.shared.tasks.wait().await;
        }
        // Every task has ended: what started and did not finish was abandoned, whether
        // at the drain deadline or earlier (calls not yet attempting leave at once).
        let abandoned = self.shared.with_tracker(|t| t.in_flight()).unwrap_or(0);
        (self.committable(), abandoned)
    }

    /// Membership was lost: stop everything at once; nothing is committed.
    pub async fn abort(self) {
        self.shared.stop_fetch.cancel();
        self.shared.abandon.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

/// A call of the entry's own topic, read and decoded, waiting in [`dispatch`] for its slots.
#[derive(Debug)]
struct Queued {
    call: Call,
    held: fetch::Held,
    in_flight: InFlight,
    /// Its key, when the entry orders calls by key ([`KeyGate`]).
    key: Option<Vec<u8>>,
}

/// The key gate of a partition whose entry orders calls by key.
type SharedGate = Arc<std::sync::Mutex<KeyGate<Queued>>>;

fn lock_gate(gate: &SharedGate) -> std::sync::MutexGuard<'_, KeyGate<Queued>> {
    gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lets the next call of a key through its gate when the call before it ends, however it
/// ends (delivered, dead-lettered, abandoned, or its task dropped).
struct KeyRelease {
    key: Vec<u8>,
    gate: SharedGate,
    /// Weak: a call task must not keep the dispatcher's intake open.
    dispatcher: mpsc::WeakUnboundedSender<dispatch::Waiting<Queued>>,
}

impl Drop for KeyRelease {
    fn drop(&mut self) {
        let next = lock_gate(&self.gate).ended(&self.key);
        if let (Some(next), Some(dispatcher)) = (next, self.dispatcher.upgrade()) {
            // Fails only once the dispatcher has stopped: the call stays uncommitted.
            dispatcher.send((next.call.host.clone(), next)).ok();
        }
    }
}

/// Spawns the task of one piece of work at `offset`: it runs `life`, marks the offset
/// finished when the life ends so, and gives back the window permits (`held`) at the end.
/// The partition's abandon token ends it wherever it is.
fn spawn_life<F>(shared: &Arc<Shared>, offset: i64, held: fetch::Held, life: F)
where
    F: Future<Output = End> + Send + 'static,
{
    let task_shared = Arc::clone(shared);
    shared.tasks.spawn(async move {
        tokio::select! {
            end = life => {
                if end == End::Finished {
                    task_shared.with_tracker(|t| t.finished(offset));
                }
            }
            () = task_shared.abandon.cancelled() => {}
        }
        drop(held);
    });
}

/// The partition's fetch loop and, for the entry's own topic, its [`dispatch`]er.
///
/// Calls of the entry's topic wait in the dispatcher as plain data until they have slots;
/// only then is their task spawned. A retry tier's calls each wait until due first (a
/// wait of their own, that needs no slot), so each gets its task at once, as do records
/// that are not calls and unreadable batches (dead letters, no slot either).
async fn run(lane: Arc<Lane>, partition: i32, start: StartAt, shared: Arc<Shared>) {
    let s = &lane.entry.settings;
    let fetch_loop = FetchLoop {
        window: Window::new(s.prefetch_records, s.prefetch_bytes),
        reset: s.offset_reset,
        max_wait: s.fetch_max_wait,
        stop: shared.stop_fetch.clone(),
        gate: lane.gate.clone(),
        log: lane.log.new(slog::o!("partition" => partition)),
    };
    let mut source = KafkaSource::new(
        Arc::clone(&lane.entry.client),
        Arc::clone(&lane.entry.fallback),
        &lane.group_id,
        lane.topic.clone(),
        partition,
        s.fetch_max_wait,
    );
    let (waiting, intake) = mpsc::unbounded_channel::<dispatch::Waiting<Queued>>();
    // `ordering = "key"` on the entry's own topic: one call per key at a time.
    let ordered = lane.tier.is_none() && s.ordering == Ordering::Key;
    let gate = SharedGate::default();
    let on_work = |work: Work, held: fetch::Held| {
        let offset = work.offset();
        let lane = Arc::clone(&lane);
        let stopping = shared.stop_fetch.clone();
        match work {
            Work::Record(record) if lane.tier.is_none() => {
                let in_flight = InFlight::new(&lane.stats);
                match call::take(&lane, partition, record) {
                    Ok(call) if callback::for_another_group(&call, &s.group_id) => {
                        // Another group's callback: finished here without a delivery.
                        spawn_life(&shared, offset, held, async move {
                            let _in_flight = in_flight;
                            End::Finished
                        });
                    }
                    Ok(call)
                        if let Some(due) = call::due_later(&call, chrono::Utc::now().timestamp_millis()) =>
                    {
                        // Scheduled for later: it needs no slot until it is due.
                        spawn_life(&shared, offset, held, async move {
                            let _in_flight = in_flight;
                            call::scheduled(&lane, call, due, &stopping).await
                        });
                    }
                    Ok(call) => {
                        let key = ordered
                            .then(|| call.record.key.clone())
                            .flatten()
                            .filter(|k| !k.is_empty());
                        let queued = Queued {
                            call,
                            held,
                            in_flight,
                            key,
                        };
                        let ready = match &queued.key {
                            Some(key) => lock_gate(&gate).arrive(&key.clone(), queued),
                            None => Some(queued),
                        };
                        // Fails only once the dispatcher has stopped (so has the partition): the
                        // call stays uncommitted for the next owner.
                        if let Some(ready) = ready {
                            waiting.send((ready.call.host.clone(), ready)).ok();
                        }
                    }
                    Err(bad) => spawn_life(&shared, offset, held, async move {
                        let _in_flight = in_flight;
                        call::refuse(&lane, partition, *bad).await
                    }),
                }
            }
            Work::Record(record) => spawn_life(&shared, offset, held, async move {
                call::live(&lane, partition, record, &stopping).await
            }),
            Work::Unreadable(batch) => spawn_life(&shared, offset, held, async move {
                call::step_over(&lane, partition, batch).await
            }),
        }
    };
    let on_fetch = |outcome: Result<i64, &fetch::FetchError>| match outcome {
        Ok(high_watermark) => lane
            .stats
            .set_partition(partition, |v| v.high_watermark = high_watermark),
        // The stall report names the last fetch error as the reason.
        Err(e) => lane.stats.fetch_failed(partition, e),
    };
    let slots = dispatch::SlotSource {
        hosts: Arc::clone(&lane.entry.hosts),
        entry: Arc::clone(&lane.entry.concurrency),
    };
    let start_call = |queued: Queued, slots: Slots| {
        let lane = Arc::clone(&lane);
        let stopping = shared.stop_fetch.clone();
        let Queued {
            call,
            held,
            in_flight,
            key,
        } = queued;
        let release = key.map(|key| KeyRelease {
            key,
            gate: Arc::clone(&gate),
            dispatcher: waiting.downgrade(),
        });
        spawn_life(&shared, call.offset, held, async move {
            let _in_flight = in_flight;
            let _release = release;
            call::deliver(&lane, call, slots, &stopping).await
        });
    };
    tokio::join!(
        fetch_loop.run(&mut source, start, &shared.tracker, on_work, on_fetch),
        dispatch::run(intake, slots, shared.stop_fetch.clone(), start_call),
    );
}
