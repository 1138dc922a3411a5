//! The fetch loop of one partition: reads records into a bounded window and hands
//! each one on as work, whatever the records contain.
//!
//! ```text
//!  FetchSource::fetch(pos) ──► window permits (records + bytes) ──► on_work(Work, Held)
//!        ▲ stops while the window is full                               │ (a call task)
//!        └────────────── permits come back when the work is done ◄──────┘
//! ```
//!
//! The source is a trait (rskafka's own `FetchClient` pattern) so the loop is
//! tested with a scripted source; [`KafkaSource`] is the real one. A batch the
//! source cannot read is handed on as [`Work::Unreadable`] with its offsets, so
//! the partition steps over it instead of stopping there.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::record::RecordAndOffset;
use slog::{Logger, debug, info, warn};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::gate::Gate;
use super::offsets::OffsetTracker;
use crate::backoff::{Backoff, BackoffConfig};
use crate::config::OffsetReset;
use crate::kafka::client::{self, KafkaClient, bounded};
use crate::kafka::fallback::{FallbackError, FallbackFetcher, FetchedItem, is_decode_error};
use crate::kafka::fault::{Fault, fault};
use crate::kafka::partitions::{PartitionKey, Purpose};
use kafka_protocol::error::ResponseError;

/// Where a partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The group's committed offset.
    Committed(i64),
    /// No committed offset: apply the entry's reset policy.
    Reset(OffsetReset),
}

/// A batch that could not be read: its offsets are stepped over and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// First offset of the batch.
    pub first: i64,
    /// Last offset of the batch (inclusive).
    pub last: i64,
    /// Why it could not be read.
    pub reason: String,
}

/// What one fetch returned.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Records, in offset order.
    pub records: Vec<RecordAndOffset>,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// Batches that could not be decoded, in offset order.
    pub unreadable: Vec<Unreadable>,
    /// Where the next fetch starts when the source knows better than "after the last
    /// record" (ranges with no calls at the end: transaction markers, aborted records).
    pub next_offset: Option<i64>,
}

/// Why a fetch or an offset lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The position is outside the log (retention deleted it, or the topic was recreated).
    #[error("offset is out of range")]
    OutOfRange,
    /// The client, a lookup or the request failed or timed out.
    #[error(transparent)]
    Kafka(#[from] client::Error),
    /// The fallback reader (for batches rskafka cannot decode) failed.
    #[error(transparent)]
    Fallback(#[from] FallbackError),
}

/// Reads one partition. A trait so the fetch loop can be tested without Kafka.
pub trait FetchSource: Send {
    /// Fetches from `offset`, at most about `max_bytes`, waiting up to `max_wait_ms` for data.
    fn fetch(
        &mut self,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> impl Future<Output = Result<Fetched, FetchError>> + Send;

    /// The offset the reset policy points at.
    fn reset_offset(&mut self, reset: OffsetReset) -> impl Future<Output = Result<i64, FetchError>> + Send;
}

/// One unit of work taken from the partition.
#[derive(Debug)]
pub enum Work {
    /// A record to deliver.
    Record(RecordAndOffset),
    /// A batch to step over (and report).
    Unreadable(Unreadable),
}

impl Work {
    /// The offset the work is tracked under.
    pub fn offset(&self) -> i64 {
        match self {
            Self::Record(r) => r.offset,
            Self::Unreadable(u) => u.first,
        }
    }
}

/// The window permits one piece of work holds until it is done.
#[derive(Debug)]
pub struct Held {
    _record: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// The read-ahead window of one partition: permits for records and for bytes.
#[derive(Debug, Clone)]
pub struct Window {
    records: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
}

impl Window {
    /// A window of `records` records and `bytes` bytes (each at least 1).
    pub fn new(records: usize, bytes: usize) -> Self {
        Self {
            records: Arc::new(Semaphore::new(records.max(1))),
            bytes: Arc::new(Semaphore::new(bytes.max(1))),
            max_bytes: bytes.max(1),
        }
    }

    /// The `max_bytes` of the next fetch, when `held` record permits are already taken for it:
    /// the free part of the window in records (at `per_record` wire bytes each) and in bytes,
    /// whichever is smaller, clamped to what one fetch may ask for. Asking for the whole free
    /// byte window instead made one fetch return many times the records the window could take,
    /// and they waited, decoded, for permits (about 9 MiB per partition with small records).
    fn room(&self, held: usize, per_record: usize) -> i32 {
        let records = self.records.available_permits().saturating_add(held);
        let room = records
            .saturating_mul(per_record)
            .min(self.bytes.available_permits())
            .clamp(1, MAX_FETCH_BYTES);
        i32::try_from(room).unwrap_or(i32::MAX)
    }
}

/// The most one fetch asks for.
const MAX_FETCH_BYTES: usize = 8 << 20;

/// Estimates how many bytes of a fetch answer one record takes on the wire (compressed,
/// with its batch's overhead), so a fetch can be sized to the records the window has room for.
///
/// Learned from fetches the broker cut at `max_bytes` (the partition had more): bytes asked
/// divided by records returned. Fetches that reached the end of the partition say nothing
/// about the size. A wrong guess costs little: Kafka returns at least one whole batch
/// whatever `max_bytes` says, and the next cut fetch corrects the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSizer {
    per_record: usize,
}

/// The first guess, before any fetch was cut: a small call record, so the first fetch of a
/// large backlog is small instead of the whole byte window.
const FIRST_GUESS_PER_RECORD: usize = 256;

impl Default for FetchSizer {
    fn default() -> Self {
        Self {
            per_record: FIRST_GUESS_PER_RECORD,
        }
    }
}

impl FetchSizer {
    /// Wire bytes per record, as estimated now.
    pub fn per_record(&self) -> usize {
        self.per_record
    }

    /// Learns from a fetch that asked for `asked` bytes and got `fetched`.
    pub fn observe(&mut self, asked: i32, fetched: &Fetched) {
        let Some(last) = fetched.records.last() else {
            return;
        };
        // Records before `pos` (a compressed batch starting earlier) took bytes of the answer too.
        let count = fetched.records.len();
        // Not cut: the partition ended there, and the answer was as large as the data.
        if fetched.high_watermark <= last.offset + 1 {
            return;
        }
        let asked = usize::try_from(asked).unwrap_or(0);
        let sample = (asked / count).clamp(16, MAX_FETCH_BYTES);
        // A moving average: one odd batch (a large record, a partial batch dropped at the
        // end of the answer) moves it a quarter of the way.
        self.per_record = (self.per_record * 3 + sample) / 4;
    }
}

/// What the loop needs besides its source.
#[derive(Debug)]
pub struct FetchLoop {
    /// The read-ahead window.
    pub window: Window,
    /// The reset policy when the start is unknown or out of range.
    pub reset: OffsetReset,
    /// Longest broker-side wait of one fetch.
    pub max_wait: Duration,
    /// Stops the loop (revoke, shutdown).
    pub stop: CancellationToken,
    /// Closed while the entry is paused (or waits for the control topic): no fetch then,
    /// and what a fetch in progress returns is dropped, to be fetched again on resume.
    pub gate: Gate,
    /// Logger with the partition.
    pub log: Logger,
}

/// Offsets read and finished, shared with the work and the partition's owner.
pub type SharedTracker = std::sync::Mutex<Option<OffsetTracker>>;

/// Locks the tracker, whatever a panicking holder left.
pub fn lock(tracker: &SharedTracker) -> std::sync::MutexGuard<'_, Option<OffsetTracker>> {
    tracker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FetchLoop {
    /// Runs until stopped. Every piece of work is marked started in `tracker` before it
    /// is handed to `on_work`, which must mark it finished when done. `on_fetch` sees
    /// every fetch's outcome (for the partition's view: high watermark, last error).
    pub async fn run<S: FetchSource>(
        &self,
        source: &mut S,
        start: StartAt,
        tracker: &SharedTracker,
        mut on_work: impl FnMut(Work, Held),
        mut on_fetch: impl FnMut(Result<i64, &FetchError>),
    ) {
        let stop = &self.stop;
        let mut position = match start {
            StartAt::Committed(offset) => Some(offset),
            StartAt::Reset(_) => None,
        };
        let reset = match start {
            StartAt::Committed(_) => self.reset,
            StartAt::Reset(policy) => policy,
        };
        let max_wait_ms = i32::try_from(self.max_wait.as_millis()).unwrap_or(i32::MAX);
        let mut backoff = fetch_backoff();
        let mut sizer = FetchSizer::default();
        let mut gate = self.gate.clone();
        while !stop.is_cancelled() {
            if !gate.wait_open(stop).await {
                break;
            }
            let pos = match position {
                Some(p) => p,
                None => match source.reset_offset(reset).await {
                    Ok(p) => {
                        info!(self.log, "no usable committed offset, starting from the reset policy";
                            "policy" => ?reset, "offset" => p);
                        position = Some(p);
                        p
                    }
                    Err(e) => {
                        warn!(self.log, "offset lookup failed"; "error" => %e);
                        on_fetch(Err(&e));
                        pause(stop, backoff.next_delay()).await;
                        continue;
                    }
                },
            };
            {
                let mut t = lock(tracker);
                match t.as_mut() {
                    None => *t = Some(OffsetTracker::new(pos)),
                    Some(t) => t.skipped_to(pos),
                }
            }
            // Wait for room in the window before fetching more.
            let room = Arc::clone(&self.window.records).acquire_owned();
            let Some(Ok(first)) = stop.run_until_cancelled(room).await else {
                break;
            };
            let asked = self.window.room(1, sizer.per_record());
            let fetch = source.fetch(pos, asked, max_wait_ms);
            let fetched = tokio::select! {
                fetched = stop.run_until_cancelled(fetch) => fetched,
                // Paused mid-fetch: nothing it returns is taken; `pos` is fetched again.
                () = gate.closed() => continue,
            };
            let Some(fetched) = fetched else {
                break;
            };
            if !gate.is_open() {
                continue;
            }
            let fetched = match fetched {
                Ok(f) => f,
                Err(FetchError::OutOfRange) => {
                    warn!(self.log, "offset out of range, applying the reset policy"; "offset" => pos, "policy" => ?reset);
                    on_fetch(Err(&FetchError::OutOfRange));
                    position = None;
                    let mut t = lock(tracker);
                    if t.as_ref().is_some_and(|t| t.in_flight() == 0) {
                        *t = None;
                    }
                    continue;
                }
                Err(e) => {
                    warn!(self.log, "fetch failed"; "offset" => pos, "error" => %e);
                    on_fetch(Err(&e));
                    pause(stop, backoff.next_delay()).await;
                    continue;
                }
            };
            backoff = fetch_backoff();
            sizer.observe(asked, &fetched);
            on_fetch(Ok(fetched.high_watermark));
            let Some(next) = self.hand_on(fetched, pos, first, tracker, &mut on_work).await else {
                break;
            };
            position = Some(next);
        }
        debug!(self.log, "fetch loop stopped");
    }

    /// Hands on the fetched work in offset order, taking window permits for each.
    /// Returns the next position, or `None` when stopped.
    async fn hand_on(
        &self,
        fetched: Fetched,
        pos: i64,
        first: OwnedSemaphorePermit,
        tracker: &SharedTracker,
        on_work: &mut impl FnMut(Work, Held),
    ) -> Option<i64> {
        let mut next = pos;
        let known_next = fetched.next_offset;
        let mut first = Some(first);
        let mut unreadable = fetched.unreadable.into_iter().peekable();
        let mut records = fetched.records.into_iter().peekable();
        loop {
            // Merge the two offset-ordered lists.
            let take_unreadable = match (unreadable.peek(), records.peek()) {
                (Some(u), Some(r)) => u.first < r.offset,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let work = if take_unreadable {
                unreadable.next().map(Work::Unreadable)
            } else {
                records.next().map(Work::Record)
            };
            let Some(work) = work else { break };
            let (start, end) = match &work {
                Work::Record(r) => (r.offset, r.offset),
                Work::Unreadable(u) => (u.first.max(pos), u.last),
            };
            // A compressed batch can start before the requested offset.
            if end < next {
                continue;
            }
            let size = match &work {
                Work::Record(r) => r.record.approximate_size(),
                Work::Unreadable(_) => 1,
            }
            .clamp(1, self.window.max_bytes);
            let record_permit = match first.take() {
                Some(p) => p,
                None => {
                    let room = Arc::clone(&self.window.records).acquire_owned();
                    self.stop.run_until_cancelled(room).await?.ok()?
                }
            };
            let bytes = u32::try_from(size).unwrap_or(u32::MAX);
            let room = Arc::clone(&self.window.bytes).acquire_many_owned(bytes);
            let byte_permit = self.stop.run_until_cancelled(room).await?.ok()?;
            let work = match work {
                Work::Unreadable(u) => Work::Unreadable(Unreadable { first: start, ..u }),
                w => w,
            };
            if let Some(t) = lock(tracker).as_mut() {
                t.started(work.offset());
                t.skipped_to(end + 1);
            }
            next = end + 1;
            on_work(
                work,
                Held {
                    _record: record_permit,
                    _bytes: byte_permit,
                },
            );
        }
        if let Some(known) = known_next
            && known > next
        {
            next = known;
            if let Some(t) = lock(tracker).as_mut() {
                t.skipped_to(known);
            }
        }
        Some(next)
    }
}

fn fetch_backoff() -> Backoff {
    Backoff::new(BackoffConfig {
        max: Duration::from_secs(5),
        ..BackoffConfig::default()
    })
}

async fn pause(stop: &CancellationToken, delay: Duration) {
    stop.run_until_cancelled(tokio::time::sleep(delay)).await;
}

/// The real source: rskafka's partition client (the shared client's cached one for this
/// reader, [`Purpose::Fetch`], looked up again after an error that may mean it is stale), and
/// the fallback reader for what rskafka cannot decode (lz4 and zstd batches, corrupt
/// batches, null header values).
#[derive(Debug)]
pub struct KafkaSource {
    client: Arc<KafkaClient>,
    fallback: Arc<FallbackFetcher>,
    topic: String,
    partition: i32,
    /// This reader's partition client in the shared cache; released when the source is dropped
    /// (the partition was revoked or the entry stopped), which closes its connection.
    key: PartitionKey,
    /// Bound of one fetch: the broker-side wait plus a request timeout.
    fetch_bound: Duration,
    /// Fetches left that go straight to the fallback: where one batch needed it, the
    /// next ones likely do too (another producer's codec), and asking rskafka first
    /// would double every fetch.
    fallback_for: u32,
}

/// Fetches that go straight to the fallback after rskafka failed to decode a batch.
const FALLBACK_STREAK: u32 = 16;

impl KafkaSource {
    /// A source for `topic`/`partition` read by consumer group `reader`; `max_wait` is the
    /// longest broker-side wait.
    pub fn new(
        client: Arc<KafkaClient>,
        fallback: Arc<FallbackFetcher>,
        reader: &str,
        topic: String,
        partition: i32,
        max_wait: Duration,
    ) -> Self {
        let fetch_bound = max_wait + client.timeout();
        let key = PartitionKey::new(topic.as_str(), partition, Purpose::Fetch(reader.into()));
        Self {
            client,
            fallback,
            topic,
            partition,
            key,
            fetch_bound,
            fallback_for: 0,
        }
    }

    async fn fetch_fallback(
        &mut self,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<Fetched, FetchError> {
        let max_wait = Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0));
        // Each round trip inside is bounded; this bounds the whole (lookup, leader, fetch).
        let fetched = bounded(
            "fallback fetch",
            self.fetch_bound + self.client.timeout() * 2,
            self.fallback
                .fetch(&self.topic, self.partition, offset, max_bytes, max_wait),
        )
        .await?;
        let fetched = match fetched {
            Ok(f) => f,
            Err(FallbackError::Partition {
                error: ResponseError::OffsetOutOfRange,
                ..
            }) => return Err(FetchError::OutOfRange),
            Err(e) => return Err(e.into()),
        };
        // A forged lastOffsetDelta must not step over offsets that do not exist yet.
        let last_known = fetched.high_watermark.saturating_sub(1);
        let mut out = Fetched {
            high_watermark: fetched.high_watermark,
            next_offset: Some(fetched.next_offset.min(fetched.high_watermark.max(offset))),
            ..Fetched::default()
        };
        for item in fetched.items {
            match item {
                FetchedItem::Record(r) => out.records.push(r),
                FetchedItem::Skipped { .. } => {}
                FetchedItem::Undecodable {
                    first_offset,
                    last_offset,
                    reason,
                } => out.unreadable.push(Unreadable {
                    first: first_offset,
                    last: last_offset.min(last_known).max(first_offset),
                    reason: reason.to_string(),
                }),
            }
        }
        Ok(out)
    }

    /// A failed request on `pc`: out-of-range is the caller's to handle; anything else may
    /// leave the cached client stale ([`KafkaClient::partition_failed`] decides).
    fn failed(&self, pc: &Arc<PartitionClient>, e: client::Error) -> FetchError {
        if let client::Error::Kafka(rs) = &e
            && fault(rs) == Fault::OutOfRange
        {
            return FetchError::OutOfRange;
        }
        self.client.partition_failed(&self.key, pc, &e);
        FetchError::Kafka(e)
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.client.release_partition(&self.key);
    }
}

impl FetchSource for KafkaSource {
    async fn fetch(&mut self, offset: i64, max_bytes: i32, max_wait_ms: i32) -> Result<Fetched, FetchError> {
        if self.fallback_for > 0 {
            self.fallback_for -= 1;
            return self.fetch_fallback(offset, max_bytes, max_wait_ms).await;
        }
        let pc = self.client.partition(&self.key).await?;
        let fetched = bounded(
            "fetch",
            self.fetch_bound,
            pc.fetch_records(offset, 1..max_bytes, max_wait_ms),
        )
        .await;
        match fetched {
            Ok(Ok((records, high_watermark))) => Ok(Fetched {
                records,
                high_watermark,
                ..Fetched::default()
            }),
            Ok(Err(e)) if is_decode_error(&e) => {
                self.fallback_for = FALLBACK_STREAK;
                self.fetch_fallback(offset, max_bytes, max_wait_ms).await
            }
            Ok(Err(e)) => Err(self.failed(&pc, e.into())),
            Err(e) => Err(self.failed(&pc, e)),
        }
    }

    async fn reset_offset(&mut self, reset: OffsetReset) -> Result<i64, FetchError> {
        let pc = self.client.partition(&self.key).await?;
        let at = match reset {
            OffsetReset::Earliest => OffsetAt::Earliest,
            OffsetReset::Latest => OffsetAt::Latest,
        };
        match bounded("offset lookup", self.client.timeout(), pc.get_offset(at)).await {
            Ok(Ok(offset)) => Ok(offset),
            Ok(Err(e)) => Err(self.failed(&pc, e.into())),
            Err(e) => Err(self.failed(&pc, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use rskafka::record::Record;

    use super::*;

    /// A scripted source: each fetch pops the next answer; an empty script waits.
    struct Script {
        answers: VecDeque<Result<Fetched, FetchError>>,
        fetched_at: Arc<Mutex<Vec<i64>>>,
        reset_to: i64,
        /// The `max_bytes` of each fetch.
        asked: Arc<Mutex<Vec<i32>>>,
    }

    impl FetchSource for Script {
        async fn fetch(&mut self, offset: i64, max: i32, _wait: i32) -> Result<Fetched, FetchError> {
            self.fetched_at.lock().unwrap().push(offset);
            self.asked.lock().unwrap().push(max);
            match self.answers.pop_front() {
                Some(a) => a,
                None => std::future::pending().await,
            }
        }

        async fn reset_offset(&mut self, _reset: OffsetReset) -> Result<i64, FetchError> {
            Ok(self.reset_to)
        }
    }

    fn record(offset: i64) -> RecordAndOffset {
        RecordAndOffset {
            record: Record {
                key: None,
                value: Some(vec![b'x'; 10]),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            },
            offset,
        }
    }

    fn ok(offsets: &[i64], unreadable: Vec<Unreadable>) -> Result<Fetched, FetchError> {
        Ok(Fetched {
            records: offsets.iter().map(|&o| record(o)).collect(),
            high_watermark: 100,
            unreadable,
            next_offset: None,
        })
    }

    fn fetch_loop(records: usize) -> FetchLoop {
        FetchLoop {
            window: Window::new(records, 1 << 20),
            reset: OffsetReset::Earliest,
            max_wait: Duration::from_millis(10),
            stop: CancellationToken::new(),
            gate: Gate::open(),
            log: slog::Logger::root(slog::Discard, slog::o!()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_gate_stops_fetching_and_drops_a_fetch_in_progress() {
        use super::super::gate::GateState;
        let (gate, rx) = tokio::sync::watch::channel(GateState::Paused);
        let fetched_at = Arc::new(Mutex::new(vec![]));
        let mut source = Script {
            answers: vec![ok(&[3, 4], vec![]), ok(&[5], vec![])].into(),
            fetched_at: Arc::clone(&fetched_at),
            reset_to: 0,
            asked: Arc::default(),
        };
        let mut lp = fetch_loop(100);
        lp.gate = Gate::new(rx);
        let tracker: SharedTracker = std::sync::Mutex::new(None);
        let work = Mutex::new(vec![]);
        let run = lp.run(
            &mut source,
            StartAt::Committed(3),
            &tracker,
            |w, _| work.lock().unwrap().push(w.offset()),
            |_| {},
        );
        tokio::pin!(run);
        let settle = Duration::from_secs(5);
        assert!(tokio::time::timeout(settle, &mut run).await.is_err());
        assert!(fetched_at.lock().unwrap().is_empty(), "no fetch while paused");
        gate.send_replace(GateState::Open);
        assert!(tokio::time::timeout(settle, &mut run).await.is_err());
        assert_eq!(*work.lock().unwrap(), [3, 4, 5]);
        // The fetch at 6 is waiting for records (the script has no more): a pause drops it
        // and the loop waits; on resume it fetches 6 again.
        assert_eq!(*fetched_at.lock().unwrap(), [3, 5, 6]);
        gate.send_replace(GateState::Paused);
        assert!(tokio::time::timeout(settle, &mut run).await.is_err());
        assert_eq!(*fetched_at.lock().unwrap(), [3, 5, 6]);
        gate.send_replace(GateState::Open);
        assert!(tokio::time::timeout(settle, &mut run).await.is_err());
        assert_eq!(*fetched_at.lock().unwrap(), [3, 5, 6, 6]);
        assert_eq!(*work.lock().unwrap(), [3, 4, 5], "nothing twice, nothing skipped");
    }

    /// Runs the loop over `answers` from `start` until it blocks; returns the work
    /// handed on (offset, unreadable?) and the offsets fetched at. The work's permits
    /// are kept (as running calls would) unless `release`.
    async fn drive(
        answers: Vec<Result<Fetched, FetchError>>,
        start: StartAt,
        records: usize,
        release: bool,
    ) -> (Vec<(i64, bool)>, Vec<i64>, Option<OffsetTracker>) {
        let fetched_at = Arc::new(Mutex::new(vec![]));
        let mut source = Script {
            answers: answers.into(),
            fetched_at: Arc::clone(&fetched_at),
            reset_to: 7,
            asked: Arc::default(),
        };
        let lp = fetch_loop(records);
        let tracker: SharedTracker = std::sync::Mutex::new(None);
        let mut work = vec![];
        let mut kept = vec![];
        let run = lp.run(
            &mut source,
            start,
            &tracker,
            |w, held| {
                work.push((w.offset(), matches!(w, Work::Unreadable(_))));
                if !release {
                    kept.push(held);
                }
            },
            |_| {},
        );
        // Paused time: the loop runs until every task waits, then the timeout fires.
        // The loop never ends by itself: it stops when it waits with nothing to do.
        assert!(tokio::time::timeout(Duration::from_secs(60), run).await.is_err());
        let at = fetched_at.lock().unwrap().clone();
        let t = lock(&tracker).clone();
        (work, at, t)
    }

    #[tokio::test(start_paused = true)]
    async fn records_are_handed_on_in_order_from_the_start() {
        let (work, at, _) = drive(
            vec![ok(&[3, 4, 5], vec![]), ok(&[6], vec![])],
            StartAt::Committed(3),
            100,
            true,
        )
        .await;
        assert_eq!(work, vec![(3, false), (4, false), (5, false), (6, false)]);
        assert_eq!(at, vec![3, 6, 7]);
    }

    #[tokio::test(start_paused = true)]
    async fn records_before_the_position_are_skipped() {
        // A compressed batch starts before the requested offset.
        let (work, _, _) = drive(vec![ok(&[1, 2, 3, 4], vec![])], StartAt::Committed(3), 100, true).await;
        assert_eq!(work, vec![(3, false), (4, false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_window_stops_fetching() {
        let (work, at, tracker) = drive(
            vec![ok(&[0, 1, 2, 3], vec![]), ok(&[4], vec![])],
            StartAt::Committed(0),
            2,
            false,
        )
        .await;
        assert_eq!(work, vec![(0, false), (1, false)], "two permits, two records");
        assert_eq!(at, vec![0], "no second fetch while the window is full");
        assert_eq!(tracker.map(|t| t.in_flight()), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_batch_is_stepped_over() {
        let bad = Unreadable {
            first: 10,
            last: 14,
            reason: "zstd".into(),
        };
        let (work, at, tracker) =
            drive(vec![ok(&[15, 16], vec![bad])], StartAt::Committed(10), 100, true).await;
        assert_eq!(work, vec![(10, true), (15, false), (16, false)]);
        assert_eq!(at, vec![10, 17], "the next fetch is past the batch");
        assert_eq!(tracker.map(|t| t.next()), Some(17));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_batch_starting_before_the_position_is_cut() {
        let bad = Unreadable {
            first: 8,
            last: 12,
            reason: "corrupt".into(),
        };
        let (work, at, _) = drive(vec![ok(&[], vec![bad])], StartAt::Committed(10), 100, true).await;
        assert_eq!(work, vec![(10, true)]);
        assert_eq!(at, vec![10, 13]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_next_offset_steps_over_trailing_ranges_without_calls() {
        let mut fetched = ok(&[3], vec![]);
        if let Ok(f) = fetched.as_mut() {
            f.next_offset = Some(9);
        }
        let (work, at, tracker) = drive(vec![fetched], StartAt::Committed(3), 100, true).await;
        assert_eq!(work, vec![(3, false)]);
        assert_eq!(at, vec![3, 9]);
        assert_eq!(tracker.map(|t| t.next()), Some(9));
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_range_applies_the_reset_policy() {
        let (work, at, _) = drive(
            vec![Err(FetchError::OutOfRange), ok(&[7], vec![])],
            StartAt::Committed(3),
            100,
            true,
        )
        .await;
        assert_eq!(work, vec![(7, false)]);
        assert_eq!(at, vec![3, 7, 8]);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_back_off_and_retry_the_same_offset() {
        let timeout = || {
            Err(FetchError::Kafka(client::Error::Timeout {
                what: "fetch",
                after: Duration::from_secs(1),
            }))
        };
        let (work, at, _) = drive(
            vec![timeout(), timeout(), ok(&[5], vec![])],
            StartAt::Committed(5),
            100,
            true,
        )
        .await;
        assert_eq!(work, vec![(5, false)]);
        assert_eq!(at, vec![5, 5, 5, 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_committed_offset_starts_at_the_reset_offset() {
        let (work, at, _) = drive(
            vec![ok(&[7, 8], vec![])],
            StartAt::Reset(OffsetReset::Earliest),
            100,
            true,
        )
        .await;
        assert_eq!(work, vec![(7, false), (8, false)]);
        assert_eq!(at, vec![7, 9]);
    }

    /// `count` records from `first`, in a partition that has more after them.
    fn cut(first: i64, count: i64) -> Result<Fetched, FetchError> {
        ok(&(first..first + count).collect::<Vec<_>>(), vec![])
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_asks_for_the_records_the_window_has_room_for_not_its_bytes() {
        let asked = Arc::new(Mutex::new(vec![]));
        let mut source = Script {
            answers: vec![cut(0, 4), cut(4, 10), cut(14, 10)].into(),
            fetched_at: Arc::default(),
            reset_to: 0,
            asked: Arc::clone(&asked),
        };
        // 10 records and 1 MiB: records are what fills this window.
        let lp = fetch_loop(10);
        let tracker: SharedTracker = std::sync::Mutex::new(None);
        let mut kept = vec![];
        let run = lp.run(
            &mut source,
            StartAt::Committed(0),
            &tracker,
            |_, held| kept.push(held),
            |_| {},
        );
        assert!(tokio::time::timeout(Duration::from_secs(60), run).await.is_err());
        let asked = asked.lock().unwrap().clone();
        let first_guess = i32::try_from(10 * FIRST_GUESS_PER_RECORD).unwrap();
        assert_eq!(
            asked[0], first_guess,
            "10 records of room at the first guess, not 1 MiB"
        );
        // Four records for 2560 bytes asked: 640 a record. Six records of room are left.
        let learnt = (FIRST_GUESS_PER_RECORD * 3 + 640) / 4;
        assert_eq!(asked[1], i32::try_from(6 * learnt).unwrap());
        // The second answer brought more than the room left: the rest waited for permits,
        // which the work kept, so no third fetch.
        assert_eq!(asked.len(), 2, "no fetch while the window is full");
        assert_eq!(kept.len(), 10);
    }

    #[test]
    fn the_fetch_size_is_bounded_by_the_free_bytes_and_learns_only_from_cut_fetches() {
        let window = Window::new(1000, 4096);
        assert_eq!(window.room(1, 256), 4096, "bytes are the smaller room");
        let _taken = Arc::clone(&window.bytes).try_acquire_many_owned(4000).unwrap();
        assert_eq!(window.room(1, 256), 96);
        let mut sizer = FetchSizer::default();
        let mut end = ok(&[0, 1], vec![]).unwrap();
        end.high_watermark = 2;
        sizer.observe(10_000, &end);
        assert_eq!(
            sizer.per_record(),
            FIRST_GUESS_PER_RECORD,
            "the end of the partition teaches nothing"
        );
        sizer.observe(10_000, &cut(0, 2).unwrap());
        assert_eq!(sizer.per_record(), (FIRST_GUESS_PER_RECORD * 3 + 5000) / 4);
    }
}
