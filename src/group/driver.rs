//! The async side of a group member: one task that runs the requests the state machine asks for
//! over one coordinator connection, and feeds their outcomes back as inputs.
//!
//! The loop waits on, at the same time: the stop token, requests in flight (a
//! `FuturesUnordered`, so heartbeats, commits and a parked JoinGroup can be outstanding
//! together), handle commands, the state machine's next deadline, room in the event channel,
//! and the event receiver being dropped. Requests share one `BrokerConnection`, which
//! serialises them; only LeaveGroup during a join gets its own connection.
//!
//! Nothing here decides anything about membership: the answer to "what now?" always comes from
//! `Member::handle`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use rand::SeedableRng;
use rand::rngs::StdRng;
use slog::{Logger, debug, info, o};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::{Action, Class, Event, Input, Member, classify};
use super::{Command, CommitError, GroupConfig, GroupError, GroupEvent, OffsetMark};
use crate::kafka::wire::membership::{self, CommitOffset, MemberSpec};
use crate::kafka::wire::{self, BrokerConnection, admin};

/// What LeaveGroup tells the broker's log (LeaveGroup v5+).
const LEAVE_REASON: &str = "the consumer is shutting down";

/// The driver of one group member; built and spawned by [`super::start`].
pub struct GroupMember {
    config: Arc<GroupConfig>,
    /// What every membership request carries (from `config`).
    spec: Arc<MemberSpec>,
    log: Logger,
    state: Member,
    /// Cancelled by the owner to make us revoke, leave and end.
    stop: CancellationToken,
    /// Events to the consumer; its receiver being dropped makes us leave.
    events: mpsc::Sender<GroupEvent>,
    /// Events the channel had no room for yet, in order.
    queued: VecDeque<GroupEvent>,
    /// Requests from the `GroupHandle`s; closed when all handles are gone (we carry on).
    commands: mpsc::Receiver<Command>,
    /// `(member id, generation)` while stable, for `GroupHandle::current`.
    current: watch::Sender<Option<(String, i32)>>,
    /// The coordinator connection of the state machine's current epoch.
    conn: Option<Arc<BrokerConnection>>,
    /// Everything in flight; each resolves to what it means for the state machine.
    inflight: FuturesUnordered<BoxFuture<'static, Completion>>,
}

/// What a finished in-flight future reports.
enum Completion {
    Input(Input),
    /// FindCoordinator plus connecting: the connection must be installed before the state
    /// machine hears of it, since its next action (JoinGroup) uses it.
    Found {
        seq: u64,
        result: Result<Arc<BrokerConnection>, wire::Error>,
    },
    Nothing,
}

impl fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupMember")
            .field("group_id", &self.config.group_id)
            .field("state", &self.state)
            .field("queued_events", &self.queued.len())
            .field("inflight", &self.inflight.len())
            .finish_non_exhaustive()
    }
}

impl GroupMember {
    pub(crate) fn new(
        config: GroupConfig,
        log: Logger,
        stop: CancellationToken,
        events: mpsc::Sender<GroupEvent>,
        commands: mpsc::Receiver<Command>,
        current: watch::Sender<Option<(String, i32)>>,
    ) -> Self {
        let log = log.new(o!("group" => config.group_id.clone(), "topic" => config.topic.clone()));
        let rng = Box::new(StdRng::from_rng(&mut rand::rng()));
        let state = Member::new(&config, log.clone(), Instant::now(), rng);
        let spec = MemberSpec {
            group_id: config.group_id.clone(),
            instance_id: config.instance_id.clone(),
            session_timeout: config.session_timeout,
            rebalance_timeout: config.rebalance_timeout,
            request_timeout: config.request_timeout,
        };
        Self {
            spec: Arc::new(spec),
            config: Arc::new(config),
            log,
            state,
            stop,
            events,
            queued: VecDeque::new(),
            commands,
            current,
            conn: None,
            inflight: FuturesUnordered::new(),
        }
    }

    /// Runs until the state machine stops (after a stop, a dropped receiver, or fencing).
    ///
    /// # Cancellation
    /// Aborting the task drops every request in flight without LeaveGroup: the coordinator
    /// drops us after the session timeout, as if the process had died.
    pub async fn run(mut self) {
        let mut stop_seen = false;
        let mut commands_open = true;
        let mut events_closed = false;
        self.apply(Input::Tick);
        while !self.state.is_stopped() {
            let deadline = self.state.next_deadline();
            // A far-off instant stands in for "no deadline"; the branch is disabled then.
            let sleep = tokio::time::sleep_until(
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                () = self.stop.cancelled(), if !stop_seen => {
                    stop_seen = true;
                    self.apply(Input::Stop { scale_down: self.config.scale_down.is_set() });
                }
                Some(done) = self.inflight.next(), if !self.inflight.is_empty() => self.complete(done),
                command = self.commands.recv(), if commands_open => match command {
                    Some(command) => self.command(command),
                    None => commands_open = false,
                },
                () = sleep, if deadline.is_some() => self.apply(Input::Tick),
                // Only a bool leaves this branch: a `Permit` would keep `self.events` borrowed
                // into the handler. We are the only sender, so the room stays ours.
                room = async { self.events.reserve().await.is_ok() }, if !self.queued.is_empty() => {
                    if room && let Some(event) = self.queued.pop_front()
                        && let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event)
                    {
                        self.queued.push_front(event);
                    }
                }
                () = self.events.closed(), if !events_closed => {
                    events_closed = true;
                    self.queued.clear();
                    self.apply(Input::EventsClosed);
                }
            }
        }
        // Deliver what fits (a final Lost, say); the channel closing tells the consumer the rest.
        for event in self.queued.drain(..) {
            if self.events.try_send(event).is_err() {
                break;
            }
        }
        self.current.send_replace(None);
        let (member, generation) = self.state.identity();
        info!(self.log, "group member stopped"; "member" => member, "generation" => generation);
    }

    /// Feeds the state machine and executes its actions.
    fn apply(&mut self, input: Input) {
        let actions = self.state.handle(Instant::now(), input);
        for action in actions {
            self.execute(action);
        }
        let current = self.state.current();
        self.current.send_if_modified(|c| {
            let changed = *c != current;
            *c = current;
            changed
        });
    }

    fn complete(&mut self, done: Completion) {
        match done {
            Completion::Input(input) => self.apply(input),
            Completion::Found { seq, result } => {
                let result = match result {
                    Ok(conn) => {
                        if self.state.awaits_coordinator(seq) {
                            info!(self.log, "connected to the group coordinator"; "addr" => conn.addr());
                            self.conn = Some(conn);
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                self.apply(Input::CoordinatorFound { seq, result });
            }
            Completion::Nothing => {}
        }
    }

    fn execute(&mut self, action: Action) {
        let config = Arc::clone(&self.config);
        let spec = Arc::clone(&self.spec);
        match action {
            Action::FindCoordinator { seq } => {
                // Requests still running on the old connection keep it alive through their Arc.
                self.conn = None;
                self.spawn(async move {
                    let result = wire::groups::connect_coordinator(&config.connect, &config.group_id)
                        .await
                        .map(Arc::new);
                    Completion::Found { seq, result }
                });
            }
            Action::JoinGroup {
                seq,
                member_id,
                protocols,
                reason,
            } => {
                self.on_coordinator(
                    async move |conn| {
                        membership::join_group(&conn, &spec, member_id, protocols, reason).await
                    },
                    move |result| Input::Joined { seq, result },
                );
            }
            Action::FetchPartitionCounts { seq, topics } => {
                let log = self.log.clone();
                self.on_coordinator(
                    async move |conn| partition_counts(&conn, &config, topics, &log).await,
                    move |result| Input::PartitionCounts { seq, result },
                );
            }
            Action::SyncGroup {
                seq,
                generation,
                member_id,
                protocol,
                assignments,
            } => {
                self.on_coordinator(
                    async move |conn| {
                        membership::sync_group(&conn, &spec, generation, member_id, protocol, assignments)
                            .await
                    },
                    move |result| Input::Synced { seq, result },
                );
            }
            Action::Heartbeat {
                seq,
                generation,
                member_id,
            } => {
                self.on_coordinator(
                    async move |conn| membership::heartbeat(&conn, &spec, generation, member_id).await,
                    move |result| Input::Heartbeat { seq, result },
                );
            }
            Action::LeaveGroup {
                seq,
                member_id,
                fresh_connection,
            } => {
                let conn = self.conn.clone();
                self.spawn(async move {
                    let result = match conn {
                        Some(conn) if fresh_connection => {
                            match BrokerConnection::connect(conn.addr(), &config.connect).await {
                                Ok(fresh) => {
                                    membership::leave_group(&fresh, &spec, member_id, LEAVE_REASON).await
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Some(conn) => membership::leave_group(&conn, &spec, member_id, LEAVE_REASON).await,
                        None => Err(no_connection()),
                    };
                    Completion::Input(Input::Left { seq, result })
                });
            }
            Action::Emit(event) => self.emit(event),
        }
    }

    fn emit(&mut self, event: Event) {
        let event = match event {
            Event::Assigned {
                generation,
                member_id,
                partitions,
            } => GroupEvent::Assigned {
                generation,
                member_id,
                partitions,
                members: self.state.joined_members(),
            },
            Event::Lost { partitions } => GroupEvent::Lost { partitions },
            Event::Revoke { token, partitions } => {
                let (done, acked) = oneshot::channel();
                // Fires on `done.send` and on `done` being dropped; both mean "go on".
                self.spawn(async move {
                    acked.await.ok();
                    Completion::Input(Input::RevokeDone { token })
                });
                GroupEvent::Revoke { partitions, done }
            }
        };
        self.queued.push_back(event);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Commit { offsets, reply } => {
                let target = match self.state.commit_target() {
                    Ok(target) => target,
                    Err(e) => {
                        reply.send(Err(e)).ok();
                        return;
                    }
                };
                let Some(conn) = self.conn.clone() else {
                    reply
                        .send(Err(CommitError::Coordinator(GroupError::NoCoordinator)))
                        .ok();
                    return;
                };
                let (spec, config) = (Arc::clone(&self.spec), Arc::clone(&self.config));
                let log = self.log.clone();
                self.spawn(async move {
                    let outcome = commit(
                        &conn,
                        &spec,
                        &config.topic,
                        &target.member_id,
                        target.generation,
                        &offsets,
                    )
                    .await;
                    let side = match &outcome {
                        Ok(()) => {
                            debug!(log, "offsets committed"; "generation" => target.generation, "offsets" => ?offsets);
                            None
                        }
                        Err(failure) => failure.side.clone(),
                    };
                    reply.send(outcome.map_err(|f| f.error)).ok();
                    match side {
                        Some((class, detail)) => Completion::Input(Input::SideFailure {
                            epoch: target.epoch,
                            membership: Some((target.member_id, target.generation)),
                            class,
                            detail,
                        }),
                        None => Completion::Nothing,
                    }
                });
            }
            Command::Committed { partitions, reply } => {
                let (Some(conn), Some(epoch)) = (self.conn.clone(), self.state.coordinator_epoch()) else {
                    reply.send(Err(GroupError::NoCoordinator)).ok();
                    return;
                };
                let config = Arc::clone(&self.config);
                self.spawn(async move {
                    let result = committed(&conn, &config, &partitions).await;
                    let side = match &result {
                        Err(GroupError::Wire(e))
                            if classify(e) == Class::Coordinator && !queued_timeout(&conn, e) =>
                        {
                            Some(Input::SideFailure {
                                epoch,
                                membership: None,
                                class: Class::Coordinator,
                                detail: wire::error_chain(e),
                            })
                        }
                        _ => None,
                    };
                    reply.send(result).ok();
                    side.map_or(Completion::Nothing, Completion::Input)
                });
            }
        }
    }

    fn spawn(&self, future: impl Future<Output = Completion> + Send + 'static) {
        self.inflight.push(Box::pin(future));
    }

    /// Runs `call` on the coordinator connection (or fails it when there is
    /// none) and feeds its result back to the state machine as `input(result)`.
    fn on_coordinator<T, Fut>(
        &self,
        call: impl FnOnce(Arc<BrokerConnection>) -> Fut + Send + 'static,
        input: impl FnOnce(Result<T, wire::Error>) -> Input + Send + 'static,
    ) where
        Fut: Future<Output = Result<T, wire::Error>> + Send,
    {
        let conn = self.conn.clone();
        self.spawn(async move {
            let result = match conn {
                Some(conn) => call(conn).await,
                None => Err(no_connection()),
            };
            Completion::Input(input(result))
        });
    }
}

/// The stand-in error when an action needs a connection the driver does not have (the state
/// machine only asks for requests while the coordinator is known, so this is defensive).
fn no_connection() -> wire::Error {
    wire::Error::Connect {
        addr: "group coordinator".to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotConnected, "no coordinator connection"),
    }
}

/// A timeout spent only waiting for the connection's lock (behind a parked JoinGroup, say)
/// moved no bytes and left the connection usable: it says nothing about the coordinator, so it
/// must not make the member look for a new one.
fn queued_timeout(conn: &BrokerConnection, e: &wire::Error) -> bool {
    matches!(e, wire::Error::Timeout { .. }) && conn.poisoned().is_none()
}

/// The partition counts the leader needs, of every topic the group subscribes to.
///
/// Other members may run in other processes, with other credentials: a topic-level error on
/// a topic other than ours (TOPIC_AUTHORIZATION_FAILED, or LEADER_NOT_AVAILABLE while it is
/// being created) counts that topic as missing rather than failing the whole assignment, and
/// the leader's periodic check rebalances once it becomes readable. On our own topic such an
/// error fails the request, as it always did.
async fn partition_counts(
    conn: &BrokerConnection,
    config: &GroupConfig,
    mut topics: Vec<String>,
    log: &Logger,
) -> Result<BTreeMap<String, Option<i32>>, wire::Error> {
    let mut unreadable: BTreeMap<String, Option<i32>> = BTreeMap::new();
    loop {
        match admin::partition_counts(conn, &topics).await {
            Ok(mut counts) => {
                counts.extend(unreadable);
                return Ok(counts);
            }
            Err(wire::Error::Topic { topic, error, .. })
                if topic != config.topic && topics.contains(&topic) =>
            {
                // The state machine warns (once) about topics it cannot assign.
                debug!(log, "cannot read another subscribed topic's partition count; treating it as missing";
                    "subscribed" => &topic, "error" => ?error);
                topics.retain(|t| *t != topic);
                unreadable.insert(topic, None);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A failed commit: the error for the caller, plus what the state machine should hear.
#[derive(Debug)]
struct CommitFailure {
    error: CommitError,
    side: Option<(Class, String)>,
}

/// OffsetCommit of `offsets` (partition, next offset) with our generation.
async fn commit(
    conn: &BrokerConnection,
    spec: &MemberSpec,
    topic: &str,
    member_id: &str,
    generation: i32,
    offsets: &[OffsetMark],
) -> Result<(), CommitFailure> {
    let offsets: Vec<CommitOffset<'_>> = offsets
        .iter()
        .map(|m| CommitOffset {
            partition: m.partition,
            offset: m.offset,
            metadata: &m.metadata,
        })
        .collect();
    let refused = match membership::commit_offsets(conn, spec, member_id, generation, topic, &offsets).await {
        Ok(refused) => refused,
        Err(e) => {
            let class = classify(&e);
            let detail = wire::error_chain(&e);
            let report = class == Class::Coordinator && !queued_timeout(conn, &e);
            let error = match class {
                Class::Coordinator | Class::Loading => CommitError::Coordinator(GroupError::Wire(e)),
                _ => CommitError::Other(GroupError::Wire(e)),
            };
            let side = report.then_some((class, detail));
            return Err(CommitFailure { error, side });
        }
    };
    // The first refusal decides (they agree for group-level causes such as
    // ILLEGAL_GENERATION).
    let Some(&(partition, code)) = refused.first() else {
        return Ok(());
    };
    let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code));
    let class = classify(&wire::Error::server(ApiKey::OffsetCommit, code, None));
    let partition_error = GroupError::Partition {
        api: ApiKey::OffsetCommit,
        partition,
        error,
        code,
    };
    let detail = partition_error.to_string();
    let (error, side) = match class {
        Class::Rebalance => (CommitError::RebalanceInProgress, Some(class)),
        Class::IllegalGeneration | Class::UnknownMember | Class::Fenced => {
            (CommitError::StaleGeneration { error }, Some(class))
        }
        Class::Coordinator => (CommitError::Coordinator(partition_error), Some(class)),
        Class::Loading => (CommitError::Coordinator(partition_error), None),
        Class::Fatal | Class::Transient => (CommitError::Other(partition_error), None),
    };
    Err(CommitFailure {
        error,
        side: side.map(|c| (c, detail)),
    })
}

/// OffsetFetch for `partitions` of our topic, with each offset's metadata; nothing committed
/// is `None`.
async fn committed(
    conn: &BrokerConnection,
    config: &GroupConfig,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Option<OffsetMark>>, GroupError> {
    let rows = wire::groups::fetch_committed(
        conn,
        &config.group_id,
        &config.topic,
        partitions,
        Some(config.request_timeout),
    )
    .await?;
    let mut out: BTreeMap<i32, Option<OffsetMark>> = partitions.iter().map(|&p| (p, None)).collect();
    for row in rows {
        if row.code != 0 {
            return Err(GroupError::Partition {
                api: ApiKey::OffsetFetch,
                partition: row.partition,
                error: ResponseError::try_from_code(row.code).unwrap_or(ResponseError::Unknown(row.code)),
                code: row.code,
            });
        }
        if let Some(slot) = out.get_mut(&row.partition) {
            *slot = row.offset.map(|offset| OffsetMark {
                partition: row.partition,
                offset,
                metadata: row.metadata,
            });
        }
    }
    Ok(out)
}
