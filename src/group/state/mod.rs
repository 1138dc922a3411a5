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
//! The protocol the coordinator chose for a generation decides how the next rebalance goes.
//! Eager (`sticky`, `range`, `roundrobin`): Stable → Revoking (every partition) → Unjoined.
//! Cooperative (`cooperative-sticky`, KIP-429): Stable → Unjoined at once, still owning and
//! delivering; after SyncGroup, Stable → Revoking (only the partitions the new assignment
//! moved elsewhere) → Unjoined for the follow-up round that hands them over.
//!
//! The machine is level-triggered: after every input, `drive` looks at the state and issues
//! whatever is missing (find the coordinator, join, heartbeat), so a recovery path only has to
//! put the state right, never remember to send something.
//!
//! Responses are matched to their request by a sequence number; a response to a request the
//! machine no longer waits for (an old heartbeat after a rejoin, a join after a stop) is
//! ignored, so stale errors can never cost a valid generation.

mod classify;
mod contract;
mod leader;
mod phase;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use rand::RngCore;
use slog::{Logger, debug, error, info, warn};
use tokio::time::Instant;

pub(crate) use self::classify::{Class, classify};
pub(crate) use self::contract::{Action, CommitTarget, Event, Input, JoinOutcome};
use self::leader::{LeaderCheck, subscribed_topics};
use self::phase::{After, Phase};
use self::timers::{
    FATAL_RETRY, HEARTBEAT_RETRY, PROMPT_HEARTBEAT, RETRY_BACKOFF, STARTUP_GRACE, Timer, next_check_after,
};
use super::codec::{self, Subscription};
use super::{AssignorKind, CommitError, GroupConfig, GroupError};
use crate::backoff::Backoff;
use crate::kafka::wire;

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
    /// A cooperative member keeps them while it rejoins.
    owned: Vec<i32>,
    /// The protocol (assignor) the coordinator chose for the generation we are in, or were in
    /// last; `None` before the first join. It decides how we rebalance: eager or cooperative.
    protocol: Option<AssignorKind>,
    /// (partitions, generation) of our last assignment, sent as `owned_partitions` so a sticky
    /// leader keeps them with us; cleared when membership is lost.
    claim: (Vec<i32>, i32),
    /// Send time of the last request that proved the session alive (heartbeat, join, sync).
    /// The send time, not the answer's, since the broker's session clock restarted no later
    /// than when it got the request.
    last_alive: Instant,
    next_heartbeat: Instant,
    /// Until then heartbeats go every [`PROMPT_HEARTBEAT`]: our assignment announced a
    /// follow-up rebalance (cooperative), bounded by the time a revoke may take.
    prompt_until: Option<Instant>,
    /// (seq, send time) of the heartbeat in flight.
    heartbeat: Option<(u64, Instant)>,
    leader: Option<LeaderCheck>,
    /// Subscribed topics found missing as leader, so each is logged once (until it appears):
    /// at info during start-up, when bigpipe is still creating its topics...
    missing_topics: BTreeSet<String>,
    /// ...and those of them still missing after it, warned about once.
    missing_warned: BTreeSet<String>,
    /// When the member was created, for [`STARTUP_GRACE`].
    started: Instant,
    /// Whether a generation was ever joined: before, a coordinator not found yet is expected.
    joined_once: bool,
    /// Why the next JoinGroup happens.
    rejoin_reason: String,
    /// Members of the last join as we know them: all of them when we lead (the coordinator
    /// sends the list only to the leader), else just ourselves.
    joined_members: usize,
    stopping: bool,
    /// Whether stopping sends LeaveGroup: always for a dynamic member; for a static one
    /// (`group.instance.id` set) only when told it is being scaled down, or when its consumer
    /// is gone. Otherwise a restart within the session timeout moves nothing (KIP-345).
    leave_on_stop: bool,
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
            protocol: None,
            claim: (Vec::new(), -1),
            last_alive: now,
            next_heartbeat: now,
            prompt_until: None,
            heartbeat: None,
            leader: None,
            missing_topics: BTreeSet::new(),
            missing_warned: BTreeSet::new(),
            started: now,
            joined_once: false,
            rejoin_reason: "joining".to_owned(),
            joined_members: 0,
            stopping: false,
            leave_on_stop: config.instance_id.is_none(),
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
            Input::Stop { scale_down } => self.on_stop(now, scale_down, &mut out),
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

    /// When the machine next needs an [`Input::Tick`], if ever (absent other inputs): the
    /// earliest armed [`Timer`].
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Stopped) {
            return None;
        }
        Timer::ALL.iter().filter_map(|&timer| self.timer(timer)).min()
    }

    /// When `timer` fires, if the current state arms it.
    fn timer(&self, timer: Timer) -> Option<Instant> {
        let live = self.phase.in_generation();
        let connected = matches!(self.coordinator, Coordinator::Known { .. });
        match timer {
            Timer::Backoff => self.wait_until,
            Timer::Revoke => match self.phase {
                Phase::Revoking { deadline, .. } => Some(deadline),
                _ => None,
            },
            // A cooperative member holds its partitions while it rejoins; if the rejoin keeps
            // failing, the coordinator drops it after the session and so must it. (While a
            // JoinGroup or SyncGroup waits at the coordinator, that keeps the session alive.)
            Timer::Session => {
                let holding =
                    !self.owned.is_empty() && matches!(self.phase, Phase::Unjoined | Phase::Assigning { .. });
                (live || holding).then(|| self.last_alive + self.session_timeout)
            }
            Timer::Heartbeat => {
                (live && connected && self.heartbeat.is_none()).then_some(self.next_heartbeat)
            }
            Timer::LeaderCheck => match (&self.phase, &self.leader) {
                (Phase::Stable, Some(check)) if connected && check.inflight.is_none() => {
                    Some(check.next_check)
                }
                _ => None,
            },
        }
    }

    /// Whether `timer` is armed and its time has come.
    fn expired(&self, timer: Timer, now: Instant) -> bool {
        self.timer(timer).is_some_and(|at| now >= at)
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

    /// Every phase change goes through here: `to` must be allowed to follow the current phase
    /// (the table in [`Phase::may_become`]; checked in debug builds and tests).
    fn enter(&mut self, to: Phase) {
        debug_assert!(
            self.phase.may_become(&to),
            "illegal phase change {} -> {}",
            self.phase.name(),
            to.name()
        );
        self.phase = to;
    }

    /// Out of the generation (or the join attempt); `drive` joins again once it may.
    fn unjoin(&mut self) {
        self.enter(Phase::Unjoined);
    }

    /// The end: nothing more is sent.
    fn stop(&mut self) {
        self.enter(Phase::Stopped);
    }

    /// The time from a heartbeat sent at `at` to the next one.
    fn heartbeat_every(&self, at: Instant) -> Duration {
        match self.prompt_until {
            Some(until) if at < until => self.heartbeat_interval.min(PROMPT_HEARTBEAT),
            _ => self.heartbeat_interval,
        }
    }

    /// Within [`STARTUP_GRACE`] of the start.
    fn in_start_up(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) < STARTUP_GRACE
    }

    /// Still starting: no generation joined yet, within [`STARTUP_GRACE`]. A coordinator not
    /// found or moved is expected then (a new broker creates its offsets topic first).
    fn waiting_at_start(&self, now: Instant) -> bool {
        !self.joined_once && self.in_start_up(now)
    }

    /// Whether the current generation rebalances cooperatively (KIP-429).
    fn cooperative(&self) -> bool {
        self.protocol.is_some_and(AssignorKind::is_cooperative)
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
        if self.expired(Timer::Revoke, now) {
            warn!(self.log, "revoke not acknowledged within revoke_timeout; going on without it";
                "member" => &self.member_id, "generation" => self.generation, "timeout" => ?self.revoke_timeout);
            self.finish_revoke(now, out);
        }
        if self.expired(Timer::Session, now) {
            self.session_expired(now, out);
        }
        if matches!(self.phase, Phase::Stopped) {
            return;
        }
        if self.expired(Timer::Backoff, now) {
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
                    if self.expired(Timer::Heartbeat, now) {
                        let seq = self.seq();
                        self.heartbeat = Some((seq, now));
                        out.push(Action::Heartbeat {
                            seq,
                            generation: self.generation,
                            member_id: self.member_id.clone(),
                        });
                    }
                    if self.expired(Timer::LeaderCheck, now)
                        && let Some(check) = &self.leader
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
        self.enter(Phase::Joining { seq, sent: now });
        let payload = codec::encode_subscription(&self.topic, &self.claim.0, self.claim.1);
        let protocols = self.offered.iter().map(|k| (k.name(), payload.clone())).collect();
        let reason = std::mem::replace(&mut self.rejoin_reason, "joining".to_owned());
        // The first join is one line when it succeeds ("joined generation"); rejoins say why.
        if self.joined_once {
            info!(self.log, "joining group"; "member" => &self.member_id, "reason" => &reason,
                "claimed" => ?self.claim.0);
        } else {
            debug!(self.log, "joining group"; "member" => &self.member_id, "reason" => &reason);
        }
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
        self.enter(Phase::Syncing { seq, sent: now });
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
                    if self.waiting_at_start(now) {
                        info!(self.log, "waiting for the group coordinator";
                            "error" => %wire::error_chain(&e), "retry_in" => ?delay);
                    } else {
                        warn!(self.log, "cannot find the group coordinator";
                            "error" => %wire::error_chain(&e), "retry_in" => ?delay);
                    }
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
                self.unjoin();
            }
            Ok(JoinOutcome::Joined {
                generation,
                member_id,
                leader,
                protocol,
                members,
                skip_assignment,
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
                if !kind.is_cooperative() && !self.owned.is_empty() {
                    // Only when a member that cannot cooperate joined: the partitions we kept
                    // through the join may be assigned to others before we revoke them at sync,
                    // so a few calls can be delivered twice (never lost).
                    warn!(self.log, "group switched to an eager assignor while we kept partitions through the rejoin";
                        "protocol" => kind.name(), "member" => &self.member_id, "partitions" => ?self.owned);
                }
                self.protocol = Some(kind);
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
                    self.enter(Phase::Assigning {
                        seq,
                        kind,
                        members,
                        skip: skip_assignment,
                    });
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
        if let Phase::Assigning {
            seq: s,
            kind,
            members,
            skip,
        } = &mut self.phase
            && *s == seq
        {
            // The phase stays Assigning until the outcome moves it on (Syncing, or Unjoined).
            let (kind, members, skip) = (*kind, std::mem::take(members), *skip);
            match result {
                Ok(counts) => self.assign_as_leader(now, kind, &members, &counts, skip, out),
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
                let changed = leader::changed_counts(&check.partitions, &counts);
                if changed.is_empty() {
                    self.note_missing_topics(now, &counts);
                }
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
        skip: bool,
        out: &mut Vec<Action>,
    ) {
        let counts: BTreeMap<String, Option<i32>> = subscribed_topics(members)
            .into_iter()
            .map(|topic| {
                let count = counts.get(&topic).copied().flatten();
                (topic, count)
            })
            .collect();
        self.note_missing_topics(now, &counts);
        let assignments = if skip {
            // The counts watched from here on are today's: a change made while we were away
            // (and the group kept its assignment) is not seen until the next one.
            info!(self.log, "leading a stable group that keeps its assignment (static leader rejoined)";
                "member" => &self.member_id, "generation" => self.generation, "partitions" => ?counts);
            Vec::new()
        } else {
            let plan = leader::plan(kind, members, &counts);
            // Partitions held back for a cooperative hand-over: tell everyone a follow-up
            // rebalance is coming.
            let total: i64 = counts.values().flatten().map(|&n| i64::from(n)).sum();
            let assigned: usize = plan.values().flatten().map(|(_, parts)| parts.len()).sum();
            let follow_up = kind.is_cooperative() && i64::try_from(assigned).unwrap_or(i64::MAX) < total;
            info!(self.log, "computed assignment as leader";
                "member" => &self.member_id, "generation" => self.generation, "assignor" => kind.name(),
                "partitions" => ?counts, "plan" => ?plan, "follow_up" => follow_up);
            members
                .iter()
                .map(|(id, _)| {
                    let assigned = plan.get(id).map_or(&[][..], Vec::as_slice);
                    (id.clone(), codec::encode_assignment_with(assigned, follow_up))
                })
                .collect()
        };
        self.leader = Some(LeaderCheck {
            next_check: next_check_after(now, &counts),
            partitions: counts,
            inflight: None,
        });
        self.send_sync(now, kind, assignments, out);
    }

    /// Logs subscribed topics that do not exist: once at info while starting up (bigpipe may be
    /// creating them), once as a warning if still missing after, and forgets those that
    /// appeared.
    fn note_missing_topics(&mut self, now: Instant, counts: &BTreeMap<String, Option<i32>>) {
        let starting = self.in_start_up(now);
        for (topic, count) in counts {
            if count.is_some() {
                self.missing_topics.remove(topic);
                self.missing_warned.remove(topic);
                continue;
            }
            if starting {
                if self.missing_topics.insert(topic.clone()) {
                    info!(self.log, "subscribed topic does not exist yet; assigning none of it until it does";
                        "subscribed" => topic, "generation" => self.generation);
                }
            } else if self.missing_warned.insert(topic.clone()) {
                self.missing_topics.insert(topic.clone());
                warn!(self.log, "subscribed topic does not exist (or this process may not describe it); \
                    assigning none of it until it does";
                    "subscribed" => topic, "generation" => self.generation);
            }
        }
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
        let assignment = match codec::decode_member_assignment(&payload) {
            Ok(assignment) => assignment,
            Err(e) => {
                // Holding partitions we cannot name would stall them; a rejoin makes the
                // leader try again (and makes noise).
                error!(self.log, "undecodable assignment; rejoining";
                    "member" => &self.member_id, "generation" => self.generation, "error" => %wire::error_chain(&e));
                self.unjoin();
                self.wait_until = Some(now + self.join_backoff.next_with(&mut *self.rng));
                return;
            }
        };
        let mut partitions: Vec<i32> = Vec::new();
        for (topic, parts) in assignment.topics {
            if topic == self.topic {
                partitions.extend(parts);
            } else {
                warn!(self.log, "assignment names a topic we do not consume; ignored"; "topic" => topic);
            }
        }
        partitions.sort_unstable();
        partitions.dedup();
        // Kept through a cooperative rejoin but now someone else's: revoked below, and the
        // follow-up rebalance hands them over.
        let moving: Vec<i32> = self
            .owned
            .iter()
            .copied()
            .filter(|p| partitions.binary_search(p).is_err())
            .collect();
        self.enter(Phase::Stable);
        self.joined_once = true;
        self.owned = partitions.iter().chain(&moving).copied().collect();
        self.owned.sort_unstable();
        self.claim = (partitions.clone(), self.generation);
        self.last_alive = sent;
        self.prompt_until = (self.cooperative() && assignment.follow_up).then(|| now + self.revoke_timeout);
        self.next_heartbeat = now + self.heartbeat_every(now);
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
        if !moving.is_empty() {
            info!(self.log, "partitions moving to other members: revoking them, then rejoining";
                "member" => &self.member_id, "generation" => self.generation, "partitions" => ?moving);
            self.rejoin_reason = "revoked partitions for a cooperative rebalance".to_owned();
            self.revoke(now, After::Rejoin, moving, out);
        }
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
                self.next_heartbeat = sent + self.heartbeat_every(sent);
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
        self.stop();
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

    /// An error while joining, assigning or syncing: about how and when to join again, and,
    /// for a cooperative member that kept its partitions, whether it still may hold them.
    fn on_rejoin_error(&mut self, now: Instant, api: &'static str, e: wire::Error, out: &mut Vec<Action>) {
        self.unjoin();
        let class = classify(&e);
        let chain = wire::error_chain(&e);
        let (member, generation) = (self.member_id.clone(), self.generation);
        if matches!(class, Class::UnknownMember | Class::IllegalGeneration) && !self.owned.is_empty() {
            warn!(self.log, "membership lost while rejoining; partitions lost"; "api" => api,
                "member" => &member, "generation" => generation, "partitions" => ?self.owned);
            self.lose_partitions(out);
        }
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
                if self.waiting_at_start(now) {
                    info!(self.log, "waiting for the group coordinator"; "api" => api, "error" => chain);
                } else {
                    warn!(self.log, "lost the group coordinator"; "api" => api, "member" => member, "error" => chain);
                }
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
                    self.unjoin();
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
        self.stop();
    }

    /// Stable → rejoin. Eager: through a revoke of everything we own. Cooperative: at once,
    /// still delivering what we own; the next assignment says what (if anything) to revoke.
    fn begin_rebalance(&mut self, now: Instant, reason: &str, out: &mut Vec<Action>) {
        reason.clone_into(&mut self.rejoin_reason);
        if self.cooperative() && !self.events_closed {
            self.unjoin();
        } else {
            self.begin_revoke(now, After::Rejoin, out);
        }
    }

    /// Revokes every owned partition, then `then`.
    fn begin_revoke(&mut self, now: Instant, then: After, out: &mut Vec<Action>) {
        let all = self.owned.clone();
        self.revoke(now, then, all, out);
    }

    /// Asks the consumer to stop `partitions` (owned ones), then `then` once it did.
    fn revoke(&mut self, now: Instant, then: After, partitions: Vec<i32>, out: &mut Vec<Action>) {
        if partitions.is_empty() || self.events_closed {
            if self.events_closed {
                self.owned.clear();
            }
            match then {
                After::Rejoin => self.unjoin(),
                After::Leave => self.leave_now(false, out),
            }
            return;
        }
        let token = self.seq();
        self.enter(Phase::Revoking {
            token,
            deadline: now + self.revoke_timeout,
            then,
            partitions: partitions.clone(),
        });
        self.emit(Event::Revoke { token, partitions }, out);
    }

    fn finish_revoke(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Revoking { then, partitions, .. } = &self.phase else {
            return;
        };
        let then = *then;
        let done = partitions.clone();
        self.owned.retain(|p| !done.contains(p));
        if self.events_closed {
            self.owned.clear();
        }
        match then {
            After::Rejoin => self.unjoin(),
            // A stop during a cooperative partial revoke: now the rest.
            After::Leave if !self.owned.is_empty() => self.begin_revoke(now, After::Leave, out),
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
            // A cooperative member may hold partitions while unjoined (its rejoin kept failing).
            if !matches!(self.phase, Phase::Unjoined) {
                self.unjoin();
            }
        }
    }

    fn on_stop(&mut self, now: Instant, scale_down: bool, out: &mut Vec<Action>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.leave_on_stop |= scale_down;
        info!(self.log, "stopping"; "member" => &self.member_id, "generation" => self.generation,
            "leave_group" => self.leave_on_stop);
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
            // Nobody here will consume again: even a static member gives its place up.
            self.leave_on_stop = true;
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
                self.give_up_between_generations(out);
                self.leave_now(true, out)
            }
            Phase::Unjoined => {
                self.give_up_between_generations(out);
                self.leave_now(false, out)
            }
            Phase::Leaving { .. } | Phase::Stopped => {}
        }
    }

    /// Sends LeaveGroup if there is a member id and a coordinator to tell; else just stops.
    /// A static member that is not scaling down stops without it (Kafka's rule, KIP-345): the
    /// coordinator keeps its partitions for it until the session timeout.
    fn leave_now(&mut self, fresh_connection: bool, out: &mut Vec<Action>) {
        if !self.leave_on_stop {
            info!(self.log, "stopped without LeaveGroup: a static member keeps its partitions \
                until the session timeout, so a restart in time moves nothing";
                "member" => &self.member_id, "session_timeout" => ?self.session_timeout);
            self.stop();
            return;
        }
        if self.member_id.is_empty() || !matches!(self.coordinator, Coordinator::Known { .. }) {
            info!(self.log, "stopped without LeaveGroup (no member id or no coordinator)";
                "member" => &self.member_id);
            self.stop();
            return;
        }
        let seq = self.seq();
        self.enter(Phase::Leaving { seq });
        out.push(Action::LeaveGroup {
            seq,
            member_id: self.member_id.clone(),
            fresh_connection,
        });
    }

    /// A cooperative member stopping in the middle of a rejoin still runs its partitions, but
    /// has no generation to commit with until the join ends, which may take the rebalance
    /// timeout. It gives them up as lost rather than hold the stop: calls delivered since the
    /// last commit are delivered again by the next owner.
    fn give_up_between_generations(&mut self, out: &mut Vec<Action>) {
        if !self.owned.is_empty() {
            info!(self.log, "stopping during a rebalance: partitions given up without a final commit";
                "member" => &self.member_id, "partitions" => ?self.owned);
            self.lose_partitions(out);
        }
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
