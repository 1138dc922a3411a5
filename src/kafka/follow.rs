//! Follows one partition of a state topic from its earliest offset, forever.
//!
//! Two things in bigpipe are a log every process reads whole into memory: the control topic
//! (operator state) and the idempotency claims. Both need the same loop, kept here once: find
//! the earliest offset, fetch in order, hand each answer's records to the state, start again
//! from the earliest offset when the log was truncated under the reader, step over offsets
//! compaction emptied, and mark the first catch-up (the high watermark of the first answer) so
//! users know everything written before this process started. Errors back off (bounded) and
//! are logged when they start and when their text changes, not per retry.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::record::RecordAndOffset;
use slog::{Logger, info, warn};
use tokio_util::sync::CancellationToken;

use super::client::{self, KafkaClient, bounded};
use super::fault::{Fault, fault};
use super::partitions::{PartitionKey, Purpose};
use crate::backoff::{Backoff, BackoffConfig};

/// Largest answer asked for per fetch (Kafka still returns one bigger batch whole).
const FETCH_BYTES: i32 = 1 << 20;
/// How long a fetch waits at the end of the log for new records.
const FETCH_WAIT_MS: i32 = 500;
/// Empty answers in a row at one offset below the high watermark before the reader jumps to
/// it: only batches compaction emptied can be there (Kafka returns at least one batch when
/// records exist), and waiting on them would keep users from ever starting.
const EMPTY_ANSWERS_BEFORE_SKIP: u32 = 3;
/// How often a reader looks whether the shared client has connected yet.
const CONNECT_POLL: Duration = Duration::from_millis(250);

/// The backoff between failed reads: 200 ms doubling to 5 s, jittered.
fn backoff() -> Backoff {
    Backoff::new(BackoffConfig {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(5),
        factor: 2.0,
    })
}

/// The in-memory state a [`Follower`] reads one partition into.
pub trait Followed: Send + Sync {
    /// The offset after the last record applied from `partition`.
    fn next_offset(&self, partition: i32) -> i64;
    /// Forgets where `partition` was: the next record read is at `offset` or later (the
    /// earliest offset, at the start or after a truncation).
    fn restart_at(&self, partition: i32, offset: i64);
    /// Moves past offsets that hold no records (compaction emptied them).
    fn skip_to(&self, partition: i32, offset: i64);
    /// Applies `records` of `partition`, in offset order. Returns the records skipped as
    /// unreadable, each with why, for the log: one bad record never stops the reader.
    fn apply(&self, partition: i32, records: &[RecordAndOffset]) -> Vec<(i64, String)>;
    /// True once `partition` was first read up to date.
    fn caught_up(&self, partition: i32) -> bool;
    /// Marks the first catch-up of `partition`.
    fn mark_caught_up(&self, partition: i32);
    /// Records the last read error of `partition` (`None` after a successful read).
    fn set_error(&self, partition: i32, error: Option<String>);
}

/// Reads one partition of `topic` into `state` until stopped.
#[derive(Debug)]
pub struct Follower<S> {
    /// What it fills.
    pub state: Arc<S>,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The fetch purpose's name (one cached partition client per reader).
    pub reader: String,
    /// The shared client.
    pub client: Arc<KafkaClient>,
    /// Logger.
    pub log: Logger,
}

/// Where one reader is, between fetches.
#[derive(Debug, Default)]
struct Position {
    /// Set once the earliest offset is known.
    started: bool,
    /// The high watermark of the first answer: reaching it is the first catch-up.
    first_high_watermark: Option<i64>,
    /// Empty answers in a row below the high watermark.
    empty_answers: u32,
}

impl<S: Followed> Follower<S> {
    /// Runs until `stop` is cancelled, connecting the client itself when needed (a reader on
    /// its own client: tools, tests).
    pub async fn run(self, stop: CancellationToken) {
        self.read(stop).await;
    }

    /// Like [`Follower::run`], but starts only once another task has connected the shared
    /// client. In bigpipe the topic upkeep connects (and backs off on refused credentials,
    /// and says why in /readyz); readers ride on that connection rather than adding their
    /// own attempts while Kafka refuses or cannot be reached.
    pub async fn run_on_shared_connection(self, stop: CancellationToken) {
        while !self.client.is_connected() {
            tokio::select! {
                () = tokio::time::sleep(CONNECT_POLL) => {}
                () = stop.cancelled() => return,
            }
        }
        self.read(stop).await;
    }

    async fn read(self, stop: CancellationToken) {
        let key = PartitionKey::new(
            self.topic.clone(),
            self.partition,
            Purpose::Fetch(self.reader.clone().into()),
        );
        let mut position = Position::default();
        let mut retry = backoff();
        let mut last_error: Option<String> = None;
        loop {
            let step = tokio::select! {
                step = self.step(&key, &mut position) => step,
                () = stop.cancelled() => break,
            };
            match step {
                Ok(()) => {
                    if last_error.take().is_some() {
                        info!(self.log, "topic readable again"; "topic" => &self.topic,
                            "partition" => self.partition);
                        self.state.set_error(self.partition, None);
                    }
                    retry = backoff();
                }
                Err(e) => {
                    let text = super::wire::error_chain(&e);
                    if last_error.as_deref() != Some(text.as_str()) {
                        warn!(self.log, "topic read failed"; "topic" => &self.topic,
                            "partition" => self.partition, "error" => &text);
                        last_error = Some(text.clone());
                    }
                    self.state.set_error(self.partition, Some(text));
                    tokio::select! {
                        () = tokio::time::sleep(retry.next_delay()) => {}
                        () = stop.cancelled() => break,
                    }
                }
            }
        }
        self.client.release_partition(&key);
    }

    /// One fetch (after finding the earliest offset on the first call) and its records applied.
    async fn step(&self, key: &PartitionKey, position: &mut Position) -> Result<(), client::Error> {
        let p = self.partition;
        let pc = self.client.partition(key).await?;
        let timeout = self.client.timeout();
        if !position.started {
            let earliest = bounded("state offset lookup", timeout, pc.get_offset(OffsetAt::Earliest))
                .await
                .and_then(|r| r.map_err(client::Error::from));
            let earliest = self.failed(key, &pc, earliest)?;
            self.state.restart_at(p, earliest);
            position.started = true;
        }
        let next = self.state.next_offset(p);
        let wait = Duration::from_millis(u64::from(FETCH_WAIT_MS.unsigned_abs()));
        let fetched = bounded(
            "state fetch",
            timeout + wait,
            pc.fetch_records(next, 1..FETCH_BYTES, FETCH_WAIT_MS),
        )
        .await
        .and_then(|r| r.map_err(client::Error::from));
        let (records, high_watermark) = match fetched {
            Err(client::Error::Kafka(e)) if fault(&e) == Fault::OutOfRange => {
                // Truncated under us (retention, or recreated): start again from the earliest.
                warn!(self.log, "offset out of range, reading from the start";
                    "topic" => &self.topic, "partition" => p, "offset" => next);
                position.started = false;
                return Ok(());
            }
            other => self.failed(key, &pc, other)?,
        };
        let empty = records.is_empty();
        for (offset, why) in self.state.apply(p, &records) {
            warn!(self.log, "record skipped"; "topic" => &self.topic, "partition" => p,
                "offset" => offset, "reason" => why);
        }
        let next = self.state.next_offset(p);
        if empty && next < high_watermark {
            position.empty_answers += 1;
            if position.empty_answers >= EMPTY_ANSWERS_BEFORE_SKIP {
                warn!(self.log, "no records below the high watermark, skipping ahead";
                    "topic" => &self.topic, "partition" => p, "from" => next, "to" => high_watermark);
                self.state.skip_to(p, high_watermark);
                position.empty_answers = 0;
            }
        } else {
            position.empty_answers = 0;
        }
        let target = *position.first_high_watermark.get_or_insert(high_watermark);
        if !self.state.caught_up(p) && self.state.next_offset(p) >= target {
            info!(self.log, "topic caught up"; "topic" => &self.topic, "partition" => p,
                "offset" => target);
            self.state.mark_caught_up(p);
        }
        Ok(())
    }

    /// Passes `result` on; on error, drops the cached partition client when it may be stale.
    fn failed<T>(
        &self,
        key: &PartitionKey,
        pc: &Arc<PartitionClient>,
        result: Result<T, client::Error>,
    ) -> Result<T, client::Error> {
        if let Err(e) = &result {
            self.client.partition_failed(key, pc, e);
        }
        result
    }
}
