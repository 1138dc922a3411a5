//! Idempotency keys: a repeated submit answers with the first call's id and writes no call.
//!
//! A caller that retries its own request (a timeout, a lost answer) sends the same
//! `Idempotency-Key` header or `idempotency_key` field. Keys are scoped per ACL and hold for
//! `http.server.idempotency.window.ms`, across every bigpipe process sharing the work:
//!
//! - Claims live in their own topic (`http.server.idempotency.topic`), keyed by
//!   `<acl>\0<key>`; the key decides the partition (the Go partition hash). Every process
//!   reads every partition from the earliest offset into a [`store::Store`], so a restarted
//!   or new process knows every key of the window before it answers for one. Records older
//!   than the window are deleted by retention; memory is bounded by `max.keys`.
//! - A submit whose key is free writes a `claimed` record, waits until its own reader has
//!   read past it, and goes on only if its claim is the one that took the key (the first
//!   read): two processes racing on one key agree on the winner, because both read the same
//!   log. The loser answers like a repeat.
//! - Once the call reached Kafka, the claimer writes `done`; if it could not be written,
//!   `released`, and the key is free again. A claim with neither holds for the pending bound
//!   (the producer's `message.timeout.ms` plus a minute: the longest the call can take to
//!   reach Kafka); past it, the claimer is taken to have died before writing the call, and
//!   the key is free. So a crash never binds a key to a call that was never written (no
//!   loss); a crash after the call was written but before `done` lets a retry after the
//!   pending bound write it again (a duplicate, the at-least-once side).
//! - A repeat of a `done` key answers with the first id and the `Idempotent-Replayed: true`
//!   header. A repeat while the first is still pending answers 409 `请求处理中` with
//!   `Retry-After`: the caller cannot be told an id that may yet fail.

pub mod store;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use rskafka::record::{Record, RecordAndOffset};
use slog::{Logger, info, warn};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::kafka::client::KafkaClient;
use crate::kafka::follow::{Followed, Follower};
use crate::kafka::metadata::PartitionTable;
use crate::kafka::records::{RecordWriter, WriteError};
use crate::producer::partitioner::go_hash;
use crate::stats::{Stats, inc};
use store::{ClaimRecord, Holder, Store};

/// Added to `kafka.producer.message.timeout.ms` for the pending bound: the claim write, the
/// settle write and clock differences between processes.
const PENDING_MARGIN: Duration = Duration::from_secs(60);
/// Added to the window and the pending bound for the claims topic's retention.
const RETENTION_MARGIN: Duration = Duration::from_secs(3600);
/// How often the start-up task looks for the claims topic's partition count.
const START_POLL: Duration = Duration::from_millis(250);
/// Longest key accepted, in bytes (the payment APIs' bound).
pub const MAX_KEY_BYTES: usize = 255;

/// How long an unsettled claim holds its key.
pub fn pending(settings: &Settings) -> Duration {
    settings.producer.message_timeout + PENDING_MARGIN
}

/// How long the claims topic keeps records: nothing older is ever needed.
pub fn retention(settings: &Settings) -> Duration {
    settings.http.idempotency.window.max(pending(settings)) + RETENTION_MARGIN
}

/// True when `key` is a usable idempotency key: 1 to [`MAX_KEY_BYTES`] bytes, no control
/// characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && !key.chars().any(char::is_control)
}

/// Why a key could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The claims are not read up to date yet (start-up, or the topic cannot be read).
    #[error("idempotency claims not read up to date")]
    NotReady,
    /// Kafka did not take the claim.
    #[error("claim write failed: {0}")]
    Write(#[from] WriteError),
    /// The claim was written but not read back in time: which claim won is unknown. The
    /// claim may hold the key for the pending bound.
    #[error("claim not read back in time")]
    NotSeen,
}

/// What a submit with a key does.
#[derive(Debug)]
pub enum Decision {
    /// The key is ours: write the call with the claim's id, then [`Idempotency::settle`].
    New(Claim),
    /// The key's call reached Kafka: answer with its id, write nothing.
    Replay(String),
    /// The key's call is still on its way: answer 409, write nothing.
    InProgress,
}

/// A won claim, to settle once the call's fate is known.
#[derive(Debug)]
pub struct Claim {
    key: Vec<u8>,
    id: uuid::Uuid,
    partition: i32,
}

impl Claim {
    /// The call id the key answers with.
    pub fn id(&self) -> String {
        self.id.to_string()
    }
}

/// One partition's reader position.
#[derive(Debug, Clone, Default)]
struct Partition {
    next_offset: i64,
    caught_up: bool,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    partitions: Vec<Partition>,
}

/// The claims as this process sees them, and the way to make one. One per process.
#[derive(Debug)]
pub struct Idempotency {
    topic: String,
    inner: RwLock<Inner>,
    /// Bumped whenever a reader moves, so claimers waiting to read back wake.
    moved: watch::Sender<u64>,
    /// Set once the topic's partition count is known (the readers run from then on).
    partitions: OnceLock<i32>,
    writer: RecordWriter,
    /// Bound of each settle write.
    write_timeout: Duration,
    /// Where the counters and gauges go.
    stats: Arc<Stats>,
}

impl Idempotency {
    /// The handle for `settings`' claims topic, or `None` when idempotency keys are off. Its
    /// start-up task (on `tracker`) waits for the topic's partition count in `table`, then
    /// runs one reader per partition until `stop`.
    pub fn start(
        settings: &Settings,
        client: &Arc<KafkaClient>,
        table: &Arc<PartitionTable>,
        stats: &Arc<Stats>,
        tracker: &TaskTracker,
        stop: &CancellationToken,
        log: &Logger,
    ) -> Option<Arc<Self>> {
        let s = &settings.http.idempotency;
        let topic = s.topic.clone()?;
        let to_ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let this = Arc::new(Self {
            writer: RecordWriter::new(topic.clone(), Arc::clone(client)),
            topic,
            inner: RwLock::new(Inner {
                store: Store::new(to_ms(s.window), to_ms(pending(settings)), s.max_keys),
                partitions: Vec::new(),
            }),
            moved: watch::Sender::new(0),
            partitions: OnceLock::new(),
            write_timeout: settings.kafka.request_timeout,
            stats: Arc::clone(stats),
        });
        let starter = StartReaders {
            idempotency: Arc::clone(&this),
            client: Arc::clone(client),
            table: Arc::clone(table),
            tracker: tracker.clone(),
            log: log.new(slog::o!("component" => "idempotency")),
        };
        tracker.spawn(starter.run(stop.clone()));
        Some(this)
    }

    /// True once every partition of the claims was read up to date.
    fn caught_up(&self) -> bool {
        self.partitions.get().is_some() && self.inner().partitions.iter().all(|p| p.caught_up)
    }

    /// Decides a submit of call `id` with `key` in `scope` (the ACL name), by `deadline`.
    /// With `wait_pending`, a key whose first call is still on its way to Kafka is waited on
    /// (until `deadline`) and answers with that call's id once it is there; without, it
    /// answers [`Decision::InProgress`] at once (a batch, whose items are queued only once
    /// all are decided, cannot wait on one of its own).
    ///
    /// # Errors
    /// [`IdempotencyError`]: the claims are not read up to date by `deadline`, Kafka refused
    /// the claim, or it was not read back by `deadline`. The caller answers 503 and writes no
    /// call: the caller's retry decides again.
    pub async fn claim(
        &self,
        scope: &str,
        key: &str,
        id: uuid::Uuid,
        deadline: Instant,
        wait_pending: bool,
    ) -> Result<Decision, IdempotencyError> {
        let scoped = scoped_key(scope, key);
        let patience = if wait_pending { deadline } else { Instant::now() };
        let mut moved = self.moved.subscribe();
        let ready = tokio::time::timeout_at(deadline, moved.wait_for(|_| self.caught_up()))
            .await
            .is_ok_and(|r| r.is_ok());
        if !ready {
            return Err(IdempotencyError::NotReady);
        }
        if let Some(decision) = self.settled(&mut moved, &scoped, patience).await {
            return Ok(decision);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let count = self.partitions.get().copied().unwrap_or(1);
        // The scoped key as text (it is one: a name, a NUL and a key, all UTF-8).
        let partition = go_hash(&String::from_utf8_lossy(&scoped), count);
        let record = record(&scoped, &ClaimRecord::Claimed { id, at: now });
        let left = deadline.saturating_duration_since(Instant::now());
        let offset = self.writer.write(partition, record, left).await?;
        let seen =
            tokio::time::timeout_at(deadline, moved.wait_for(|_| self.next_offset(partition) > offset))
                .await
                .is_ok_and(|r| r.is_ok());
        if !seen {
            return Err(IdempotencyError::NotSeen);
        }
        let won = self.inner().store.claimant(&scoped) == Some(id);
        if won {
            inc(&self.stats.server.idempotent_claims);
            return Ok(Decision::New(Claim {
                key: scoped,
                id,
                partition,
            }));
        }
        // Another claim won the race. If it was already released, the caller's retry claims
        // again.
        Ok(self
            .settled(&mut moved, &scoped, patience)
            .await
            .unwrap_or(Decision::InProgress))
    }

    /// What a held key answers, once its call is settled: a pending claim is waited on (its
    /// call is normally in Kafka within moments), until `deadline`. `None`: the key is free.
    async fn settled(
        &self,
        moved: &mut watch::Receiver<u64>,
        key: &[u8],
        deadline: Instant,
    ) -> Option<Decision> {
        let holder = |store: &Store| store.holder(key, chrono::Utc::now().timestamp_millis());
        // Each turn waits for the holder to change, and a pending claim changes once at most
        // (to done, released or expired): two turns, bounded by `deadline` anyway.
        loop {
            let pending = match holder(&self.inner().store) {
                None => return None,
                Some(Holder::Done(id)) => return Some(Decision::Replay(id.to_string())),
                Some(held @ Holder::Pending(_)) => held,
            };
            let changed = tokio::time::timeout_at(
                deadline,
                moved.wait_for(|_| holder(&self.inner().store) != Some(pending)),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            if !changed {
                return Some(Decision::InProgress);
            }
        }
    }

    /// Records the fate of a won claim's call: `written` (Kafka has it) makes the key answer
    /// with its id for the window; otherwise the key is freed. A failed write is logged and
    /// counted: the claim then holds its key for the pending bound.
    pub async fn settle(&self, claim: &Claim, written: bool, log: &Logger) {
        let value = if written {
            ClaimRecord::Done { id: claim.id }
        } else {
            ClaimRecord::Released { id: claim.id }
        };
        let record = record(&claim.key, &value);
        if let Err(e) = self
            .writer
            .write(claim.partition, record, self.write_timeout)
            .await
        {
            inc(&self.stats.server.idempotency_settle_failed);
            warn!(log, "idempotency claim not settled; the key holds for the pending bound";
                "call_id" => %claim.id, "written" => written, "error" => %e);
        }
    }

    fn inner(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn update<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let out = f(&mut self.inner.write().unwrap_or_else(PoisonError::into_inner));
        self.moved.send_modify(|v| *v = v.wrapping_add(1));
        out
    }

    fn with_partition(&self, partition: i32, f: impl FnOnce(&mut Partition)) {
        self.update(|inner| {
            if let Some(p) = usize::try_from(partition)
                .ok()
                .and_then(|i| inner.partitions.get_mut(i))
            {
                f(p);
            }
        });
    }
}

/// `<scope>\0<key>`: a NUL never occurs in an ACL name or a key (control characters are refused).
fn scoped_key(scope: &str, key: &str) -> Vec<u8> {
    let mut scoped = Vec::with_capacity(scope.len() + 1 + key.len());
    scoped.extend_from_slice(scope.as_bytes());
    scoped.push(0);
    scoped.extend_from_slice(key.as_bytes());
    scoped
}

fn record(key: &[u8], value: &ClaimRecord) -> Record {
    Record {
        key: Some(key.to_vec()),
        value: Some(value.encode()),
        headers: std::collections::BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    }
}

impl Followed for Idempotency {
    fn next_offset(&self, partition: i32) -> i64 {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.inner().partitions.get(i).map(|p| p.next_offset))
            .unwrap_or_default()
    }

    fn restart_at(&self, partition: i32, offset: i64) {
        // Records read again apply again to the same effect: a claim never takes a key from
        // itself, and done/released only match their own claim.
        self.with_partition(partition, |p| p.next_offset = offset);
    }

    fn skip_to(&self, partition: i32, offset: i64) {
        self.with_partition(partition, |p| p.next_offset = p.next_offset.max(offset));
    }

    fn apply(&self, partition: i32, records: &[RecordAndOffset]) -> Vec<(i64, String)> {
        let now = chrono::Utc::now().timestamp_millis();
        self.update(|inner| {
            let mut skipped = Vec::new();
            let mut last = None;
            for r in records {
                if let Err(why) = inner
                    .store
                    .apply(r.record.key.as_deref(), r.record.value.as_deref())
                {
                    skipped.push((r.offset, why.to_string()));
                }
                last = Some(r.offset);
            }
            inner.store.prune(now);
            let server = &self.stats.server;
            server
                .idempotency_keys
                .store(inner.store.len() as u64, Ordering::Relaxed);
            server
                .idempotency_evicted
                .store(inner.store.evicted(), Ordering::Relaxed);
            if let (Some(last), Some(p)) = (
                last,
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| inner.partitions.get_mut(i)),
            ) {
                p.next_offset = last + 1;
            }
            skipped
        })
    }

    fn caught_up(&self, partition: i32) -> bool {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.inner().partitions.get(i).map(|p| p.caught_up))
            .unwrap_or_default()
    }

    fn mark_caught_up(&self, partition: i32) {
        self.with_partition(partition, |p| p.caught_up = true);
    }

    /// Nothing to keep: the follower logs each distinct error, and keyed calls answer 503
    /// while the claims cannot be read.
    fn set_error(&self, _partition: i32, _error: Option<String>) {}
}

/// The start-up task: waits for the claims topic's partition count, then runs the readers.
struct StartReaders {
    idempotency: Arc<Idempotency>,
    client: Arc<KafkaClient>,
    table: Arc<PartitionTable>,
    tracker: TaskTracker,
    log: Logger,
}

impl StartReaders {
    async fn run(self, stop: CancellationToken) {
        let topic = self.idempotency.topic.clone();
        // The topic upkeep creates the topic and records its count; an existing topic keeps
        // its own count, which is the one to hash over.
        let count = loop {
            if let Some(n) = self.table.count(&topic).filter(|n| *n > 0) {
                break n;
            }
            tokio::select! {
                () = tokio::time::sleep(START_POLL) => {}
                () = stop.cancelled() => return,
            }
        };
        let slots = usize::try_from(count).unwrap_or(1);
        self.idempotency
            .update(|inner| inner.partitions = vec![Partition::default(); slots]);
        // Set after the slots exist, so a claimer never hashes over partitions not read.
        self.idempotency.partitions.set(count).ok();
        info!(self.log, "reading idempotency claims"; "topic" => &topic, "partitions" => count);
        for partition in 0..count {
            let follower = Follower {
                state: Arc::clone(&self.idempotency),
                topic: topic.clone(),
                partition,
                reader: "bigpipe-idempotency-reader".to_owned(),
                client: Arc::clone(&self.client),
                log: self.log.clone(),
            };
            self.tracker
                .spawn(follower.run_on_shared_connection(stop.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_free_of_control_characters() {
        assert!(valid_key("order-42"));
        assert!(valid_key("é clé"));
        assert!(valid_key(&"k".repeat(MAX_KEY_BYTES)));
        assert!(!valid_key(""));
        assert!(!valid_key(&"k".repeat(MAX_KEY_BYTES + 1)));
        assert!(!valid_key("a\0b"));
        assert!(!valid_key("line\n"));
    }

    #[test]
    fn scoped_keys_keep_acls_apart() {
        assert_eq!(scoped_key("a", "b"), b"a\0b");
        assert_ne!(scoped_key("a", "bc"), scoped_key("ab", "c"));
    }
}
