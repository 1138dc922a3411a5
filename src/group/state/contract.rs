//! The driver contract: what the machine is told ([`Input`]), what it asks for ([`Action`]),
//! what it tells the consumer ([`Event`]). The driver in `group::driver` is the only user.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::Class;
use crate::kafka::wire;
pub(crate) use crate::kafka::wire::membership::JoinOutcome;

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

/// Everything that can happen to the machine.
#[derive(Debug)]
pub(crate) enum Input {
    /// Time passed; see [`Member::next_deadline`].
    Tick,
    /// The stop token was cancelled. `scale_down`: a static member leaves the group too
    /// (a dynamic member always does).
    Stop { scale_down: bool },
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

/// Where OffsetCommit must go, with which identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitTarget {
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    /// The coordinator connection's epoch, for [`Input::SideFailure`].
    pub(crate) epoch: u64,
}
