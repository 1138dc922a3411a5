//! The one task per process that reads the control topic into its [`Control`].
//!
//! It reads partition 0 from the earliest offset with rskafka, applies each record in offset
//! order, and marks the first catch-up (the high watermark of its first answer) so consumer
//! entries know every pause and seek written before this process started. Errors back off
//! (bounded) and are logged when they start and when their text changes, not per retry.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::OffsetAt;
use slog::{Logger, info, warn};
use tokio_util::sync::CancellationToken;

use super::Control;
use super::state::{self, Applied};
use crate::backoff::{Backoff, BackoffConfig};
use crate::kafka::client::{self, KafkaClient, bounded};
use crate::kafka::fault::{Fault, fault};
use crate::kafka::partitions::{PartitionKey, Purpose};

/// Largest answer asked for per fetch (Kafka still returns one bigger batch whole).
const FETCH_BYTES: i32 = 1 << 20;
/// How long a fetch waits at the end of the log for new records.
const FETCH_WAIT_MS: i32 = 500;
/// Empty answers in a row at one offset below the high watermark before the reader jumps to
/// it: only batches compaction emptied can be there (Kafka returns at least one batch when
/// records exist), and waiting on them would keep entries from ever starting.
const EMPTY_ANSWERS_BEFORE_SKIP: u32 = 3;

/// How often the reader looks whether the shared client has connected yet.
const CONNECT_POLL: Duration = Duration::from_millis(250);

/// The reader backoff: 200 ms doubling to 5 s, jittered.
fn backoff() -> Backoff {
    Backoff::new(BackoffConfig {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(5),
        factor: 2.0,
    })
}

/// Reads the control topic into `control` until stopped.
#[derive(Debug)]
pub struct ControlReader {
    /// What it fills.
    pub control: Arc<Control>,
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

impl ControlReader {
    /// Runs until `stop` is cancelled, connecting the client itself when needed (a reader on
    /// its own client: tools, tests).
    pub async fn run(self, stop: CancellationToken) {
        self.read(stop).await;
    }

    /// Like [`ControlReader::run`], but starts only once another task has connected the
    /// shared client. In bigpipe the topic upkeep connects (and backs off on refused
    /// credentials, and says why in /readyz); the reader rides on that connection rather than
    /// adding its own attempts while Kafka refuses or cannot be reached.
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
            self.control.topic().to_owned(),
            0,
            Purpose::Fetch("bigpipe-control-reader".into()),
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
                        info!(self.log, "control topic readable again"; "topic" => self.control.topic());
                        self.control.set_error(None);
                    }
                    retry = backoff();
                }
                Err(e) => {
                    let text = crate::kafka::wire::error_chain(&e);
                    if last_error.as_deref() != Some(text.as_str()) {
                        warn!(self.log, "control topic read failed"; "topic" => self.control.topic(),
                            "error" => &text);
                        last_error = Some(text.clone());
                    }
                    self.control.set_error(Some(text));
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
        let pc = self.client.partition(key).await?;
        let timeout = self.client.timeout();
        if !position.started {
            let earliest = bounded(
                "control offset lookup",
                timeout,
                pc.get_offset(OffsetAt::Earliest),
            )
            .await
            .and_then(|r| r.map_err(client::Error::from));
            let earliest = self.failed(key, &pc, earliest)?;
            self.control.update(|s| {
                s.restart_at(earliest);
                ((), false)
            });
            position.started = true;
        }
        let next = self.control.status().next_offset;
        let wait = Duration::from_millis(u64::from(FETCH_WAIT_MS.unsigned_abs()));
        let fetched = bounded(
            "control fetch",
            timeout + wait,
            pc.fetch_records(next, 1..FETCH_BYTES, FETCH_WAIT_MS),
        )
        .await
        .and_then(|r| r.map_err(client::Error::from));
        let (records, high_watermark) = match fetched {
            Err(client::Error::Kafka(e)) if fault(&e) == Fault::OutOfRange => {
                // Truncated under us (or recreated): start again from the earliest offset.
                warn!(self.log, "control topic offset out of range, reading from the start";
                    "offset" => next);
                position.started = false;
                return Ok(());
            }
            other => self.failed(key, &pc, other)?,
        };
        let empty = records.is_empty();
        let skipped = self.control.update(|s| {
            let mut skipped = Vec::new();
            let mut changed = false;
            for r in &records {
                let applied = s.apply(r.offset, r.record.key.as_deref(), r.record.value.as_deref());
                changed |= state::changed(&applied);
                if let Applied::Skipped(why) = applied {
                    skipped.push((r.offset, why));
                }
            }
            (skipped, changed)
        });
        for (offset, why) in skipped {
            warn!(self.log, "control record skipped"; "offset" => offset, "reason" => %why);
        }
        let next = self.control.status().next_offset;
        if empty && next < high_watermark {
            position.empty_answers += 1;
            if position.empty_answers >= EMPTY_ANSWERS_BEFORE_SKIP {
                warn!(self.log, "control topic: no records below the high watermark, skipping ahead";
                    "from" => next, "to" => high_watermark);
                self.control.update(|s| {
                    s.skip_to(high_watermark);
                    ((), false)
                });
                position.empty_answers = 0;
            }
        } else {
            position.empty_answers = 0;
        }
        let target = *position.first_high_watermark.get_or_insert(high_watermark);
        if !self.control.caught_up() && self.control.status().next_offset >= target {
            info!(self.log, "control topic caught up"; "topic" => self.control.topic(),
                "offset" => target, "keys" => self.control.status().keys);
            self.control.mark_caught_up();
        }
        Ok(())
    }

    /// Passes `result` on; on error, drops the cached partition client when it may be stale.
    fn failed<T>(
        &self,
        key: &PartitionKey,
        pc: &Arc<rskafka::client::partition::PartitionClient>,
        result: Result<T, client::Error>,
    ) -> Result<T, client::Error> {
        if let Err(e) = &result {
            self.client.partition_failed(key, pc, e);
        }
        result
    }
}
