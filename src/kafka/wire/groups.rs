//! Read-only consumer-group calls for the admin API: where a group's coordinator is, what
//! the coordinator says of the group (DescribeGroups) and its committed offsets (OffsetFetch).
//! What `kafka-consumer-groups --describe` asks, answered as plain Rust values.
//!
//! Member assignments come back as the raw `consumer` protocol payload: decoding them is the
//! group module's job (`group::codec`), which this layer does not name.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerConnection, Error, Result, check, version_of};
use crate::kafka::connect::KafkaConnect;

/// FindCoordinator v4 (KIP-699) batches keys in `coordinator_keys`.
const FIND_COORDINATOR_BATCHED: i16 = 4;

/// OffsetFetch v8 (KIP-709) batches groups.
const OFFSET_FETCH_BATCHED: i16 = 8;

/// One member of a group, as the coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id the coordinator gave.
    pub member_id: String,
    /// Static membership id, when set.
    pub instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's address as the coordinator saw it (`/1.2.3.4`).
    pub client_host: String,
    /// The raw assignment payload (empty while the group rebalances).
    pub assignment: Bytes,
}

/// A group as the coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead`.
    pub state: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignor chosen in the last rebalance (`range`, `cooperative-sticky`...).
    pub protocol: String,
    /// The members.
    pub members: Vec<GroupMember>,
}

/// A connection to `group`'s coordinator: bootstrap, FindCoordinator, then the coordinator
/// (the bootstrap connection itself when that broker is the coordinator). Every step is
/// bounded by the connection's request timeout.
///
/// # Errors
/// Any connect or request error; [`Error::Server`] when the broker refuses (e.g.
/// COORDINATOR_NOT_AVAILABLE while the offsets topic is created).
pub async fn connect_coordinator(connect: &KafkaConnect, group: &str) -> Result<BrokerConnection> {
    let bootstrap = super::connect_any(connect).await?;
    let version = version_of::<FindCoordinatorRequest>(&bootstrap, ApiKey::FindCoordinator)?;
    let key = StrBytes::from_string(group.to_owned());
    // key_type 0 = group.
    let request = if version >= FIND_COORDINATOR_BATCHED {
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![key.clone()])
    } else {
        FindCoordinatorRequest::default()
            .with_key(key.clone())
            .with_key_type(0)
    };
    let response = bootstrap.request_with_version(request, version).await?;
    let (host, port) = if version >= FIND_COORDINATOR_BATCHED {
        let found = response
            .coordinators
            .into_iter()
            .find(|c| c.key == key)
            .ok_or_else(|| Error::MissingInResponse {
                api: ApiKey::FindCoordinator,
                name: group.to_owned(),
            })?;
        check(
            ApiKey::FindCoordinator,
            found.error_code,
            found.error_message.as_ref(),
        )?;
        (found.host, found.port)
    } else {
        check(
            ApiKey::FindCoordinator,
            response.error_code,
            response.error_message.as_ref(),
        )?;
        (response.host, response.port)
    };
    let addr = format!("{host}:{port}");
    if addr == bootstrap.addr() {
        return Ok(bootstrap);
    }
    BrokerConnection::connect(&addr, connect).await
}

/// DescribeGroups for one group, sent to its coordinator. A group nobody ever joined is
/// described as `Dead` with no members (Kafka's answer), not as an error.
///
/// # Errors
/// [`Error::Server`] for the group's error code (e.g. NOT_COORDINATOR after a move,
/// GROUP_AUTHORIZATION_FAILED); [`Error::MissingInResponse`]; any request error.
pub async fn describe_group(conn: &BrokerConnection, group: &str) -> Result<GroupDescription> {
    let version = version_of::<DescribeGroupsRequest>(conn, ApiKey::DescribeGroups)?;
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))])
        .with_include_authorized_operations(false);
    let response = conn.request_with_version(request, version).await?;
    let found = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| Error::MissingInResponse {
            api: ApiKey::DescribeGroups,
            name: group.to_owned(),
        })?;
    check(
        ApiKey::DescribeGroups,
        found.error_code,
        found.error_message.as_ref(),
    )?;
    Ok(GroupDescription {
        state: found.group_state.to_string(),
        protocol_type: found.protocol_type.to_string(),
        protocol: found.protocol_data.to_string(),
        members: found
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: m.member_assignment,
            })
            .collect(),
    })
}

/// The group's committed offset of each of `topic`'s `partitions` (OffsetFetch, sent to the
/// coordinator); `None` where nothing is committed.
///
/// # Errors
/// [`Error::Server`] for a group-level or partition-level error code; any request error.
pub async fn committed_offsets(
    conn: &BrokerConnection,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Option<i64>>> {
    let rows = fetch_committed(conn, group, topic, partitions, None).await?;
    let mut out: BTreeMap<i32, Option<i64>> = partitions.iter().map(|&p| (p, None)).collect();
    for row in rows {
        check(ApiKey::OffsetFetch, row.code, None)?;
        if let Some(slot) = out.get_mut(&row.partition) {
            *slot = row.offset;
        }
    }
    Ok(out)
}

/// One partition of an OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRow {
    /// The partition.
    pub partition: i32,
    /// The committed offset; `None` when nothing is committed (-1 on the wire).
    pub offset: Option<i64>,
    /// The metadata string stored with it (empty when none).
    pub metadata: String,
    /// The partition's error code (0: none); what it means is the caller's to decide.
    pub code: i16,
}

/// OffsetFetch of `topic`'s `partitions` for `group`, at whichever layout the broker speaks
/// (v8, KIP-709, batches groups). `timeout`: the round trip's bound (default: the
/// connection's request timeout).
///
/// # Errors
/// [`Error::Server`] for a group-level error code; [`Error::MissingInResponse`]; any request
/// error. Partition-level codes come back in the rows.
pub async fn fetch_committed(
    conn: &BrokerConnection,
    group: &str,
    topic: &str,
    partitions: &[i32],
    timeout: Option<Duration>,
) -> Result<Vec<CommittedRow>> {
    let version = version_of::<OffsetFetchRequest>(conn, ApiKey::OffsetFetch)?;
    let group_id = GroupId(StrBytes::from_string(group.to_owned()));
    let name = TopicName(StrBytes::from_string(topic.to_owned()));
    let request = if version >= OFFSET_FETCH_BATCHED {
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id)
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(name)
                        .with_partition_indexes(partitions.to_vec()),
                ])),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(group_id)
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(name)
                    .with_partition_indexes(partitions.to_vec()),
            ]))
    };
    let response = conn.request_with(request, Some(version), timeout).await?;
    let row = |partition: i32, offset: i64, metadata: Option<StrBytes>, code: i16| CommittedRow {
        partition,
        offset: (offset >= 0).then_some(offset),
        metadata: metadata.map(|m| m.to_string()).unwrap_or_default(),
        code,
    };
    let mut rows = Vec::new();
    if version >= OFFSET_FETCH_BATCHED {
        let found = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| Error::MissingInResponse {
                api: ApiKey::OffsetFetch,
                name: group.to_owned(),
            })?;
        check(ApiKey::OffsetFetch, found.error_code, None)?;
        for t in found.topics.into_iter().filter(|t| t.name.0.as_str() == topic) {
            rows.extend(
                t.partitions
                    .into_iter()
                    .map(|p| row(p.partition_index, p.committed_offset, p.metadata, p.error_code)),
            );
        }
    } else {
        check(ApiKey::OffsetFetch, response.error_code, None)?;
        for t in response.topics.into_iter().filter(|t| t.name.0.as_str() == topic) {
            rows.extend(
                t.partitions
                    .into_iter()
                    .map(|p| row(p.partition_index, p.committed_offset, p.metadata, p.error_code)),
            );
        }
    }
    Ok(rows)
}
