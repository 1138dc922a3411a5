//! The membership state machine: `Member::handle(now, input) -> Vec<Action>`.
//!
//! Pure: it never touches a socket or reads the clock. The driver feeds it request outcomes,
//! timer ticks and the consumer's acknowledgements, and executes the actions it returns
//! (requests to send, events to emit). Every decision of the classic protocol lives here, so
//! it is unit-tested without a broker.
//!
//! Two dimensions of state:
//!
//! ```text
//! coordinator:  Unknown ──FindCoordinator──► Finding ──found──► Known{epoch}
//!                  ▲                                              │ NOT_COORDINATOR, connection
//!                  └──────────────────── backoff ◄────────────────┘ errors (membership kept)
//!
//! phase:  Unjoined ─JoinGroup─► Joining ─leader─► Assigning ─Metadata─► Syncing ─► Stable
//!            ▲  ▲                  │ follower ──────────────────────────────▲         │
//!            │  └──MEMBER_ID_REQUIRED (same request, new id)                          │
//!            │                                              REBALANCE_IN_PROGRESS,     │
//!            └──── done / revoke_timeout ◄── Revoking ◄──── partition count change ────┘
//!   stop: (Revoking ─►) Leaving ─LeaveGroup─► Stopped       FENCED_INSTANCE_ID ─► Stopped
//! ```
//!
//! The machine is level-triggered: after every input, `drive` looks at the state and issues
//! whatever is missing (find the coordinator, join, heartbeat), so a recovery path only has to
//! put the state right, never remember to send something.
//!
//! Responses are matched to their request by a sequence number; a response to a request the
//! machine no longer waits for (an old heartbeat after a rejoin, a join after a stop) is
//! ignored, so stale errors can never cost a valid generation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use rand::RngCore;
use slog::{Logger, debug, error, info, warn};
use tokio::time::Instant;

use super::codec::{self, Subscription};
use super::{AssignorKind, CommitError, GroupConfig, GroupError, assignor};
use crate::backoff::{Backoff, BackoffConfig};
use crate::kafka::wire;

/// Wait after a configuration-class error (INCONSISTENT_GROUP_PROTOCOL, INVALID_SESSION_TIMEOUT,
/// GROUP_AUTHORIZATION_FAILED, GROUP_MAX_SIZE_REACHED, an unsupported broker): an operator has
/// to act, retrying faster only floods the logs.
pub(crate) const FATAL_RETRY: Duration = Duration::from_secs(30);

/// How often the leader re-reads the partition counts of the topics it assigned; a change
/// triggers a rebalance so new partitions get an owner (Java's leader does the same on its
/// metadata refresh).
pub(crate) const METADATA_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The leader's check while a subscribed topic is missing: bigpipe creates its topics
/// (retry tiers, new entries) while the groups join, and their partitions should get
/// an owner within a second of existing, not at the next 30 s check.
pub(crate) const MISSING_TOPIC_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// When the leader checks partition counts next, given the counts it knows.
fn next_check_after(now: Instant, counts: &BTreeMap<String, Option<i32>>) -> Instant {
    if counts.values().any(Option::is_none) {
        now + MISSING_TOPIC_CHECK_INTERVAL
    } else {
        now + METADATA_CHECK_INTERVAL
    }
}

/// Retry delay for a heartbeat that failed without ending the membership (at most the
/// heartbeat interval).
pub(crate) const HEARTBEAT_RETRY: Duration = Duration::from_millis(200);

/// Backoff for finding the coordinator and for rejoining after transient errors. The cap is
/// short (Java's `retry.backoff.max.ms` is 1 s) because a member that backs off past the
/// coordinator's return keeps its partitions idle for nothing; with full jitter even many
/// members polling a missing coordinator stay cheap.
pub(crate) const RETRY_BACKOFF: BackoffConfig = BackoffConfig {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(2),
    factor: 2.0,
};

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Look up the coordinator through the bootstrap brokers and connect to it; answer with
    /// [`Input::CoordinatorFound`].
    FindCoordinator { seq: u64 },
    /// JoinGroup; answer with [`Input::Joined`].
    JoinGroup {
        seq: u64,
        member_id: String,
        /// (protocol name, subscription payload), preferred first.
        protocols: Vec<(&'static str, Bytes)>,
        /// Why we (re)join, for the broker's log (JoinGroup v8+).
        reason: String,
    },
    /// The partition count of each of `topics` (the group's subscribed topics, sorted; possibly
    /// empty); answer with [`Input::PartitionCounts`].
    FetchPartitionCounts { seq: u64, topics: Vec<String> },
    /// SyncGroup; answer with [`Input::Synced`].
    SyncGroup {
        seq: u64,
        generation: i32,
        member_id: String,
        protocol: &'static str,
        /// Leader: one entry per member; follower: empty.
        assignments: Vec<(String, Bytes)>,
    },
    /// Heartbeat; answer with [`Input::Heartbeat`].
    Heartbeat {
        seq: u64,
        generation: i32,
        member_id: String,
    },
    /// LeaveGroup; answer with [`Input::Left`]. `fresh_connection`: a JoinGroup or SyncGroup
    /// may be holding the coordinator connection (the broker can park those for the rebalance
    /// timeout), so send it on a new connection.
    LeaveGroup {
        seq: u64,
        member_id: String,
        fresh_connection: bool,
    },
    /// Tell the consumer.
    Emit(Event),
}

/// An event for the consumer; the driver turns it into a `GroupEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Assigned {
        generation: i32,
        member_id: String,
        partitions: Vec<i32>,
    },
    /// Answer with [`Input::RevokeDone`] carrying `token`.
    Revoke {
        token: u64,
        partitions: Vec<i32>,
    },
    Lost {
        partitions: Vec<i32>,
    },
}

/// What a successful JoinGroup round trip said.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JoinOutcome {
    /// KIP-394: rejoin at once with this id.
    MemberIdRequired { member_id: String },
    Joined {
        generation: i32,
        member_id: String,
        leader: String,
        protocol: Option<String>,
        /// (member id, subscription payload); only the leader gets them.
        members: Vec<(String, Bytes)>,
    },
}

/// Everything that can happen to the machine.
#[derive(Debug)]
pub(crate) enum Input {
    /// Time passed; see [`Member::next_deadline`].
    Tick,
    /// The stop token was cancelled.
    Stop,
    /// The consumer dropped its event receiver: leave without telling anyone.
    EventsClosed,
    CoordinatorFound {
        seq: u64,
        result: Result<(), wire::Error>,
    },
    Joined {
        seq: u64,
        result: Result<JoinOutcome, wire::Error>,
    },
    /// Topic → partition count; `None` (or absent): the topic does not exist.
    PartitionCounts {
        seq: u64,
        result: Result<BTreeMap<String, Option<i32>>, wire::Error>,
    },
    /// The assignment payload.
    Synced {
        seq: u64,
        result: Result<Bytes, wire::Error>,
    },
    Heartbeat {
        seq: u64,
        result: Result<(), wire::Error>,
    },
    Left {
        seq: u64,
        result: Result<(), wire::Error>,
    },
    /// The consumer acknowledged (or dropped) the revoke with this token.
    RevokeDone { token: u64 },
    /// A request outside the machine's own (OffsetCommit, OffsetFetch) failed with a
    /// group-level error. `epoch`: the coordinator connection it used; `membership`: the
    /// (member id, generation) an OffsetCommit carried; `class`: [`classify`] of the error (the
    /// error itself went back to the caller); `detail`: its text, for logs.
    SideFailure {
        epoch: u64,
        membership: Option<(String, i32)>,
        class: Class,
        detail: String,
    },
}

/// How an error affects membership (rust-deps.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// REBALANCE_IN_PROGRESS: revoke, rejoin with the same id.
    Rebalance,
    /// ILLEGAL_GENERATION: partitions lost, rejoin with the same id.
    IllegalGeneration,
    /// UNKNOWN_MEMBER_ID: partitions lost, rejoin with a new id.
    UnknownMember,
    /// FENCED_INSTANCE_ID: partitions lost, stop.
    Fenced,
    /// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, any connection failure: find the
    /// coordinator again; membership survives while the session does.
    Coordinator,
    /// COORDINATOR_LOAD_IN_PROGRESS: same coordinator, later.
    Loading,
    /// Needs an operator: retry slowly, never crash.
    Fatal,
    /// Anything else: retry with backoff.
    Transient,
}

/// Classifies a wire error.
pub(crate) fn classify(err: &wire::Error) -> Class {
    use wire::Error as E;
    match err {
        E::Server { error, .. } | E::Topic { error, .. } => match error {
            ResponseError::RebalanceInProgress => Class::Rebalance,
            ResponseError::IllegalGeneration => Class::IllegalGeneration,
            ResponseError::UnknownMemberId => Class::UnknownMember,
            ResponseError::FencedInstanceId => Class::Fenced,
            ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable => Class::Coordinator,
            ResponseError::CoordinatorLoadInProgress => Class::Loading,
            ResponseError::InconsistentGroupProtocol
            | ResponseError::InvalidSessionTimeout
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::GroupMaxSizeReached
            | ResponseError::InvalidGroupId => Class::Fatal,
            _ => Class::Transient,
        },
        // The stream is (or may be) broken, or the broker is gone: reconnect. A timeout spent
        // only waiting for the connection's lock leaves it usable, but a connection that busy
        // is as good as lost for heartbeats.
        E::Connect { .. }
        | E::Timeout { .. }
        | E::Frame(_)
        | E::Decode { .. }
        | E::CorrelationMismatch { .. }
        | E::Poisoned { .. }
        | E::NoBrokerReachable { .. } => Class::Coordinator,
        // The broker cannot speak what we need: no retry will fix that quickly.
        E::UnsupportedApi { .. }
        | E::UnsupportedVersion { .. }
        | E::VersionTooOld { .. }
        | E::Encode { .. } => Class::Fatal,
        // Wrong credentials or an untrusted certificate: an operator must act; retry slowly.
        E::Tls { .. } | E::Authentication { .. } => Class::Fatal,
        E::MissingInResponse { .. } => Class::Transient,
    }
}

/// Where OffsetCommit must go, with which identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitTarget {
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    /// The coordinator connection's epoch, for [`Input::SideFailure`].
    pub(crate) epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coordinator {
    Unknown,
    Finding {
        seq: u64,
    },
    /// `epoch` counts successful lookups, so a failure on an old connection cannot drop the
    /// new one.
    Known {
        epoch: u64,
    },
}

/// What happens once a revoke is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Rejoin,
    Leave,
}

#[derive(Debug)]
enum Phase {
    /// Not in a generation; JoinGroup goes out as soon as the coordinator is known and no
    /// backoff is pending.
    Unjoined,
    Joining {
        seq: u64,
        sent: Instant,
    },
    /// Leader only: waiting for the partition counts of the subscribed topics to run the
    /// assignor.
    Assigning {
        seq: u64,
        kind: AssignorKind,
        /// Members and their subscriptions; `None` if undecodable (they get nothing).
        members: Vec<(String, Option<Subscription>)>,
    },
    Syncing {
        seq: u64,
        sent: Instant,
    },
    Stable,
    /// The consumer is stopping the partitions; the generation stays valid for commits and
    /// heartbeats keep the session alive (the coordinator answers them with
    /// REBALANCE_IN_PROGRESS meanwhile, which is expected here).
    Revoking {
        token: u64,
        deadline: Instant,
        then: After,
    },
    Leaving {
        seq: u64,
    },
    Stopped,
}

impl Phase {
    /// Stable or Revoking: we hold a valid generation and must heartbeat.
    fn in_generation(&self) -> bool {
        matches!(self, Self::Stable | Self::Revoking { .. })
    }
}

/// The leader's watch on the partition counts it assigned.
#[derive(Debug)]
struct LeaderCheck {
    /// Every topic of the group's subscriptions → its partition count then (`None`: missing).
    partitions: BTreeMap<String, Option<i32>>,
    next_check: Instant,
    inflight: Option<u64>,
}

/// The state of one group member. See the module docs.
pub(crate) struct Member {
    log: Logger,
    topic: String,
    /// Our preferred assignor, used if the coordinator names a protocol we do not know.
    preferred: AssignorKind,
    /// Protocols offered in JoinGroup, preferred first.
    offered: Vec<AssignorKind>,
    session_timeout: Duration,
    heartbeat_interval: Duration,
    revoke_timeout: Duration,

    member_id: String,
    /// The generation joined last; -1 when none (never joined, or lost).
    generation: i32,
    phase: Phase,
    coordinator: Coordinator,
    epochs: u64,
    /// Backoff gate for FindCoordinator and JoinGroup.
    wait_until: Option<Instant>,
    find_backoff: Backoff,
    join_backoff: Backoff,
    rng: Box<dyn RngCore + Send>,

    /// Partitions the consumer holds: set by Assigned, cleared by Revoke (once done) or Lost.
    owned: Vec<i32>,
    /// (partitions, generation) of our last assignment, sent as `owned_partitions` so a sticky
    /// leader keeps them with us; cleared when membership is lost.
    claim: (Vec<i32>, i32),
    /// Send time of the last request that proved the session alive (heartbeat, join, sync).
    /// The send time, not the answer's, since the broker's session clock restarted no later
    /// than when it got the request.
    last_alive: Instant,
    next_heartbeat: Instant,
    /// (seq, send time) of the heartbeat in flight.
    heartbeat: Option<(u64, Instant)>,
    leader: Option<LeaderCheck>,
    /// Subscribed topics found missing as leader, so each is warned about once (until it
    /// appears).
    missing_topics: BTreeSet<String>,
    /// Why the next JoinGroup happens.
    rejoin_reason: String,
    /// Members of the last join as we know them: all of them when we lead (the coordinator
    /// sends the list only to the leader), else just ourselves.
    joined_members: usize,
    stopping: bool,
    events_closed: bool,
    next_seq: u64,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("member_id", &self.member_id)
            .field("generation", &self.generation)
            .field("phase", &self.phase)
            .field("coordinator", &self.coordinator)
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

impl Member {
    /// A member that has not looked for its coordinator yet; the first [`Input::Tick`] starts.
    /// `log` should carry the group id; `rng` drives backoff jitter.
    pub(crate) fn new(config: &GroupConfig, log: Logger, now: Instant, rng: Box<dyn RngCore + Send>) -> Self {
        Self {
            log,
            topic: config.topic.clone(),
            preferred: config.assignor,
            offered: config.assignor.offered(),
            session_timeout: config.session_timeout,
            // A zero interval would heartbeat in a busy loop.
            heartbeat_interval: config.heartbeat_interval.max(Duration::from_millis(10)),
            revoke_timeout: config.revoke_timeout,
            member_id: String::new(),
            generation: -1,
            phase: Phase::Unjoined,
            coordinator: Coordinator::Unknown,
            epochs: 0,
            wait_until: None,
            find_backoff: Backoff::new(RETRY_BACKOFF),
            join_backoff: Backoff::new(RETRY_BACKOFF),
            rng,
            owned: Vec::new(),
            claim: (Vec::new(), -1),
            last_alive: now,
            next_heartbeat: now,
            heartbeat: None,
            leader: None,
            missing_topics: BTreeSet::new(),
            rejoin_reason: "joining".to_owned(),
            joined_members: 0,
            stopping: false,
            events_closed: false,
            next_seq: 0,
        }
    }

    /// Feeds one input; returns what to do, in order.
    pub(crate) fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Stopped) {
            return out;
        }
        match input {
            Input::Tick => {}
            Input::Stop => self.on_stop(now, &mut out),
            Input::EventsClosed => self.on_events_closed(now, &mut out),
            Input::CoordinatorFound { seq, result } => self.on_found(now, seq, result),
            Input::Joined { seq, result } => self.on_joined(now, seq, result, &mut out),
            Input::PartitionCounts { seq, result } => self.on_partition_counts(now, seq, result, &mut out),
            Input::Synced { seq, result } => self.on_synced(now, seq, result, &mut out),
            Input::Heartbeat { seq, result } => self.on_heartbeat(now, seq, result, &mut out),
            Input::Left { seq, result } => self.on_left(seq, result),
            Input::RevokeDone { token } => {
                if matches!(self.phase, Phase::Revoking { token: t, .. } if t == token) {
                    self.finish_revoke(now, &mut out);
                }
            }
            Input::SideFailure {
                epoch,
                membership,
                class,
                detail,
            } => self.on_side_failure(now, epoch, membership, class, &detail, &mut out),
        }
        self.drive(now, &mut out);
        out
    }

    /// When the machine next needs an [`Input::Tick`], if ever (absent other inputs).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Stopped) {
            return None;
        }
        let mut next: Option<Instant> = self.wait_until;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Phase::Revoking { deadline, .. } = self.phase {
            consider(deadline);
        }
        if self.phase.in_generation() {
            consider(self.last_alive + self.session_timeout);
            if matches!(self.coordinator, Coordinator::Known { .. }) {
                if self.heartbeat.is_none() {
                    consider(self.next_heartbeat);
                }
                if let (Phase::Stable, Some(check)) = (&self.phase, &self.leader)
                    && check.inflight.is_none()
                {
                    consider(check.next_check);
                }
            }
        }
        next
    }

    /// True while a FindCoordinator with this `seq` is awaited: the driver may install the
    /// connection it found.
    pub(crate) fn awaits_coordinator(&self, seq: u64) -> bool {
        self.coordinator == (Coordinator::Finding { seq })
    }

    /// True once the member has left (or given up); the driver ends.
    pub(crate) fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// (member id, generation) while stable, for the handle's `current()`.
    pub(crate) fn current(&self) -> Option<(String, i32)> {
        matches!(self.phase, Phase::Stable).then(|| (self.member_id.clone(), self.generation))
    }

    /// Members of the last join as we know them (all when we lead, else 1: ourselves).
    pub(crate) fn joined_members(&self) -> usize {
        self.joined_members
    }

    /// The member id (possibly empty) and generation (-1 if none), for logs.
    pub(crate) fn identity(&self) -> (&str, i32) {
        (&self.member_id, self.generation)
    }

    /// The epoch of the coordinator connection, if there is one.
    pub(crate) fn coordinator_epoch(&self) -> Option<u64> {
        match self.coordinator {
            Coordinator::Known { epoch } => Some(epoch),
            _ => None,
        }
    }

    /// Whether an OffsetCommit may go out now, and as whom.
    ///
    /// # Errors
    /// [`CommitError::RebalanceInProgress`] between generations (after a revoke, while joining),
    /// [`CommitError::NotMember`] without a generation, [`CommitError::Coordinator`] while the
    /// coordinator is being looked up.
    pub(crate) fn commit_target(&self) -> Result<CommitTarget, CommitError> {
        match self.phase {
            Phase::Stable | Phase::Revoking { .. } => match self.coordinator {
                Coordinator::Known { epoch } => Ok(CommitTarget {
                    member_id: self.member_id.clone(),
                    generation: self.generation,
                    epoch,
                }),
                _ => Err(CommitError::Coordinator(GroupError::NoCoordinator)),
            },
            Phase::Joining { .. } | Phase::Assigning { .. } | Phase::Syncing { .. } => {
                Err(CommitError::RebalanceInProgress)
            }
            Phase::Unjoined if self.generation >= 0 => Err(CommitError::RebalanceInProgress),
            Phase::Unjoined | Phase::Leaving { .. } | Phase::Stopped => Err(CommitError::NotMember),
        }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn emit(&self, event: Event, out: &mut Vec<Action>) {
        if !self.events_closed {
            out.push(Action::Emit(event));
        }
    }

    /// Issues whatever the current state is missing. Runs after every input.
    fn drive(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Phase::Revoking { deadline, .. } = self.phase
            && now >= deadline
        {
            warn!(self.log, "revoke not acknowledged within revoke_timeout; going on without it";
                "member" => &self.member_id, "generation" => self.generation, "timeout" => ?self.revoke_timeout);
            self.finish_revoke(now, out);
        }
        if self.phase.in_generation() && now >= self.last_alive + self.session_timeout {
            self.session_expired(now, out);
        }
        if matches!(self.phase, Phase::Stopped) {
            return;
        }
        if self.wait_until.is_some_and(|t| now >= t) {
            self.wait_until = None;
        }
        let gated = self.wait_until.is_some();
        match self.coordinator {
            Coordinator::Unknown if !gated && !matches!(self.phase, Phase::Leaving { .. }) => {
                let seq = self.seq();
                self.coordinator = Coordinator::Finding { seq };
                debug!(self.log, "finding the group coordinator"; "member" => &self.member_id);
                out.push(Action::FindCoordinator { seq });
            }
            Coordinator::Unknown | Coordinator::Finding { .. } => {}
            Coordinator::Known { .. } => match self.phase {
                Phase::Unjoined if !gated => self.send_join(now, out),
                Phase::Stable | Phase::Revoking { .. } => {
                    if self.heartbeat.is_none() && now >= self.next_heartbeat {
                        let seq = self.seq();
                        self.heartbeat = Some((seq, now));
                        out.push(Action::Heartbeat {
                            seq,
                            generation: self.generation,
                            member_id: self.member_id.clone(),
                        });
                    }
                    if matches!(self.phase, Phase::Stable)
                        && let Some(check) = &self.leader
                        && check.inflight.is_none()
                        && now >= check.next_check
                    {
                        let topics = check.partitions.keys().cloned().collect();
                        let seq = self.seq();
                        if let Some(check) = &mut self.leader {
                            check.inflight = Some(seq);
                        }
                        out.push(Action::FetchPartitionCounts { seq, topics });
                    }
                }
                _ => {}
            },
        }
    }

    fn send_join(&mut self, now: Instant, out: &mut Vec<Action>) {
        let seq = self.seq();
        self.phase = Phase::Joining { seq, sent: now };
        let payload = codec::encode_subscription(&self.topic, &self.claim.0, self.claim.1);
        let protocols = self.offered.iter().map(|k| (k.name(), payload.clone())).collect();
        let reason = std::mem::replace(&mut self.rejoin_reason, "joining".to_owned());
        info!(self.log, "joining group"; "member" => &self.member_id, "reason" => &reason,
            "claimed" => ?self.claim.0);
        out.push(Action::JoinGroup {
            seq,
            member_id: self.member_id.clone(),
            protocols,
            reason,
        });
    }

    fn send_sync(
        &mut self,
        now: Instant,
        kind: AssignorKind,
        assignments: Vec<(String, Bytes)>,
        out: &mut Vec<Action>,
    ) {
        let seq = self.seq();
        self.phase = Phase::Syncing { seq, sent: now };
        out.push(Action::SyncGroup {
            seq,
            generation: self.generation,
            member_id: self.member_id.clone(),
            protocol: kind.name(),
            assignments,
        });
    }

    fn on_found(&mut self, now: Instant, seq: u64, result: Result<(), wire::Error>) {
        if self.coordinator != (Coordinator::Finding { seq }) {
            return;
        }
        match result {
            Ok(()) => {
                self.epochs += 1;
                self.coordinator = Coordinator::Known { epoch: self.epochs };
                self.find_backoff = Backoff::new(RETRY_BACKOFF);
            }
            Err(e) => {
                self.coordinator = Coordinator::Unknown;
                let delay = if classify(&e) == Class::Fatal {
                    error!(self.log, "cannot find the group coordinator; check the broker and the group's ACLs";
                        "error" => %wire::error_chain(&e), "retry_in" => ?FATAL_RETRY);
                    FATAL_RETRY
                } else {
                    let delay = self.find_backoff.next_with(&mut *self.rng);
                    warn!(self.log, "cannot find the group coordinator";
                        "error" => %wire::error_chain(&e), "retry_in" => ?delay);
                    delay
                };
                self.wait_until = Some(now + delay);
            }
        }
    }

    fn on_joined(
        &mut self,
        now: Instant,
        seq: u64,
        result: Result<JoinOutcome, wire::Error>,
        out: &mut Vec<Action>,
    ) {
        let Phase::Joining { seq: expected, sent } = self.phase else {
            return;
        };
        if seq != expected {
            return;
        }
        match result {
            Ok(JoinOutcome::MemberIdRequired { member_id }) => {
                debug!(self.log, "coordinator assigned our member id (KIP-394)"; "member" => &member_id);
                self.member_id = member_id;
                self.rejoin_reason = "rejoining with the assigned member id".to_owned();
                self.phase = Phase::Unjoined;
            }
            Ok(JoinOutcome::Joined {
                generation,
                member_id,
                leader,
                protocol,
                members,
            }) => {
                self.member_id = member_id;
                self.generation = generation;
                self.joined_members = members.len().max(1);
                self.last_alive = sent;
                let kind = match protocol.as_deref().and_then(AssignorKind::from_name) {
                    Some(kind) => kind,
                    None => {
                        warn!(self.log, "coordinator chose a protocol we did not offer; assigning with our preference";
                            "protocol" => ?protocol, "member" => &self.member_id, "generation" => generation);
                        self.preferred
                    }
                };
                if leader == self.member_id {
                    let members = members
                        .into_iter()
                        .map(|(id, payload)| match codec::decode_subscription(&payload) {
                            Ok(sub) => (id, Some(sub)),
                            Err(e) => {
                                warn!(self.log, "undecodable subscription; that member gets no partitions";
                                    "of" => &id, "error" => %wire::error_chain(&e), "generation" => generation);
                                (id, None)
                            }
                        })
                        .collect::<Vec<_>>();
                    let topics = subscribed_topics(&members);
                    let seq = self.seq();
                    self.phase = Phase::Assigning { seq, kind, members };
                    out.push(Action::FetchPartitionCounts { seq, topics });
                } else {
                    self.leader = None;
                    self.send_sync(now, kind, Vec::new(), out);
                }
            }
            Err(e) => self.on_rejoin_error(now, "JoinGroup", e, out),
        }
    }

    fn on_partition_counts(
        &mut self,
        now: Instant,
        seq: u64,
        result: Result<BTreeMap<String, Option<i32>>, wire::Error>,
        out: &mut Vec<Action>,
    ) {
        if matches!(self.phase, Phase::Assigning { seq: s, .. } if s == seq) {
            let Phase::Assigning { kind, members, .. } = std::mem::replace(&mut self.phase, Phase::Unjoined)
            else {
                return;
            };
            match result {
                Ok(counts) => self.assign_as_leader(now, kind, &members, &counts, out),
                Err(e) => self.on_rejoin_error(now, "Metadata", e, out),
            }
            return;
        }
        let Some(check) = &mut self.leader else { return };
        if check.inflight != Some(seq) {
            return;
        }
        check.inflight = None;
        check.next_check = next_check_after(now, &check.partitions);
        match result {
            Ok(counts) => {
                let changed: Vec<(String, Option<i32>, Option<i32>)> = check
                    .partitions
                    .iter()
                    .filter_map(|(topic, &before)| {
                        let count = counts.get(topic).copied().flatten();
                        (count != before).then(|| (topic.clone(), before, count))
                    })
                    .collect();
                if !changed.is_empty() && matches!(self.phase, Phase::Stable) {
                    info!(self.log, "partition count changed; rebalancing";
                        "member" => &self.member_id, "generation" => self.generation,
                        "changed" => ?changed);
                    self.begin_rebalance(now, "partition count changed", out);
                }
            }
            Err(e) => {
                debug!(self.log, "partition count check failed"; "error" => %wire::error_chain(&e));
                if classify(&e) == Class::Coordinator {
                    self.lose_coordinator(now);
                }
            }
        }
    }

    /// Runs the assignor once per subscribed topic, over the members subscribed to it (with
    /// what they owned of it), as Java's assignors do; each member's assignment lists all its
    /// topics. Undecodable members get an empty assignment; a missing topic assigns nothing.
    fn assign_as_leader(
        &mut self,
        now: Instant,
        kind: AssignorKind,
        members: &[(String, Option<Subscription>)],
        counts: &BTreeMap<String, Option<i32>>,
        out: &mut Vec<Action>,
    ) {
        let counts: BTreeMap<String, Option<i32>> = subscribed_topics(members)
            .into_iter()
            .map(|topic| {
                let count = counts.get(&topic).copied().flatten();
                (topic, count)
            })
            .collect();
        for (topic, count) in &counts {
            if count.is_some() {
                self.missing_topics.remove(topic);
            } else if self.missing_topics.insert(topic.clone()) {
                warn!(self.log, "subscribed topic does not exist (or this process may not describe it); \
                    assigning none of it until it does";
                    "subscribed" => topic, "generation" => self.generation);
            }
        }
        // member id → (topic, partitions)
        let mut plan: BTreeMap<String, Vec<(String, Vec<i32>)>> = BTreeMap::new();
        for (topic, count) in &counts {
            let claims: Vec<(String, Vec<i32>, i32)> = members
                .iter()
                .filter_map(|(id, sub)| {
                    let sub = sub.as_ref()?;
                    sub.topics
                        .contains(topic)
                        .then(|| (id.clone(), sub.owned_of(topic), sub.generation))
                })
                .collect();
            let resolved = assignor::resolve_claims(&claims);
            for (id, parts) in assignor::assign(kind, &resolved, count.unwrap_or(0)) {
                if !parts.is_empty() {
                    plan.entry(id).or_default().push((topic.clone(), parts));
                }
            }
        }
        info!(self.log, "computed assignment as leader";
            "member" => &self.member_id, "generation" => self.generation, "assignor" => kind.name(),
            "partitions" => ?counts, "plan" => ?plan);
        let assignments = members
            .iter()
            .map(|(id, _)| {
                let assigned = plan.get(id).map_or(&[][..], Vec::as_slice);
                (id.clone(), codec::encode_assignment(assigned))
            })
            .collect();
        self.leader = Some(LeaderCheck {
            next_check: next_check_after(now, &counts),
            partitions: counts,
            inflight: None,
        });
        self.send_sync(now, kind, assignments, out);
    }

    fn on_synced(
        &mut self,
        now: Instant,
        seq: u64,
        result: Result<Bytes, wire::Error>,
        out: &mut Vec<Action>,
    ) {
        let Phase::Syncing { seq: expected, sent } = self.phase else {
            return;
        };
        if seq != expected {
            return;
        }
        let payload = match result {
            Ok(payload) => payload,
            Err(e) => return self.on_rejoin_error(now, "SyncGroup", e, out),
        };
        let topics = match codec::decode_assignment(&payload) {
            Ok(topics) => topics,
            Err(e) => {
                // Holding partitions we cannot name would stall them; a rejoin makes the
                // leader try again (and makes noise).
                error!(self.log, "undecodable assignment; rejoining";
                    "member" => &self.member_id, "generation" => self.generation, "error" => %wire::error_chain(&e));
                self.phase = Phase::Unjoined;
                self.wait_until = Some(now + self.join_backoff.next_with(&mut *self.rng));
                return;
            }
        };
        let mut partitions: Vec<i32> = Vec::new();
        for (topic, parts) in topics {
            if topic == self.topic {
                partitions.extend(parts);
            } else {
                warn!(self.log, "assignment names a topic we do not consume; ignored"; "topic" => topic);
            }
        }
        partitions.sort_unstable();
        partitions.dedup();
        self.phase = Phase::Stable;
        self.owned.clone_from(&partitions);
        self.claim = (partitions.clone(), self.generation);
        self.last_alive = sent;
        self.next_heartbeat = now + self.heartbeat_interval;
        self.heartbeat = None;
        self.join_backoff = Backoff::new(RETRY_BACKOFF);
        info!(self.log, "joined generation";
            "member" => &self.member_id, "generation" => self.generation,
            "leader" => self.leader.is_some(), "partitions" => ?partitions);
        self.emit(
            Event::Assigned {
                generation: self.generation,
                member_id: self.member_id.clone(),
                partitions,
            },
            out,
        );
    }

    fn on_heartbeat(
        &mut self,
        now: Instant,
        seq: u64,
        result: Result<(), wire::Error>,
        out: &mut Vec<Action>,
    ) {
        let Some((expected, sent)) = self.heartbeat else {
            return;
        };
        if seq != expected {
            return;
        }
        self.heartbeat = None;
        if !self.phase.in_generation() {
            return;
        }
        match result {
            Ok(()) => {
                self.last_alive = sent;
                self.next_heartbeat = sent + self.heartbeat_interval;
            }
            Err(e) => {
                let class = classify(&e);
                if class == Class::Rebalance {
                    // The coordinator checked our id and generation and restarted our session
                    // clock before answering so (it does during PreparingRebalance): a live
                    // heartbeat, which keeps a long revoke from looking like an expired session.
                    self.last_alive = sent;
                    self.next_heartbeat = sent + self.heartbeat_interval;
                } else {
                    self.next_heartbeat = now + self.heartbeat_interval.min(HEARTBEAT_RETRY);
                }
                self.on_member_error(now, "Heartbeat", class, &wire::error_chain(&e), out);
            }
        }
    }

    fn on_left(&mut self, seq: u64, result: Result<(), wire::Error>) {
        if !matches!(self.phase, Phase::Leaving { seq: s } if s == seq) {
            return;
        }
        match result {
            Ok(()) => {
                info!(self.log, "left group"; "member" => &self.member_id, "generation" => self.generation)
            }
            Err(e) => {
                warn!(self.log, "LeaveGroup failed; the coordinator drops us after the session timeout";
                "member" => &self.member_id, "error" => %wire::error_chain(&e))
            }
        }
        self.phase = Phase::Stopped;
    }

    fn on_side_failure(
        &mut self,
        now: Instant,
        epoch: u64,
        membership: Option<(String, i32)>,
        class: Class,
        detail: &str,
        out: &mut Vec<Action>,
    ) {
        match class {
            Class::Coordinator => {
                if self.coordinator == (Coordinator::Known { epoch }) {
                    self.lose_coordinator(now);
                }
            }
            Class::Rebalance | Class::IllegalGeneration | Class::UnknownMember | Class::Fenced => {
                let current = membership
                    .as_ref()
                    .is_some_and(|(id, generation)| *id == self.member_id && *generation == self.generation);
                if current && self.phase.in_generation() {
                    self.on_member_error(now, "OffsetCommit", class, detail, out);
                }
            }
            Class::Loading | Class::Fatal | Class::Transient => {}
        }
    }

    /// An error while joining, assigning or syncing: we own nothing, so it is only about how
    /// and when to join again.
    fn on_rejoin_error(&mut self, now: Instant, api: &'static str, e: wire::Error, out: &mut Vec<Action>) {
        self.phase = Phase::Unjoined;
        let class = classify(&e);
        let chain = wire::error_chain(&e);
        let (member, generation) = (self.member_id.clone(), self.generation);
        match class {
            Class::UnknownMember => {
                info!(self.log, "coordinator does not know our member id; joining as a new member";
                    "api" => api, "member" => member);
                self.reset_membership();
            }
            Class::IllegalGeneration => {
                info!(self.log, "generation moved on; rejoining"; "api" => api, "member" => member, "generation" => generation);
                self.generation = -1;
                self.claim = (Vec::new(), -1);
            }
            Class::Rebalance => {
                info!(self.log, "group is rebalancing again; rejoining"; "api" => api, "member" => member);
                self.wait_until = Some(now + self.join_backoff.next_with(&mut *self.rng));
            }
            Class::Fenced => self.fenced(api, &chain, out),
            Class::Coordinator => {
                warn!(self.log, "lost the group coordinator"; "api" => api, "member" => member, "error" => chain);
                self.lose_coordinator(now);
            }
            Class::Loading => {
                info!(self.log, "coordinator is loading the group; retrying"; "api" => api);
                self.wait_until = Some(now + self.join_backoff.next_with(&mut *self.rng));
            }
            Class::Fatal => {
                error!(self.log, "cannot join the group; fix the configuration or ACLs";
                    "api" => api, "member" => member, "error" => chain, "retry_in" => ?FATAL_RETRY);
                self.wait_until = Some(now + FATAL_RETRY);
            }
            Class::Transient => {
                let delay = self.join_backoff.next_with(&mut *self.rng);
                warn!(self.log, "group request failed; rejoining";
                    "api" => api, "member" => member, "error" => chain, "retry_in" => ?delay);
                self.wait_until = Some(now + delay);
            }
        }
    }

    /// An error from a heartbeat or commit while we hold a generation.
    fn on_member_error(
        &mut self,
        now: Instant,
        api: &'static str,
        class: Class,
        chain: &str,
        out: &mut Vec<Action>,
    ) {
        let (member, generation) = (self.member_id.clone(), self.generation);
        match class {
            Class::Rebalance => {
                if matches!(self.phase, Phase::Stable) {
                    info!(self.log, "group is rebalancing"; "api" => api, "member" => member, "generation" => generation);
                    self.begin_rebalance(now, "group is rebalancing", out);
                }
            }
            Class::IllegalGeneration | Class::UnknownMember => {
                warn!(self.log, "membership lost; partitions lost"; "api" => api, "member" => member,
                    "generation" => generation, "error" => chain, "partitions" => ?self.owned);
                self.lose_partitions(out);
                if class == Class::UnknownMember {
                    self.reset_membership();
                }
                self.generation = -1;
                if matches!(
                    self.phase,
                    Phase::Revoking {
                        then: After::Leave,
                        ..
                    }
                ) {
                    self.leave_now(false, out);
                } else {
                    self.rejoin_reason = format!("{api} said {chain}");
                    self.phase = Phase::Unjoined;
                }
            }
            Class::Fenced => self.fenced(api, chain, out),
            Class::Coordinator => {
                warn!(self.log, "lost the group coordinator; keeping membership while the session lasts";
                    "api" => api, "member" => member, "generation" => generation, "error" => chain);
                self.lose_coordinator(now);
            }
            Class::Loading | Class::Transient | Class::Fatal => {
                warn!(self.log, "group request failed"; "api" => api, "member" => member,
                    "generation" => generation, "error" => chain);
            }
        }
    }

    fn fenced(&mut self, api: &'static str, chain: &str, out: &mut Vec<Action>) {
        error!(self.log, "fenced by another instance with our group.instance.id; stopping";
            "api" => api, "member" => &self.member_id, "error" => chain);
        self.lose_partitions(out);
        self.phase = Phase::Stopped;
    }

    /// Stable → rejoin, through a revoke if we own partitions.
    fn begin_rebalance(&mut self, now: Instant, reason: &str, out: &mut Vec<Action>) {
        reason.clone_into(&mut self.rejoin_reason);
        self.begin_revoke(now, After::Rejoin, out);
    }

    fn begin_revoke(&mut self, now: Instant, then: After, out: &mut Vec<Action>) {
        if self.owned.is_empty() || self.events_closed {
            self.owned.clear();
            match then {
                After::Rejoin => self.phase = Phase::Unjoined,
                After::Leave => self.leave_now(false, out),
            }
            return;
        }
        let token = self.seq();
        self.phase = Phase::Revoking {
            token,
            deadline: now + self.revoke_timeout,
            then,
        };
        self.emit(
            Event::Revoke {
                token,
                partitions: self.owned.clone(),
            },
            out,
        );
    }

    fn finish_revoke(&mut self, _now: Instant, out: &mut Vec<Action>) {
        let Phase::Revoking { then, .. } = self.phase else {
            return;
        };
        self.owned.clear();
        match then {
            After::Rejoin => self.phase = Phase::Unjoined,
            After::Leave => self.leave_now(false, out),
        }
    }

    fn session_expired(&mut self, _now: Instant, out: &mut Vec<Action>) {
        warn!(self.log, "no successful heartbeat within the session timeout; partitions lost";
            "member" => &self.member_id, "generation" => self.generation,
            "session_timeout" => ?self.session_timeout, "partitions" => ?self.owned);
        self.lose_partitions(out);
        self.heartbeat = None;
        // Keep the member id: if the coordinator still knows us the rejoin is cheaper; if not it
        // answers UNKNOWN_MEMBER_ID and we start over.
        self.generation = -1;
        if matches!(
            self.phase,
            Phase::Revoking {
                then: After::Leave,
                ..
            }
        ) {
            self.leave_now(false, out);
        } else {
            self.rejoin_reason = "session expired without heartbeats".to_owned();
            self.phase = Phase::Unjoined;
        }
    }

    fn on_stop(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        info!(self.log, "stopping"; "member" => &self.member_id, "generation" => self.generation);
        self.shutdown(now, out);
    }

    fn on_events_closed(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.events_closed {
            return;
        }
        self.events_closed = true;
        // Nobody consumes the partitions any more; there is no one to revoke them from.
        self.owned.clear();
        if !self.stopping {
            warn!(self.log, "event receiver dropped; leaving the group"; "member" => &self.member_id);
        }
        self.stopping = true;
        self.shutdown(now, out);
    }

    fn shutdown(&mut self, now: Instant, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Stable => self.begin_revoke(now, After::Leave, out),
            Phase::Revoking { then, .. } => {
                *then = After::Leave;
                if self.events_closed {
                    self.finish_revoke(now, out);
                }
            }
            Phase::Joining { .. } | Phase::Assigning { .. } | Phase::Syncing { .. } => {
                self.leave_now(true, out)
            }
            Phase::Unjoined => self.leave_now(false, out),
            Phase::Leaving { .. } | Phase::Stopped => {}
        }
    }

    /// Sends LeaveGroup if there is a member id and a coordinator to tell; else just stops.
    fn leave_now(&mut self, fresh_connection: bool, out: &mut Vec<Action>) {
        if self.member_id.is_empty() || !matches!(self.coordinator, Coordinator::Known { .. }) {
            info!(self.log, "stopped without LeaveGroup (no member id or no coordinator)";
                "member" => &self.member_id);
            self.phase = Phase::Stopped;
            return;
        }
        let seq = self.seq();
        self.phase = Phase::Leaving { seq };
        out.push(Action::LeaveGroup {
            seq,
            member_id: self.member_id.clone(),
            fresh_connection,
        });
    }

    fn lose_partitions(&mut self, out: &mut Vec<Action>) {
        if !self.owned.is_empty() {
            let partitions = std::mem::take(&mut self.owned);
            self.emit(Event::Lost { partitions }, out);
        }
        self.claim = (Vec::new(), -1);
    }

    fn reset_membership(&mut self) {
        self.member_id.clear();
        self.generation = -1;
        self.claim = (Vec::new(), -1);
    }

    fn lose_coordinator(&mut self, now: Instant) {
        self.coordinator = Coordinator::Unknown;
        self.heartbeat = None;
        if let Some(check) = &mut self.leader {
            check.inflight = None;
        }
        let delay = self.find_backoff.next_with(&mut *self.rng);
        let until = now + delay;
        self.wait_until = Some(self.wait_until.map_or(until, |w| w.max(until)));
    }
}

/// The topics of all decodable subscriptions, sorted, each once.
fn subscribed_topics(members: &[(String, Option<Subscription>)]) -> Vec<String> {
    members
        .iter()
        .filter_map(|(_, sub)| sub.as_ref())
        .flat_map(|sub| sub.topics.iter().cloned())
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    use super::*;
    use crate::backoff::test_rng::{OnesRng, ZeroRng};
    use crate::kafka::wire::PoisonReason;

    const SESSION: Duration = Duration::from_secs(6);
    const HB: Duration = Duration::from_secs(1);
    const REVOKE: Duration = Duration::from_secs(5);

    fn config() -> GroupConfig {
        GroupConfig {
            connect: crate::kafka::connect::KafkaConnect::plaintext(
                vec!["127.0.0.1:9092".to_owned()],
                "test",
                Duration::from_secs(5),
            ),
            group_id: "g".to_owned(),
            topic: "calls".to_owned(),
            session_timeout: SESSION,
            heartbeat_interval: HB,
            rebalance_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            assignor: AssignorKind::Sticky,
            revoke_timeout: REVOKE,
        }
    }

    fn server(api: ApiKey, error: ResponseError) -> wire::Error {
        wire::Error::server(api, error.code(), None)
    }

    fn broken() -> wire::Error {
        wire::Error::Poisoned {
            addr: "127.0.0.1:9092".to_owned(),
            reason: PoisonReason::Transport,
        }
    }

    /// A member plus a clock.
    struct H {
        m: Member,
        now: Instant,
    }

    impl H {
        fn new() -> Self {
            Self::with_rng(Box::new(ZeroRng))
        }

        fn with_rng(rng: Box<dyn RngCore + Send>) -> Self {
            let now = Instant::now();
            Self {
                m: Member::new(&config(), slog::Logger::root(slog::Discard, slog::o!()), now, rng),
                now,
            }
        }

        fn input(&mut self, input: Input) -> Vec<Action> {
            self.m.handle(self.now, input)
        }

        fn advance(&mut self, d: Duration) -> Vec<Action> {
            self.now += d;
            self.input(Input::Tick)
        }

        /// Tick → FindCoordinator → found; returns the actions after `found` (a JoinGroup).
        fn connect(&mut self) -> Vec<Action> {
            let seq = find_seq(&self.input(Input::Tick));
            self.input(Input::CoordinatorFound { seq, result: Ok(()) })
        }

        /// From nothing to Stable as a follower with `partitions` in generation `generation`.
        fn stable(&mut self, generation: i32, partitions: &[i32]) -> Vec<Action> {
            let join = join_seq(&self.connect());
            let join = join_seq(&self.input(Input::Joined {
                seq: join,
                result: Ok(JoinOutcome::MemberIdRequired {
                    member_id: "m1".to_owned(),
                }),
            }));
            let sync = sync_seq(&self.input(Input::Joined {
                seq: join,
                result: Ok(joined(generation, "m1", "m0", &[])),
            }));
            self.input(Input::Synced {
                seq: sync,
                result: Ok(codec::encode_assignment(&[("calls", partitions)])),
            })
        }

        /// Runs ticks until a heartbeat goes out; returns its seq.
        fn next_heartbeat(&mut self) -> u64 {
            for _ in 0..100 {
                let actions = self.advance(Duration::from_millis(100));
                if let Some(seq) = actions.iter().find_map(|a| match a {
                    Action::Heartbeat { seq, .. } => Some(*seq),
                    _ => None,
                }) {
                    return seq;
                }
            }
            panic!("no heartbeat in 10 s: {:?}", self.m);
        }
    }

    fn joined(generation: i32, member: &str, leader: &str, members: &[(&str, Bytes)]) -> JoinOutcome {
        JoinOutcome::Joined {
            generation,
            member_id: member.to_owned(),
            leader: leader.to_owned(),
            protocol: Some("sticky".to_owned()),
            members: members
                .iter()
                .map(|(id, b)| ((*id).to_owned(), b.clone()))
                .collect(),
        }
    }

    fn find_seq(actions: &[Action]) -> u64 {
        match actions {
            [Action::FindCoordinator { seq }] => *seq,
            other => panic!("expected FindCoordinator, got {other:?}"),
        }
    }

    fn join_seq(actions: &[Action]) -> u64 {
        match actions {
            [Action::JoinGroup { seq, .. }] => *seq,
            other => panic!("expected JoinGroup, got {other:?}"),
        }
    }

    fn join_member(actions: &[Action]) -> String {
        match actions {
            [Action::JoinGroup { member_id, .. }] => member_id.clone(),
            other => panic!("expected JoinGroup, got {other:?}"),
        }
    }

    fn sync_seq(actions: &[Action]) -> u64 {
        match actions {
            [Action::SyncGroup { seq, .. }] => *seq,
            other => panic!("expected SyncGroup, got {other:?}"),
        }
    }

    fn revoke_token(actions: &[Action]) -> (u64, Vec<i32>) {
        match actions {
            [Action::Emit(Event::Revoke { token, partitions })] => (*token, partitions.clone()),
            other => panic!("expected Revoke, got {other:?}"),
        }
    }

    fn claimed(actions: &[Action]) -> Subscription {
        match actions {
            [Action::JoinGroup { protocols, .. }] => codec::decode_subscription(&protocols[0].1).unwrap(),
            other => panic!("expected JoinGroup, got {other:?}"),
        }
    }

    #[test]
    fn follower_happy_path_with_member_id_required() {
        let mut h = H::new();
        assert!(
            h.m.next_deadline().is_none(),
            "nothing to wait for before the first tick"
        );
        let join = h.connect();
        let [
            Action::JoinGroup {
                seq,
                member_id,
                protocols,
                ..
            },
        ] = &join[..]
        else {
            panic!("{join:?}");
        };
        assert_eq!(member_id, "");
        let names: Vec<_> = protocols.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["sticky", "range", "roundrobin"]);
        let sub = codec::decode_subscription(&protocols[0].1).unwrap();
        assert_eq!(sub.topics, ["calls"]);
        assert!(sub.owned.is_empty());
        assert!(matches!(
            h.m.commit_target(),
            Err(CommitError::RebalanceInProgress)
        ));

        // KIP-394: the first answer only hands us an id; the retry carries it.
        let again = h.input(Input::Joined {
            seq: *seq,
            result: Ok(JoinOutcome::MemberIdRequired {
                member_id: "m1".to_owned(),
            }),
        });
        assert_eq!(join_member(&again), "m1");
        let sync = h.input(Input::Joined {
            seq: join_seq(&again),
            result: Ok(joined(3, "m1", "m0", &[])),
        });
        let [
            Action::SyncGroup {
                seq,
                generation: 3,
                member_id,
                protocol: "sticky",
                assignments,
            },
        ] = &sync[..]
        else {
            panic!("{sync:?}");
        };
        assert_eq!(member_id, "m1");
        assert!(assignments.is_empty(), "followers send no assignments");
        assert_eq!(h.m.joined_members(), 1, "a follower knows only itself");
        let done = h.input(Input::Synced {
            seq: *seq,
            result: Ok(codec::encode_assignment(&[("calls", [4, 1])])),
        });
        assert_eq!(
            done,
            [Action::Emit(Event::Assigned {
                generation: 3,
                member_id: "m1".to_owned(),
                partitions: vec![1, 4],
            })]
        );
        assert_eq!(h.m.current(), Some(("m1".to_owned(), 3)));
        assert_eq!(
            h.m.commit_target().ok(),
            Some(CommitTarget {
                member_id: "m1".to_owned(),
                generation: 3,
                epoch: 1
            })
        );
        // First heartbeat one interval later, then every interval after a success.
        assert_eq!(h.m.next_deadline(), Some(h.now + HB));
        assert!(h.advance(HB - Duration::from_millis(1)).is_empty());
        let hb = h.advance(Duration::from_millis(1));
        let [
            Action::Heartbeat {
                seq, generation: 3, ..
            },
        ] = &hb[..]
        else {
            panic!("{hb:?}");
        };
        assert!(
            h.input(Input::Heartbeat {
                seq: *seq,
                result: Ok(())
            })
            .is_empty()
        );
        assert_eq!(h.m.next_deadline(), Some(h.now + HB));
    }

    fn counts(pairs: &[(&str, Option<i32>)]) -> BTreeMap<String, Option<i32>> {
        pairs.iter().map(|(t, c)| ((*t).to_owned(), *c)).collect()
    }

    fn fetch(actions: &[Action]) -> (u64, Vec<String>) {
        match actions {
            [Action::FetchPartitionCounts { seq, topics }] => (*seq, topics.clone()),
            other => panic!("expected FetchPartitionCounts, got {other:?}"),
        }
    }

    /// Member id → its (topic, partitions), in SyncGroup order.
    type Plan = Vec<(String, Vec<(String, Vec<i32>)>)>;

    /// Each member's decoded assignment, in SyncGroup order.
    fn sync_plan(actions: &[Action]) -> Plan {
        match actions {
            [Action::SyncGroup { assignments, .. }] => assignments
                .iter()
                .map(|(id, b)| (id.clone(), codec::decode_assignment(b).unwrap()))
                .collect(),
            other => panic!("expected SyncGroup, got {other:?}"),
        }
    }

    type Assigned<'a> = &'a [(&'a str, &'a [i32])];

    /// Plan entries from literals.
    fn plan(entries: &[(&str, Assigned<'_>)]) -> Plan {
        entries
            .iter()
            .map(|(id, assigned)| {
                let assigned = assigned
                    .iter()
                    .map(|(t, p)| ((*t).to_owned(), p.to_vec()))
                    .collect();
                ((*id).to_owned(), assigned)
            })
            .collect()
    }

    /// Connects and joins as the leader "m0" of `members` with `protocol`; returns the fetch.
    fn lead(h: &mut H, generation: i32, protocol: &str, members: &[(&str, Bytes)]) -> (u64, Vec<String>) {
        let join = join_seq(&h.connect());
        let mut outcome = joined(generation, "m0", "m0", members);
        if let JoinOutcome::Joined { protocol: p, .. } = &mut outcome {
            *p = Some(protocol.to_owned());
        }
        fetch(&h.input(Input::Joined {
            seq: join,
            result: Ok(outcome),
        }))
    }

    /// Heartbeats (answered) until the leader's metadata check goes out; returns it.
    fn next_check(h: &mut H) -> (u64, Vec<String>) {
        for _ in 0..200 {
            h.now += Duration::from_millis(500);
            let mut check = None;
            for a in h.input(Input::Tick) {
                match a {
                    Action::Heartbeat { seq, .. } => {
                        h.input(Input::Heartbeat { seq, result: Ok(()) });
                    }
                    Action::FetchPartitionCounts { seq, topics } => check = Some((seq, topics)),
                    other => panic!("{other:?}"),
                }
            }
            if let Some(check) = check {
                return check;
            }
        }
        panic!("no metadata check in 100 s: {:?}", h.m);
    }

    /// A subscription to several topics (as a Java member may send), with owned partitions.
    fn multi_subscription(topics: &[&str], owned: &[(&str, &[i32])], generation: i32) -> Bytes {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let body = ConsumerProtocolSubscription::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| StrBytes::from_string((*t).to_owned()))
                    .collect(),
            )
            .with_owned_partitions(
                owned
                    .iter()
                    .map(|(t, p)| {
                        TopicPartition::default()
                            .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_string(
                                (*t).to_owned(),
                            )))
                            .with_partitions(p.to_vec())
                    })
                    .collect(),
            )
            .with_generation_id(generation);
        let mut buf = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut buf, codec::SUBSCRIPTION_VERSION);
        body.encode(&mut buf, codec::SUBSCRIPTION_VERSION).unwrap();
        buf.freeze()
    }

    #[test]
    fn leader_assigns_every_member_including_undecodable_ones() {
        let mut h = H::new();
        let members = [
            ("m0", codec::encode_subscription("calls", &[0, 1, 2], 2)),
            ("m1", codec::encode_subscription("calls", &[], -1)),
            ("bad", Bytes::from_static(&[0, 3, 0xff])),
            ("other", codec::encode_subscription("elsewhere", &[], -1)),
        ];
        let (seq, topics) = lead(&mut h, 3, "sticky", &members);
        assert_eq!(topics, ["calls", "elsewhere"]);
        assert_eq!(h.m.joined_members(), 4, "the leader knows every member");
        let sync = h.input(Input::PartitionCounts {
            seq,
            result: Ok(counts(&[("calls", Some(4)), ("elsewhere", Some(2))])),
        });
        assert!(matches!(&sync[..], [Action::SyncGroup { member_id, .. }] if member_id == "m0"));
        // Sticky: m0 keeps two of its three, m1 gets the rest; "other" all of its topic; the
        // undecodable member nothing.
        assert_eq!(
            sync_plan(&sync),
            plan(&[
                ("m0", &[("calls", &[0, 1])]),
                ("m1", &[("calls", &[2, 3])]),
                ("bad", &[]),
                ("other", &[("elsewhere", &[0, 1])]),
            ])
        );
    }

    #[test]
    fn leader_assigns_two_members_on_different_topics_their_own_partitions() {
        let mut h = H::new();
        let members = [
            ("m0", codec::encode_subscription("calls", &[], -1)),
            ("m1", codec::encode_subscription("audit", &[], -1)),
        ];
        let (seq, topics) = lead(&mut h, 1, "sticky", &members);
        assert_eq!(
            topics,
            ["audit", "calls"],
            "the union of the subscriptions, sorted"
        );
        let sync = h.input(Input::PartitionCounts {
            seq,
            result: Ok(counts(&[("audit", Some(2)), ("calls", Some(3))])),
        });
        let got = sync_plan(&sync);
        assert_eq!(
            got,
            plan(&[("m0", &[("calls", &[0, 1, 2])]), ("m1", &[("audit", &[0, 1])]),])
        );
        // Our own share reaches the consumer.
        let assigned = h.input(Input::Synced {
            seq: sync_seq(&sync),
            result: Ok(codec::encode_assignment(&got[0].1)),
        });
        assert!(
            matches!(&assigned[..], [Action::Emit(Event::Assigned { partitions, .. })] if partitions == &[0, 1, 2])
        );
    }

    #[test]
    fn leader_runs_the_assignor_per_topic_over_its_subscribers() {
        let mut h = H::new();
        let members = [
            ("m0", codec::encode_subscription("calls", &[], -1)),
            ("m1", codec::encode_subscription("calls", &[], -1)),
            ("m2", codec::encode_subscription("audit", &[], -1)),
        ];
        let (seq, topics) = lead(&mut h, 1, "range", &members);
        assert_eq!(topics, ["audit", "calls"]);
        let sync = h.input(Input::PartitionCounts {
            seq,
            result: Ok(counts(&[("audit", Some(3)), ("calls", Some(4))])),
        });
        assert!(
            matches!(
                &sync[..],
                [Action::SyncGroup {
                    protocol: "range",
                    ..
                }]
            ),
            "{sync:?}"
        );
        // Range per topic: calls split between its two subscribers, audit all to m2 (not
        // spread over the three members).
        assert_eq!(
            sync_plan(&sync),
            plan(&[
                ("m0", &[("calls", &[0, 1])]),
                ("m1", &[("calls", &[2, 3])]),
                ("m2", &[("audit", &[0, 1, 2])]),
            ])
        );
    }

    #[test]
    fn sticky_keeps_owned_partitions_per_topic() {
        let mut h = H::new();
        // "x" (a Java member, say) subscribes to both topics and owned some of each, plus a
        // partition of a topic nobody subscribes to any more.
        let members = [
            ("m0", codec::encode_subscription("calls", &[], -1)),
            (
                "x",
                multi_subscription(
                    &["calls", "audit"],
                    &[("calls", &[1]), ("audit", &[0]), ("gone", &[0])],
                    4,
                ),
            ),
            ("m2", codec::encode_subscription("audit", &[], -1)),
        ];
        let (seq, topics) = lead(&mut h, 5, "sticky", &members);
        assert_eq!(topics, ["audit", "calls"], "owned topics are not subscriptions");
        let sync = h.input(Input::PartitionCounts {
            seq,
            result: Ok(counts(&[("audit", Some(2)), ("calls", Some(2))])),
        });
        // x keeps calls 1 and audit 0 (its audit claim does not stand for calls 0); the
        // others get the rest of their topic.
        assert_eq!(
            sync_plan(&sync),
            plan(&[
                ("m0", &[("calls", &[0])]),
                ("x", &[("audit", &[0]), ("calls", &[1])]),
                ("m2", &[("audit", &[1])]),
            ])
        );
    }

    #[test]
    fn a_missing_topic_assigns_nothing_of_it_and_does_not_block_the_others() {
        let mut h = H::new();
        let members = [
            ("m0", codec::encode_subscription("calls", &[], -1)),
            ("m1", codec::encode_subscription("audit", &[], -1)),
            ("m2", codec::encode_subscription("ghost", &[1], 3)),
        ];
        let (seq, _) = lead(&mut h, 4, "sticky", &members);
        // "audit" does not exist; "ghost" is absent from the answer, which means the same.
        let sync = h.input(Input::PartitionCounts {
            seq,
            result: Ok(counts(&[("audit", None), ("calls", Some(2))])),
        });
        assert_eq!(
            sync_plan(&sync),
            plan(&[("m0", &[("calls", &[0, 1])]), ("m1", &[]), ("m2", &[]),])
        );
        assert_eq!(
            h.m.missing_topics.iter().collect::<Vec<_>>(),
            ["audit", "ghost"],
            "warned about once"
        );
        // Both stay watched: the check asks for every subscribed topic.
        h.input(Input::Synced {
            seq: sync_seq(&sync),
            result: Ok(codec::encode_assignment(&[("calls", [0, 1])])),
        });
        let asked = h.now;
        let (_, topics) = next_check(&mut h);
        assert_eq!(topics, ["audit", "calls", "ghost"]);
        assert!(
            h.now - asked <= MISSING_TOPIC_CHECK_INTERVAL,
            "a missing topic is looked for again within a second"
        );
    }

    #[test]
    fn leader_rebalances_when_any_topic_partition_count_changes() {
        let mut h = H::new();
        let members = [
            ("m0", codec::encode_subscription("calls", &[], -1)),
            ("m1", codec::encode_subscription("audit", &[], -1)),
        ];
        let (seq, _) = lead(&mut h, 1, "sticky", &members);
        let assigned = counts(&[("audit", Some(2)), ("calls", Some(2))]);
        let sync = sync_seq(&h.input(Input::PartitionCounts {
            seq,
            result: Ok(assigned.clone()),
        }));
        h.input(Input::Synced {
            seq: sync,
            result: Ok(codec::encode_assignment(&[("calls", [0, 1])])),
        });
        // Unchanged counts: nothing; the next check comes one interval later.
        let (check, topics) = next_check(&mut h);
        assert_eq!(topics, ["audit", "calls"]);
        let asked = h.now;
        assert!(
            h.input(Input::PartitionCounts {
                seq: check,
                result: Ok(assigned),
            })
            .is_empty()
        );
        let (check, _) = next_check(&mut h);
        assert!(h.now - asked >= METADATA_CHECK_INTERVAL);
        // Only the other member's topic grew: we still revoke ours and rejoin.
        let out = h.input(Input::PartitionCounts {
            seq: check,
            result: Ok(counts(&[("audit", Some(3)), ("calls", Some(2))])),
        });
        let (token, partitions) = revoke_token(&out);
        assert_eq!(partitions, [0, 1]);
        let rejoin = h.input(Input::RevokeDone { token });
        assert!(
            matches!(&rejoin[..], [Action::JoinGroup { reason, .. }] if reason.contains("partition count"))
        );
    }

    #[test]
    fn leader_rebalances_when_the_partition_count_changes() {
        let mut h = H::new();
        let (seq, topics) = lead(
            &mut h,
            1,
            "sticky",
            &[("m0", codec::encode_subscription("calls", &[], -1))],
        );
        assert_eq!(topics, ["calls"]);
        // The topic does not exist yet: nothing to assign.
        let sync = h.input(Input::PartitionCounts {
            seq,
            result: Ok(counts(&[("calls", None)])),
        });
        assert_eq!(sync_plan(&sync), plan(&[("m0", &[])]));
        let assigned = h.input(Input::Synced {
            seq: sync_seq(&sync),
            result: Ok(codec::encode_assignment(&sync_plan(&sync)[0].1)),
        });
        assert!(
            matches!(&assigned[..], [Action::Emit(Event::Assigned { partitions, .. })] if partitions.is_empty())
        );
        let (check, topics) = next_check(&mut h);
        assert_eq!(topics, ["calls"]);
        // Created meanwhile with 3 partitions: rejoin (we own nothing, so no revoke).
        let rejoin = h.input(Input::PartitionCounts {
            seq: check,
            result: Ok(counts(&[("calls", Some(3))])),
        });
        assert!(
            matches!(&rejoin[..], [Action::JoinGroup { reason, .. }] if reason.contains("partition count"))
        );
    }

    #[test]
    fn our_member_takes_only_its_own_topic_from_the_assignment() {
        let mut h = H::new();
        let join = join_seq(&h.connect());
        let sync = sync_seq(&h.input(Input::Joined {
            seq: join,
            result: Ok(joined(2, "m1", "m0", &[])),
        }));
        let out = h.input(Input::Synced {
            seq: sync,
            result: Ok(codec::encode_assignment(&[
                ("audit".to_owned(), vec![0, 2]),
                ("calls".to_owned(), vec![3, 1]),
            ])),
        });
        assert!(
            matches!(&out[..], [Action::Emit(Event::Assigned { partitions, .. })] if partitions == &[1, 3]),
            "{out:?}"
        );
        // The next JoinGroup claims only those.
        let hb = h.next_heartbeat();
        let (token, partitions) = revoke_token(&h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
        }));
        assert_eq!(partitions, [1, 3]);
        let sub = claimed(&h.input(Input::RevokeDone { token }));
        assert_eq!(sub.owned, [("calls".to_owned(), vec![1, 3])]);
    }

    #[test]
    fn rebalance_revokes_keeps_heartbeating_then_rejoins_sticky() {
        let mut h = H::new();
        h.stable(5, &[0, 2]);
        let hb = h.next_heartbeat();
        let revoke = h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
        });
        let (token, partitions) = revoke_token(&revoke);
        assert_eq!(partitions, [0, 2]);
        // Commits still allowed with the old generation while revoking.
        assert_eq!(h.m.commit_target().ok().map(|t| t.generation), Some(5));
        assert_eq!(h.m.current(), None);
        // Heartbeats continue; their REBALANCE_IN_PROGRESS answers do not revoke twice.
        let hb = h.next_heartbeat();
        assert!(
            h.input(Input::Heartbeat {
                seq: hb,
                result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
            })
            .is_empty()
        );
        let join = h.input(Input::RevokeDone { token });
        assert_eq!(join_member(&join), "m1", "same member id");
        let sub = claimed(&join);
        assert_eq!(
            sub.owned_of("calls"),
            [0, 2],
            "claims the revoked partitions for stickiness"
        );
        assert_eq!(sub.generation, 5);
        assert!(matches!(
            h.m.commit_target(),
            Err(CommitError::RebalanceInProgress)
        ));
    }

    #[test]
    fn revoke_timeout_rejoins_anyway() {
        let mut h = H::new();
        h.stable(1, &[0]);
        let hb = h.next_heartbeat();
        revoke_token(&h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
        }));
        let mut rejoined = Duration::ZERO;
        let mut waited = Duration::ZERO;
        while rejoined == Duration::ZERO {
            waited += Duration::from_millis(100);
            for a in h.advance(Duration::from_millis(100)) {
                match a {
                    Action::Heartbeat { seq, .. } => {
                        h.input(Input::Heartbeat { seq, result: Ok(()) });
                    }
                    Action::JoinGroup { .. } => rejoined = waited,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(rejoined, REVOKE);
        // A late done is ignored.
        assert!(h.input(Input::RevokeDone { token: 0 }).is_empty());
    }

    #[test]
    fn a_revoke_longer_than_the_session_is_kept_alive_by_rebalancing_heartbeats() {
        let mut h = H::new();
        h.m.revoke_timeout = SESSION * 3;
        h.stable(1, &[0, 1]);
        let hb = h.next_heartbeat();
        let (token, _) = revoke_token(&h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
        }));
        let mut heartbeats = 0;
        for _ in 0..150 {
            // 15 s (2.5 sessions) of revoking, every heartbeat answered REBALANCE_IN_PROGRESS.
            for a in h.advance(Duration::from_millis(100)) {
                match a {
                    Action::Heartbeat { seq, .. } => {
                        heartbeats += 1;
                        let out = h.input(Input::Heartbeat {
                            seq,
                            result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
                        });
                        assert!(out.is_empty(), "{out:?}");
                    }
                    other => panic!("no Lost, no rejoin while revoking: {other:?}"),
                }
            }
        }
        assert_eq!(heartbeats, 15, "one per interval, not per retry delay");
        join_seq(&h.input(Input::RevokeDone { token }));
    }

    #[test]
    fn commit_rebalance_answer_also_revokes_but_stale_ones_are_ignored() {
        let mut h = H::new();
        h.stable(2, &[1]);
        let epoch = h.m.coordinator_epoch().unwrap();
        // From an older generation: ignored.
        assert!(
            h.input(Input::SideFailure {
                epoch,
                membership: Some(("m1".to_owned(), 1)),
                class: Class::IllegalGeneration,
                detail: String::new(),
            })
            .is_empty()
        );
        let out = h.input(Input::SideFailure {
            epoch,
            membership: Some(("m1".to_owned(), 2)),
            class: Class::Rebalance,
            detail: String::new(),
        });
        assert_eq!(revoke_token(&out).1, [1]);
    }

    #[test]
    fn illegal_generation_loses_partitions_and_rejoins_with_the_same_id() {
        let mut h = H::new();
        h.stable(2, &[1, 3]);
        let hb = h.next_heartbeat();
        let out = h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::IllegalGeneration)),
        });
        assert_eq!(
            out[0],
            Action::Emit(Event::Lost {
                partitions: vec![1, 3]
            })
        );
        assert_eq!(join_member(&out[1..]), "m1");
        assert!(claimed(&out[1..]).owned.is_empty(), "no claim on lost partitions");
        assert!(matches!(
            h.m.commit_target(),
            Err(CommitError::RebalanceInProgress)
        ));
    }

    #[test]
    fn unknown_member_loses_partitions_and_rejoins_as_new() {
        let mut h = H::new();
        h.stable(2, &[0]);
        let hb = h.next_heartbeat();
        let out = h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::UnknownMemberId)),
        });
        assert_eq!(out[0], Action::Emit(Event::Lost { partitions: vec![0] }));
        assert_eq!(join_member(&out[1..]), "");
        assert!(matches!(
            h.m.commit_target(),
            Err(CommitError::RebalanceInProgress)
        ));
    }

    #[test]
    fn fenced_loses_partitions_and_stops() {
        let mut h = H::new();
        h.stable(2, &[0]);
        let hb = h.next_heartbeat();
        let out = h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::FencedInstanceId)),
        });
        assert_eq!(out, [Action::Emit(Event::Lost { partitions: vec![0] })]);
        assert!(h.m.is_stopped());
        assert!(h.m.next_deadline().is_none());
        assert!(h.advance(Duration::from_secs(60)).is_empty());
        assert!(matches!(h.m.commit_target(), Err(CommitError::NotMember)));
    }

    #[test]
    fn errors_while_joining_or_syncing() {
        // (error, member id of the next JoinGroup; zero jitter makes backed-off ones immediate)
        let cases = [
            (ResponseError::UnknownMemberId, ""),
            (ResponseError::IllegalGeneration, "m1"),
            (ResponseError::RebalanceInProgress, "m1"),
            (ResponseError::CoordinatorLoadInProgress, "m1"),
            (ResponseError::UnknownServerError, "m1"),
        ];
        for in_sync in [false, true] {
            for (error, next) in cases {
                let mut h = H::new();
                let join = join_seq(&h.connect());
                let join = join_seq(&h.input(Input::Joined {
                    seq: join,
                    result: Ok(JoinOutcome::MemberIdRequired {
                        member_id: "m1".to_owned(),
                    }),
                }));
                let out = if in_sync {
                    let sync = sync_seq(&h.input(Input::Joined {
                        seq: join,
                        result: Ok(joined(3, "m1", "m0", &[])),
                    }));
                    h.input(Input::Synced {
                        seq: sync,
                        result: Err(server(ApiKey::SyncGroup, error)),
                    })
                } else {
                    h.input(Input::Joined {
                        seq: join,
                        result: Err(server(ApiKey::JoinGroup, error)),
                    })
                };
                assert!(
                    !out.iter().any(|a| matches!(a, Action::Emit(_))),
                    "{error:?}: {out:?}"
                );
                assert_eq!(join_member(&out), next, "{error:?} in_sync={in_sync}");
            }
        }
    }

    #[test]
    fn fatal_join_errors_retry_after_a_long_pause() {
        for error in [
            ResponseError::InconsistentGroupProtocol,
            ResponseError::InvalidSessionTimeout,
            ResponseError::GroupAuthorizationFailed,
            ResponseError::GroupMaxSizeReached,
        ] {
            let mut h = H::new();
            let join = join_seq(&h.connect());
            let out = h.input(Input::Joined {
                seq: join,
                result: Err(server(ApiKey::JoinGroup, error)),
            });
            assert!(out.is_empty(), "{error:?}");
            assert!(!h.m.is_stopped());
            assert_eq!(h.m.next_deadline(), Some(h.now + FATAL_RETRY));
            assert!(h.advance(FATAL_RETRY - Duration::from_millis(1)).is_empty());
            join_seq(&h.advance(Duration::from_millis(1)));
        }
    }

    #[test]
    fn fenced_while_joining_stops() {
        let mut h = H::new();
        let join = join_seq(&h.connect());
        let out = h.input(Input::Joined {
            seq: join,
            result: Err(server(ApiKey::JoinGroup, ResponseError::FencedInstanceId)),
        });
        assert!(out.is_empty());
        assert!(h.m.is_stopped());
    }

    #[test]
    fn coordinator_errors_while_joining_refind_then_rejoin() {
        for error in [
            server(ApiKey::JoinGroup, ResponseError::NotCoordinator),
            server(ApiKey::JoinGroup, ResponseError::CoordinatorNotAvailable),
            broken(),
        ] {
            let mut h = H::new();
            let join = join_seq(&h.connect());
            let find = find_seq(&h.input(Input::Joined {
                seq: join,
                result: Err(error),
            }));
            let rejoin = h.input(Input::CoordinatorFound {
                seq: find,
                result: Ok(()),
            });
            assert_eq!(join_member(&rejoin), "");
            assert_eq!(h.m.coordinator_epoch(), Some(2));
        }
    }

    #[test]
    fn coordinator_lost_while_stable_keeps_membership() {
        let mut h = H::new();
        h.stable(4, &[0, 1]);
        let hb = h.next_heartbeat();
        let out = h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::NotCoordinator)),
        });
        let find = find_seq(&out);
        assert!(matches!(
            h.m.commit_target(),
            Err(CommitError::Coordinator(GroupError::NoCoordinator))
        ));
        // A commit failure from the old connection cannot touch the new one.
        assert!(
            h.input(Input::CoordinatorFound {
                seq: find,
                result: Ok(())
            })
            .is_empty()
        );
        assert!(
            h.input(Input::SideFailure {
                epoch: 1,
                membership: None,
                class: Class::Coordinator,
                detail: String::new(),
            })
            .is_empty()
        );
        assert_eq!(h.m.coordinator_epoch(), Some(2));
        // Heartbeats resume in the same generation; nothing was lost.
        let hb = h.next_heartbeat();
        assert!(
            h.input(Input::Heartbeat {
                seq: hb,
                result: Ok(())
            })
            .is_empty()
        );
        assert_eq!(h.m.current(), Some(("m1".to_owned(), 4)));
    }

    #[test]
    fn coordinator_lookups_back_off() {
        let mut h = H::with_rng(Box::new(OnesRng));
        let find = find_seq(&h.input(Input::Tick));
        let out = h.input(Input::CoordinatorFound {
            seq: find,
            result: Err(server(
                ApiKey::FindCoordinator,
                ResponseError::CoordinatorNotAvailable,
            )),
        });
        assert!(out.is_empty());
        // OnesRng: the delay is the ceiling, 100 ms, then 200 ms.
        assert!(h.advance(Duration::from_millis(99)).is_empty());
        let find = find_seq(&h.advance(Duration::from_millis(1)));
        h.input(Input::CoordinatorFound {
            seq: find,
            result: Err(broken()),
        });
        assert!(h.advance(Duration::from_millis(199)).is_empty());
        let find = find_seq(&h.advance(Duration::from_millis(1)));
        // An authorization failure waits long.
        h.input(Input::CoordinatorFound {
            seq: find,
            result: Err(server(
                ApiKey::FindCoordinator,
                ResponseError::GroupAuthorizationFailed,
            )),
        });
        assert_eq!(h.m.next_deadline(), Some(h.now + FATAL_RETRY));
    }

    #[test]
    fn load_in_progress_retries_the_same_coordinator() {
        let mut h = H::with_rng(Box::new(OnesRng));
        let join = join_seq(&h.connect());
        let out = h.input(Input::Joined {
            seq: join,
            result: Err(server(
                ApiKey::JoinGroup,
                ResponseError::CoordinatorLoadInProgress,
            )),
        });
        assert!(out.is_empty());
        assert_eq!(h.m.coordinator_epoch(), Some(1));
        join_seq(&h.advance(Duration::from_millis(100)));
        assert_eq!(h.m.coordinator_epoch(), Some(1), "no FindCoordinator");
    }

    #[test]
    fn failing_heartbeats_lose_partitions_after_the_session_timeout() {
        let mut h = H::new();
        h.stable(2, &[0, 1]);
        let started = h.now;
        let mut lost_at = None;
        while lost_at.is_none() {
            for a in h.advance(Duration::from_millis(100)) {
                match a {
                    Action::Heartbeat { seq, .. } => {
                        let out = h.input(Input::Heartbeat {
                            seq,
                            result: Err(server(ApiKey::Heartbeat, ResponseError::UnknownServerError)),
                        });
                        assert!(out.is_empty(), "{out:?}");
                    }
                    Action::Emit(Event::Lost { partitions }) => {
                        assert_eq!(partitions, [0, 1]);
                        lost_at = Some(h.now);
                    }
                    Action::JoinGroup { member_id, .. } => assert_eq!(member_id, "m1"),
                    other => panic!("{other:?}"),
                }
            }
        }
        // The last success was the SyncGroup, sent at `started`.
        assert_eq!(lost_at.unwrap() - started, SESSION);
        assert!(matches!(
            h.m.commit_target(),
            Err(CommitError::RebalanceInProgress)
        ));
    }

    #[test]
    fn unreachable_coordinator_loses_partitions_after_the_session_timeout() {
        let mut h = H::new();
        h.stable(2, &[7]);
        let started = h.now;
        let hb = h.next_heartbeat();
        let mut pending = Some(find_seq(&h.input(Input::Heartbeat {
            seq: hb,
            result: Err(broken()),
        })));
        let (mut lost, mut finds) = (false, 1);
        while !lost {
            let mut actions = match pending.take() {
                Some(seq) => h.input(Input::CoordinatorFound {
                    seq,
                    result: Err(broken()),
                }),
                None => Vec::new(),
            };
            actions.extend(h.advance(Duration::from_millis(100)));
            for a in actions {
                match a {
                    Action::FindCoordinator { seq } => {
                        finds += 1;
                        pending = Some(seq);
                    }
                    Action::Emit(Event::Lost { partitions }) => {
                        assert_eq!(partitions, [7]);
                        assert_eq!(h.now - started, SESSION);
                        lost = true;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        assert!(finds > 10, "kept looking: {finds}");
    }

    #[test]
    fn stop_when_stable_revokes_then_leaves() {
        let mut h = H::new();
        h.stable(2, &[0, 5]);
        let (token, partitions) = revoke_token(&h.input(Input::Stop));
        assert_eq!(partitions, [0, 5]);
        assert!(h.input(Input::Stop).is_empty(), "idempotent");
        // Commits are still allowed until done.
        assert!(h.m.commit_target().is_ok());
        let leave = h.input(Input::RevokeDone { token });
        let [
            Action::LeaveGroup {
                seq,
                member_id,
                fresh_connection: false,
            },
        ] = &leave[..]
        else {
            panic!("{leave:?}");
        };
        assert_eq!(member_id, "m1");
        assert!(matches!(h.m.commit_target(), Err(CommitError::NotMember)));
        assert!(
            h.input(Input::Left {
                seq: *seq,
                result: Ok(())
            })
            .is_empty()
        );
        assert!(h.m.is_stopped());
    }

    #[test]
    fn stop_during_a_rebalance_revoke_leaves_instead_of_rejoining() {
        let mut h = H::new();
        h.stable(2, &[0]);
        let hb = h.next_heartbeat();
        let (token, _) = revoke_token(&h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
        }));
        assert!(h.input(Input::Stop).is_empty());
        let leave = h.input(Input::RevokeDone { token });
        assert!(matches!(&leave[..], [Action::LeaveGroup { .. }]), "{leave:?}");
    }

    #[test]
    fn stop_while_joining_leaves_on_a_fresh_connection() {
        let mut h = H::new();
        let join = join_seq(&h.connect());
        let join = join_seq(&h.input(Input::Joined {
            seq: join,
            result: Ok(JoinOutcome::MemberIdRequired {
                member_id: "m1".to_owned(),
            }),
        }));
        let leave = h.input(Input::Stop);
        let [
            Action::LeaveGroup {
                seq,
                fresh_connection: true,
                ..
            },
        ] = &leave[..]
        else {
            panic!("{leave:?}");
        };
        // The JoinGroup answer that arrives meanwhile is ignored.
        assert!(
            h.input(Input::Joined {
                seq: join,
                result: Ok(joined(1, "m1", "m1", &[])),
            })
            .is_empty()
        );
        h.input(Input::Left {
            seq: *seq,
            result: Err(broken()),
        });
        assert!(h.m.is_stopped());
    }

    #[test]
    fn stop_before_having_a_member_id_just_stops() {
        let mut h = H::new();
        h.input(Input::Tick);
        assert!(h.input(Input::Stop).is_empty());
        assert!(h.m.is_stopped());
        let mut h = H::new();
        h.connect();
        assert!(h.input(Input::Stop).is_empty(), "JoinGroup without id in flight");
        assert!(h.m.is_stopped());
    }

    #[test]
    fn dropped_receiver_leaves_without_revoke() {
        let mut h = H::new();
        h.stable(2, &[0, 1]);
        let leave = h.input(Input::EventsClosed);
        assert!(matches!(&leave[..], [Action::LeaveGroup { .. }]), "{leave:?}");
        // Also mid-revoke: no waiting for a done that cannot come.
        let mut h = H::new();
        h.stable(2, &[0, 1]);
        revoke_token(&h.input(Input::Stop));
        let leave = h.input(Input::EventsClosed);
        assert!(matches!(&leave[..], [Action::LeaveGroup { .. }]), "{leave:?}");
    }

    #[test]
    fn stale_heartbeat_answers_are_ignored() {
        let mut h = H::new();
        h.stable(2, &[0]);
        let hb = h.next_heartbeat();
        // An answer with another seq (e.g. from before a rejoin) changes nothing.
        assert!(
            h.input(Input::Heartbeat {
                seq: hb + 100,
                result: Err(server(ApiKey::Heartbeat, ResponseError::UnknownMemberId)),
            })
            .is_empty()
        );
        assert_eq!(h.m.current(), Some(("m1".to_owned(), 2)));
    }

    #[test]
    fn undecodable_assignment_rejoins() {
        let mut h = H::new();
        let join = join_seq(&h.connect());
        let sync = sync_seq(&h.input(Input::Joined {
            seq: join,
            result: Ok(joined(1, "m1", "m0", &[])),
        }));
        let out = h.input(Input::Synced {
            seq: sync,
            result: Ok(Bytes::from_static(&[0, 1, 0xff])),
        });
        // Zero jitter: the rejoin goes out at once; no Assigned.
        assert_eq!(join_member(&out), "m1");
    }

    #[test]
    fn empty_assignment_is_a_valid_generation() {
        let mut h = H::new();
        let join = join_seq(&h.connect());
        let sync = sync_seq(&h.input(Input::Joined {
            seq: join,
            result: Ok(joined(1, "m1", "m0", &[])),
        }));
        let out = h.input(Input::Synced {
            seq: sync,
            result: Ok(Bytes::new()),
        });
        assert!(
            matches!(&out[..], [Action::Emit(Event::Assigned { partitions, .. })] if partitions.is_empty())
        );
        // A rebalance with nothing owned rejoins without a Revoke.
        let hb = h.next_heartbeat();
        let out = h.input(Input::Heartbeat {
            seq: hb,
            result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
        });
        join_seq(&out);
    }

    #[test]
    fn classification_table() {
        use ResponseError as R;
        let cases = [
            (R::RebalanceInProgress, Class::Rebalance),
            (R::IllegalGeneration, Class::IllegalGeneration),
            (R::UnknownMemberId, Class::UnknownMember),
            (R::FencedInstanceId, Class::Fenced),
            (R::NotCoordinator, Class::Coordinator),
            (R::CoordinatorNotAvailable, Class::Coordinator),
            (R::CoordinatorLoadInProgress, Class::Loading),
            (R::InconsistentGroupProtocol, Class::Fatal),
            (R::InvalidSessionTimeout, Class::Fatal),
            (R::GroupAuthorizationFailed, Class::Fatal),
            (R::GroupMaxSizeReached, Class::Fatal),
            (R::OffsetMetadataTooLarge, Class::Transient),
        ];
        for (error, class) in cases {
            assert_eq!(classify(&server(ApiKey::Heartbeat, error)), class, "{error:?}");
        }
        assert_eq!(classify(&broken()), Class::Coordinator);
        assert_eq!(
            classify(&wire::Error::Timeout {
                api: ApiKey::Heartbeat,
                after: HB
            }),
            Class::Coordinator
        );
        assert_eq!(classify(&wire::Error::UnsupportedApi { api: 11 }), Class::Fatal);
    }
}
