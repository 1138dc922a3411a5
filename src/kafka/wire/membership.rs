//! The member side of the classic group protocol: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup and OffsetCommit, as plain Rust calls on a coordinator connection. OffsetFetch,
//! which the admin API asks too, is [`super::groups::fetch_committed`].
//!
//! What the calls mean for membership (which error rejoins, which one loses partitions) is the
//! group module's business (`group::state`); this layer only builds each request at the
//! version the broker speaks and reads the answer back.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerConnection, Error, Result, check, duration_ms, version_of};

/// The protocol type of every consumer group (what `kafka-consumer-groups` lists).
pub const PROTOCOL_TYPE: &str = "consumer";

/// SyncGroup v5 (KIP-559) carries the protocol type and name for the broker to check.
const SYNC_GROUP_CHECKED: i16 = 5;

/// LeaveGroup v3 (KIP-345) names the leaving members in a batch; v5 (KIP-800) gives a reason.
const LEAVE_GROUP_BATCHED: i16 = 3;
const LEAVE_GROUP_REASON: i16 = 5;

/// The first version of each membership API that carries `group.instance.id` (KIP-345).
const STATIC_JOIN: i16 = 5;
const STATIC_SYNC: i16 = 3;
const STATIC_HEARTBEAT: i16 = 3;
const STATIC_COMMIT: i16 = 7;

/// Who a member is and the bounds of its requests: what every membership call carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    /// The consumer group.
    pub group_id: String,
    /// Static membership (KIP-345): this member's `group.instance.id`, the same across
    /// restarts, so the coordinator keeps its assignment while it is away.
    pub instance_id: Option<String>,
    /// The coordinator drops the member if it hears nothing for this long.
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to rejoin; JoinGroup and SyncGroup may
    /// be parked that long.
    pub rebalance_timeout: Duration,
    /// The bound of every other request.
    pub request_timeout: Duration,
}

impl MemberSpec {
    fn group(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.group_id.clone()))
    }

    fn instance(&self) -> Option<StrBytes> {
        self.instance_id.clone().map(StrBytes::from_string)
    }

    /// The version to send `api` at when it must carry our instance id, which only `since`
    /// and later can: a static member cannot fall back to dynamic membership unnoticed.
    fn static_version(&self, api: ApiKey, version: i16, since: i16) -> Result<i16> {
        if self.instance_id.is_some() && version < since {
            return Err(Error::VersionTooOld {
                api,
                version,
                needed: since,
                what: "group.instance.id (static membership)",
            });
        }
        Ok(version)
    }

    /// The broker parks JoinGroup (and a follower's SyncGroup) until the rebalance is done.
    fn parked_timeout(&self) -> Duration {
        self.rebalance_timeout.saturating_add(self.request_timeout)
    }
}

/// What a JoinGroup round trip said.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinOutcome {
    /// KIP-394: rejoin at once with this id.
    MemberIdRequired {
        /// The id the coordinator chose for us.
        member_id: String,
    },
    /// A generation, and who leads it.
    Joined {
        /// The generation id.
        generation: i32,
        /// Our member id in it.
        member_id: String,
        /// The leader's member id.
        leader: String,
        /// The assignor protocol the coordinator chose.
        protocol: Option<String>,
        /// (member id, subscription payload); only the leader gets them.
        members: Vec<(String, Bytes)>,
        /// KIP-814 (v9+): the group is stable and keeps its assignment; a static leader that
        /// rejoined must not compute a new one (it syncs with none).
        skip_assignment: bool,
    },
}

/// JoinGroup with `member_id` (empty the first time), offering `protocols` (name, subscription
/// payload; preferred first). `reason` reaches the broker's log from v8 (KIP-800).
///
/// # Errors
/// [`Error::Server`] for the response's error code (but MEMBER_ID_REQUIRED, which is an
/// outcome); any request error.
pub async fn join_group(
    conn: &BrokerConnection,
    spec: &MemberSpec,
    member_id: String,
    protocols: Vec<(&'static str, Bytes)>,
    reason: String,
) -> Result<JoinOutcome> {
    let version = version_of::<JoinGroupRequest>(conn, ApiKey::JoinGroup)?;
    let version = spec.static_version(ApiKey::JoinGroup, version, STATIC_JOIN)?;
    let protocols = protocols
        .into_iter()
        .map(|(name, metadata)| {
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(name))
                .with_metadata(metadata)
        })
        .collect();
    let request = JoinGroupRequest::default()
        .with_group_id(spec.group())
        .with_session_timeout_ms(duration_ms(spec.session_timeout))
        .with_rebalance_timeout_ms(duration_ms(spec.rebalance_timeout))
        .with_member_id(StrBytes::from_string(member_id))
        .with_group_instance_id(spec.instance())
        .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
        .with_protocols(protocols)
        // Only encoded from v8; older versions leave it out.
        .with_reason(Some(StrBytes::from_string(reason)));
    let response = conn
        .request_with(request, Some(version), Some(spec.parked_timeout()))
        .await?;
    match ResponseError::try_from_code(response.error_code) {
        None => Ok(JoinOutcome::Joined {
            generation: response.generation_id,
            member_id: response.member_id.to_string(),
            leader: response.leader.to_string(),
            protocol: response.protocol_name.map(|p| p.to_string()),
            members: response
                .members
                .into_iter()
                .map(|m| (m.member_id.to_string(), m.metadata))
                .collect(),
            skip_assignment: response.skip_assignment,
        }),
        Some(ResponseError::MemberIdRequired) => Ok(JoinOutcome::MemberIdRequired {
            member_id: response.member_id.to_string(),
        }),
        Some(_) => Err(Error::server(ApiKey::JoinGroup, response.error_code, None)),
    }
}

/// SyncGroup: the leader sends `assignments` (member id, assignment payload), a follower
/// none; both get their own assignment payload back.
///
/// # Errors
/// [`Error::Server`] for the response's error code; any request error.
pub async fn sync_group(
    conn: &BrokerConnection,
    spec: &MemberSpec,
    generation: i32,
    member_id: String,
    protocol: &'static str,
    assignments: Vec<(String, Bytes)>,
) -> Result<Bytes> {
    let version = version_of::<SyncGroupRequest>(conn, ApiKey::SyncGroup)?;
    let version = spec.static_version(ApiKey::SyncGroup, version, STATIC_SYNC)?;
    let assignments = assignments
        .into_iter()
        .map(|(member, assignment)| {
            SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member))
                .with_assignment(assignment)
        })
        .collect();
    let mut request = SyncGroupRequest::default()
        .with_group_id(spec.group())
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member_id))
        .with_group_instance_id(spec.instance())
        .with_assignments(assignments);
    if version >= SYNC_GROUP_CHECKED {
        request = request
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(StrBytes::from_static_str(protocol)));
    }
    // A follower's SyncGroup waits for the leader's, which follows a Metadata round trip.
    let response = conn
        .request_with(request, Some(version), Some(spec.parked_timeout()))
        .await?;
    check(ApiKey::SyncGroup, response.error_code, None)?;
    Ok(response.assignment)
}

/// Heartbeat for `member_id` in `generation`.
///
/// # Errors
/// [`Error::Server`] for the response's error code (REBALANCE_IN_PROGRESS among them); any
/// request error.
pub async fn heartbeat(
    conn: &BrokerConnection,
    spec: &MemberSpec,
    generation: i32,
    member_id: String,
) -> Result<()> {
    let version = version_of::<HeartbeatRequest>(conn, ApiKey::Heartbeat)?;
    let version = spec.static_version(ApiKey::Heartbeat, version, STATIC_HEARTBEAT)?;
    let request = HeartbeatRequest::default()
        .with_group_id(spec.group())
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member_id))
        .with_group_instance_id(spec.instance());
    let response = conn
        .request_with(request, Some(version), Some(spec.request_timeout))
        .await?;
    check(ApiKey::Heartbeat, response.error_code, None)
}

/// LeaveGroup for `member_id`; `reason` reaches the broker's log from v5.
///
/// # Errors
/// [`Error::Server`] for the response's or the member's error code; any request error.
pub async fn leave_group(
    conn: &BrokerConnection,
    spec: &MemberSpec,
    member_id: String,
    reason: &'static str,
) -> Result<()> {
    let version = version_of::<LeaveGroupRequest>(conn, ApiKey::LeaveGroup)?;
    let version = spec.static_version(ApiKey::LeaveGroup, version, LEAVE_GROUP_BATCHED)?;
    let mut request = LeaveGroupRequest::default().with_group_id(spec.group());
    if version >= LEAVE_GROUP_BATCHED {
        let mut member = MemberIdentity::default()
            .with_member_id(StrBytes::from_string(member_id))
            .with_group_instance_id(spec.instance());
        if version >= LEAVE_GROUP_REASON {
            member = member.with_reason(Some(StrBytes::from_static_str(reason)));
        }
        request = request.with_members(vec![member]);
    } else {
        request = request.with_member_id(StrBytes::from_string(member_id));
    }
    let response = conn
        .request_with(request, Some(version), Some(spec.request_timeout))
        .await?;
    check(ApiKey::LeaveGroup, response.error_code, None)?;
    for member in &response.members {
        check(ApiKey::LeaveGroup, member.error_code, None)?;
    }
    Ok(())
}

/// One offset to commit: the partition, the next offset to read, and its metadata string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitOffset<'a> {
    /// The partition.
    pub partition: i32,
    /// The next offset to read.
    pub offset: i64,
    /// Stored with the offset (bigpipe keeps the ids of calls finished past it).
    pub metadata: &'a str,
}

/// OffsetCommit of `offsets` of `topic` as `member_id` in `generation`. OffsetCommit has only
/// per-partition error codes: the answer is the (partition, code) of each refused partition,
/// empty when all were committed.
///
/// # Errors
/// Any request error.
pub async fn commit_offsets(
    conn: &BrokerConnection,
    spec: &MemberSpec,
    member_id: &str,
    generation: i32,
    topic: &str,
    offsets: &[CommitOffset<'_>],
) -> Result<Vec<(i32, i16)>> {
    let partitions = offsets
        .iter()
        .map(|o| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(o.partition)
                .with_committed_offset(o.offset)
                .with_committed_metadata(Some(StrBytes::from_string(o.metadata.to_owned())))
        })
        .collect();
    let version = version_of::<OffsetCommitRequest>(conn, ApiKey::OffsetCommit)?;
    let version = spec.static_version(ApiKey::OffsetCommit, version, STATIC_COMMIT)?;
    let request = OffsetCommitRequest::default()
        .with_group_id(spec.group())
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
        .with_group_instance_id(spec.instance())
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(partitions),
        ]);
    let response = conn
        .request_with(request, Some(version), Some(spec.request_timeout))
        .await?;
    Ok(response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.error_code != 0)
        .map(|p| (p.partition_index, p.error_code))
        .collect())
}
