//! Our Kafka consumer-group member (classic protocol, protocol type `consumer`).
//!
//! rskafka has no consumer groups, so this module speaks the group APIs itself over
//! [`crate::kafka::wire`]: FindCoordinator, JoinGroup (with KIP-394's MEMBER_ID_REQUIRED round
//! trip), SyncGroup, Heartbeat, LeaveGroup, OffsetFetch and OffsetCommit. Our leader computes
//! the assignment (`sticky`, `range` or `roundrobin`), and the payloads use the standard
//! `ConsumerProtocolSubscription`/`Assignment` encodings, so Kafka's `kafka-consumer-groups`
//! tool shows our members, their partitions, committed offsets and lag.
//!
//! ```text
//!  GroupHandle ──commit/committed──┐
//!                                  ▼
//!  driver.rs  (one task) ── Input ──► state/  Member::handle(now, input) -> Vec<Action>
//!     │  executes Actions over one         (pure: no sockets, no clock, unit-tested)
//!     │  coordinator BrokerConnection
//!     └──GroupEvent (Assigned / Revoke / Lost)──► the consumer
//! ```
//!
//! - `state/` decides everything: when to (re)find the coordinator, join, sync,
//!   heartbeat, revoke, declare partitions lost, leave. `state/mod.rs` holds the member and
//!   its transitions; beside it the driver contract (`contract.rs`), the Kafka error table
//!   (`classify.rs`), the phases and which may follow which (`phase.rs`), the timers
//!   (`timers.rs`) and the leader's planning (`leader.rs`).
//! - `driver.rs` only runs the requests the state machine asks for and feeds the outcomes
//!   back; the requests themselves are built in `kafka::wire::membership`.
//! - [`assignor`] is the leader's pure assignment; `codec.rs` the payload encodings.
//!
//! The protocol is *eager*: before every rejoin the consumer gets [`GroupEvent::Revoke`] for
//! all its partitions and may commit until it answers `done`.

pub mod assignor;
mod bounds;
pub(crate) mod codec;
#[cfg(test)]
mod codec_props;
mod driver;
mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::kafka::connect::KafkaConnect;
use crate::kafka::wire;

pub use driver::GroupMember;

/// Capacity of the event channel. Events are rare (a few per rebalance); the driver queues
/// them internally rather than block its heartbeats on a slow consumer.
const EVENTS_CAPACITY: usize = 16;

/// Capacity of the handle's command channel; commits and offset fetches wait for room.
const COMMANDS_CAPACITY: usize = 64;

/// What a group member needs to know.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// How to reach Kafka: bootstrap brokers (tried in order to find the coordinator), the
    /// client id Kafka's tools show per member, TLS and SASL.
    pub connect: KafkaConnect,
    /// The consumer group.
    pub group_id: String,
    /// Static membership (KIP-345): this member's `group.instance.id`, stable across restarts.
    /// `None`: a dynamic member, which leaves the group when it stops.
    pub instance_id: Option<String>,
    /// Read when the stop token fires: set, a static member leaves the group as it stops.
    pub scale_down: ScaleDown,
    /// The one topic this group consumes.
    pub topic: String,
    /// The coordinator drops us if it hears nothing for this long (must lie within the broker's
    /// `group.min/max.session.timeout.ms`, else INVALID_SESSION_TIMEOUT).
    pub session_timeout: Duration,
    /// Time between heartbeats; keep it well under a third of `session_timeout`.
    pub heartbeat_interval: Duration,
    /// How long the coordinator waits for every member to rejoin in a rebalance; it also
    /// bounds our JoinGroup round trip. Should exceed `revoke_timeout`.
    pub rebalance_timeout: Duration,
    /// Bound for every request but JoinGroup, and for connecting.
    pub request_timeout: Duration,
    /// The assignor we prefer; the others are offered too, after it.
    pub assignor: AssignorKind,
    /// How long we wait for the consumer to acknowledge a [`GroupEvent::Revoke`] before
    /// rejoining anyway.
    pub revoke_timeout: Duration,
}

/// Whether a stop is a scale-down. A static member (KIP-345) that stops keeps its place in the
/// group until the session timeout, so a restart moves no partitions; when the process (or
/// the consumer entry) is going away for good, it must leave instead, or its partitions sit
/// idle for the session timeout. Set before cancelling the stop token; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct ScaleDown(Arc<AtomicBool>);

impl ScaleDown {
    /// Marks the coming stop as a scale-down.
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`ScaleDown::set`] was called.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The partition assignors, by their protocol names on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssignorKind {
    /// `cooperative-sticky`: the sticky assignment, reached incrementally (KIP-429). Members
    /// keep their partitions through a rebalance; a partition that moves is first revoked by
    /// its owner alone, then assigned in a follow-up rebalance.
    CooperativeSticky,
    /// `sticky`: balanced, moving as few partitions as possible between generations.
    Sticky,
    /// `range`: contiguous blocks, as Java's RangeAssignor.
    Range,
    /// `roundrobin`: partitions dealt in turn.
    RoundRobin,
}

impl AssignorKind {
    /// Every kind, in the order offered after the preferred one.
    pub const ALL: [Self; 4] = [
        Self::CooperativeSticky,
        Self::Sticky,
        Self::Range,
        Self::RoundRobin,
    ];

    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Self::CooperativeSticky => "cooperative-sticky",
            Self::Sticky => "sticky",
            Self::Range => "range",
            Self::RoundRobin => "roundrobin",
        }
    }

    /// The kind with protocol name `name`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether members keep their partitions through a rebalance (the cooperative protocol)
    /// rather than revoking them all before rejoining (eager).
    pub fn is_cooperative(self) -> bool {
        self == Self::CooperativeSticky
    }

    /// `self` first, then the other kinds: what we offer in JoinGroup.
    pub(crate) fn offered(self) -> Vec<Self> {
        std::iter::once(self)
            .chain(Self::ALL.into_iter().filter(|k| *k != self))
            .collect()
    }
}

/// What the group tells the consumer.
#[derive(Debug)]
pub enum GroupEvent {
    /// A generation started; these partitions (of `config.topic`) are ours.
    Assigned {
        /// The generation, for commits and logs.
        generation: i32,
        /// Our member id in this generation.
        member_id: String,
        /// Sorted partition numbers; may be empty.
        partitions: Vec<i32>,
        /// Members of this generation as we know them: all when we lead, else 1 (the
        /// coordinator sends the member list only to the leader).
        members: usize,
    },
    /// Stop these partitions and commit what finished (through [`GroupHandle::commit`], still
    /// valid now), then send on `done` (or drop it). Eager protocols: every owned partition,
    /// before each rejoin. Cooperative: only the partitions a new assignment moves elsewhere
    /// (the others keep running), and every owned partition when stopping. Not sent when we
    /// own nothing.
    Revoke {
        /// The partitions to stop.
        partitions: Vec<i32>,
        /// Acknowledges the revoke; the driver rejoins once it fires or is dropped, or after
        /// `revoke_timeout`.
        done: oneshot::Sender<()>,
    },
    /// Membership was lost (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID, session
    /// expired): stop these partitions at once and do NOT commit, another member may own them.
    Lost {
        /// Every partition we owned.
        partitions: Vec<i32>,
    },
}

/// Errors of [`GroupHandle::committed`] (and the causes inside [`CommitError`]).
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// We have no coordinator connection at the moment (it is being looked up).
    #[error("no connection to the group coordinator")]
    NoCoordinator,
    /// The driver has ended (stopped, fenced, or its event receiver was dropped).
    #[error("the group member has stopped")]
    Stopped,
    /// The request failed on the wire or the coordinator answered with a group-level error.
    #[error(transparent)]
    Wire(#[from] wire::Error),
    /// The coordinator refused one partition.
    #[error("{api:?} failed for partition {partition}: {error} (code {code})")]
    Partition {
        /// OffsetFetch or OffsetCommit.
        api: ApiKey,
        /// The partition concerned.
        partition: i32,
        /// The decoded error.
        error: ResponseError,
        /// The raw code, for logs.
        code: i16,
    },
}

/// Why [`GroupHandle::commit`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The group is rebalancing and we are between generations; the offsets will be committed
    /// by whoever gets the partitions (or by us after the next assignment).
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID: our generation is over and
    /// the offsets belong to the partitions' next owner now. Do not retry.
    #[error("generation is stale ({error}): the partitions belong to their next owner")]
    StaleGeneration {
        /// The coordinator's verdict.
        error: ResponseError,
    },
    /// Not a member of any generation (not joined yet, lost, or stopped).
    #[error("not a member of the group")]
    NotMember,
    /// The coordinator is unreachable, moving or loading; retry later.
    #[error(transparent)]
    Coordinator(GroupError),
    /// Anything else (a refused partition, an unsupported broker).
    #[error(transparent)]
    Other(GroupError),
}

/// Requests from [`GroupHandle`] to the driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// OffsetCommit; see [`GroupHandle::commit_marked`].
    Commit {
        offsets: Vec<OffsetMark>,
        reply: oneshot::Sender<Result<(), CommitError>>,
    },
    /// OffsetFetch; see [`GroupHandle::committed_marked`].
    Committed {
        partitions: Vec<i32>,
        reply: oneshot::Sender<Result<BTreeMap<i32, Option<OffsetMark>>, GroupError>>,
    },
}

/// A partition's committed position with the metadata string Kafka keeps beside it
/// (bigpipe writes which retransmit the position came from; empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetMark {
    /// The partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// OffsetCommit's `committed_metadata`.
    pub metadata: String,
}

/// Talks to a running group member. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupHandle {
    /// Requests to the driver; closed when the driver ends.
    commands: mpsc::Sender<Command>,
    /// The driver publishes `(member id, generation)` while stable.
    current: watch::Receiver<Option<(String, i32)>>,
}

impl GroupHandle {
    /// OffsetCommit with the current generation and member id. `offsets` are (partition, next
    /// offset to consume) of `config.topic`. Valid while the partitions are assigned, including
    /// between a [`GroupEvent::Revoke`] and its `done`.
    ///
    /// # Errors
    /// See [`CommitError`]; [`CommitError::NotMember`] once the driver has ended.
    pub async fn commit(&self, offsets: Vec<(i32, i64)>) -> Result<(), CommitError> {
        let offsets = offsets
            .into_iter()
            .map(|(partition, offset)| OffsetMark {
                partition,
                offset,
                metadata: String::new(),
            })
            .collect();
        self.commit_marked(offsets).await
    }

    /// [`GroupHandle::commit`] with each partition's metadata string.
    ///
    /// # Errors
    /// See [`CommitError`].
    pub async fn commit_marked(&self, offsets: Vec<OffsetMark>) -> Result<(), CommitError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Commit { offsets, reply })
            .await
            .map_err(|_closed| CommitError::NotMember)?;
        // A dropped reply means the driver ended with the request in flight.
        answer.await.unwrap_or(Err(CommitError::NotMember))
    }

    /// OffsetFetch: the committed offset of each partition of `config.topic`, `None` where the
    /// group has none.
    ///
    /// # Errors
    /// [`GroupError::NoCoordinator`] while the coordinator is being looked up (retry),
    /// [`GroupError::Stopped`] once the driver has ended, else what the request hit.
    pub async fn committed(&self, partitions: Vec<i32>) -> Result<BTreeMap<i32, Option<i64>>, GroupError> {
        let marked = self.committed_marked(partitions).await?;
        Ok(marked
            .into_iter()
            .map(|(p, m)| (p, m.map(|m| m.offset)))
            .collect())
    }

    /// [`GroupHandle::committed`] with the metadata committed beside each offset.
    ///
    /// # Errors
    /// As [`GroupHandle::committed`].
    pub async fn committed_marked(
        &self,
        partitions: Vec<i32>,
    ) -> Result<BTreeMap<i32, Option<OffsetMark>>, GroupError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Committed { partitions, reply })
            .await
            .map_err(|_closed| GroupError::Stopped)?;
        answer.await.unwrap_or(Err(GroupError::Stopped))
    }

    /// The current member id and generation while in a stable generation (for stats).
    pub fn current(&self) -> Option<(String, i32)> {
        self.current.borrow().clone()
    }
}

/// Spawns the driver task on the current runtime.
///
/// It runs until `stop` is cancelled, then emits [`GroupEvent::Revoke`] for owned partitions
/// (waiting for `done` up to `revoke_timeout`), sends LeaveGroup so the partitions move at
/// once, and ends. It also ends, after a LeaveGroup, if the event receiver is dropped, and
/// after FENCED_INSTANCE_ID. Other errors never end it: it retries with backoff.
///
/// # Panics
/// Outside a tokio runtime (as `tokio::spawn`).
pub fn start(
    config: GroupConfig,
    log: slog::Logger,
    stop: CancellationToken,
) -> (GroupHandle, mpsc::Receiver<GroupEvent>, JoinHandle<()>) {
    let (events_tx, events_rx) = mpsc::channel(EVENTS_CAPACITY);
    let (commands_tx, commands_rx) = mpsc::channel(COMMANDS_CAPACITY);
    let (current_tx, current_rx) = watch::channel(None);
    let member = GroupMember::new(config, log, stop, events_tx, commands_rx, current_tx);
    let task = tokio::spawn(member.run());
    let handle = GroupHandle {
        commands: commands_tx,
        current: current_rx,
    };
    (handle, events_rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignor_names_round_trip_and_preference_comes_first() {
        for kind in AssignorKind::ALL {
            assert_eq!(AssignorKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(
            AssignorKind::from_name("cooperative-sticky"),
            Some(AssignorKind::CooperativeSticky)
        );
        assert_eq!(AssignorKind::from_name("uniform"), None);
        assert_eq!(
            AssignorKind::RoundRobin.offered(),
            vec![
                AssignorKind::RoundRobin,
                AssignorKind::CooperativeSticky,
                AssignorKind::Sticky,
                AssignorKind::Range
            ]
        );
        assert_eq!(
            AssignorKind::CooperativeSticky.offered(),
            AssignorKind::ALL.to_vec()
        );
    }

    #[tokio::test]
    async fn handle_reports_a_gone_driver() {
        let (commands, rx) = mpsc::channel(1);
        drop(rx);
        let (_tx, current) = watch::channel(None);
        let handle = GroupHandle { commands, current };
        assert!(matches!(
            handle.commit(vec![(0, 1)]).await,
            Err(CommitError::NotMember)
        ));
        assert!(handle.commit(vec![]).await.is_ok());
        assert!(matches!(
            handle.committed(vec![0]).await,
            Err(GroupError::Stopped)
        ));
        assert_eq!(handle.current(), None);
    }
}
