//! The `consumer` protocol's JoinGroup/SyncGroup payloads: `ConsumerProtocolSubscription` and
//! `ConsumerProtocolAssignment`, each behind an `i16` version prefix that we write and read
//! ourselves (kafka-protocol encodes only the body).
//!
//! We write the standard encodings so that Kafka's own tools (`kafka-consumer-groups
//! --describe --members --verbose`) can show our members and their partitions, and so a Java
//! leader could read our subscriptions.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::bounds;

/// Subscription version we write: v2 added the generation of `owned_partitions`, v3 the rack.
/// The leader uses both `owned_partitions` (stickiness) and the generation (to settle claims of
/// two members on one partition).
pub(crate) const SUBSCRIPTION_VERSION: i16 = 3;

/// Assignment version we write. v1..v3 share one layout; v3 matches current Java clients.
pub(crate) const ASSIGNMENT_VERSION: i16 = 3;

/// Highest version the generated codec knows. Newer versions only append fields (the
/// protocol's compatibility rule, applied by Java's `ConsumerProtocol` too), so a newer payload
/// is read at this version and its tail ignored.
const HIGHEST_KNOWN: i16 = 3;

/// Why a subscription or assignment payload could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    /// Fewer than the two bytes of the version prefix.
    #[error("payload of {len} bytes has no version prefix")]
    Truncated {
        /// The payload length.
        len: usize,
    },
    /// A negative version, which no client writes.
    #[error("invalid payload version {version}")]
    BadVersion {
        /// The version read.
        version: i16,
    },
    /// An array declares more entries than the payload's remaining bytes can hold (refused
    /// before decoding, which would reserve room for them all; see [`super::bounds`]).
    #[error("v{version} payload declares {declared} entries in {room} bytes")]
    Oversized {
        /// The version it was read at.
        version: i16,
        /// The declared entry count.
        declared: i32,
        /// The bytes left where it was declared.
        room: usize,
    },
    /// The body does not decode at the (clamped) version.
    #[error("undecodable v{version} payload")]
    Decode {
        /// The version it was read at.
        version: i16,
        /// The codec's error.
        #[source]
        source: crate::kafka::wire::CodecError,
    },
}

/// A member's subscription, as the leader needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// Subscribed topics.
    pub(crate) topics: Vec<String>,
    /// Partitions the member owned in `generation`, per topic.
    pub(crate) owned: Vec<(String, Vec<i32>)>,
    /// Generation of `owned`; -1 when unknown (v0/v1 payloads, or a fresh member).
    pub(crate) generation: i32,
}

impl Subscription {
    /// The owned partitions of `topic` (empty if none).
    pub(crate) fn owned_of(&self, topic: &str) -> Vec<i32> {
        self.owned
            .iter()
            .filter(|(t, _)| t == topic)
            .flat_map(|(_, p)| p.iter().copied())
            .collect()
    }
}

/// Encodes our subscription to `topic`, claiming `owned` partitions from `generation`.
pub(crate) fn encode_subscription(topic: &str, owned: &[i32], generation: i32) -> Bytes {
    let owned_partitions = if owned.is_empty() {
        Vec::new()
    } else {
        vec![
            OwnedTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(owned.to_vec()),
        ]
    };
    let body = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_string(topic.to_owned())])
        .with_user_data(None)
        .with_owned_partitions(owned_partitions)
        .with_generation_id(generation)
        .with_rack_id(None);
    encode(&body, SUBSCRIPTION_VERSION)
}

/// Decodes a member's subscription.
///
/// # Errors
/// [`CodecError`] when the payload is truncated, has a negative version or does not decode.
pub(crate) fn decode_subscription(payload: &Bytes) -> Result<Subscription, CodecError> {
    let (version, mut body) = split_version(payload)?;
    refuse_oversized(bounds::check_subscription(&body, version), version)?;
    let sub = ConsumerProtocolSubscription::decode(&mut body, version).map_err(|e| CodecError::Decode {
        version,
        source: e.into(),
    })?;
    Ok(Subscription {
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned: sub
            .owned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
        generation: sub.generation_id,
    })
}

/// The assignment `user_data` our leader writes to every member when a cooperative round held
/// partitions back: a follow-up rebalance is coming, so heartbeat promptly to join it soon.
/// Other clients ignore an assignment's user data under `cooperative-sticky`.
const FOLLOW_UP: &[u8] = b"bigpipe:follow-up";

/// Encodes an assignment of (topic, partitions) pairs; a topic listed twice has its partitions
/// merged, topics without partitions are left out (an empty list is a valid assignment).
#[cfg(test)]
pub(crate) fn encode_assignment<T: AsRef<str>, P: AsRef<[i32]>>(assigned: &[(T, P)]) -> Bytes {
    encode_assignment_with(assigned, false)
}

/// [`encode_assignment`], announcing a follow-up rebalance when `follow_up`.
pub(crate) fn encode_assignment_with<T: AsRef<str>, P: AsRef<[i32]>>(
    assigned: &[(T, P)],
    follow_up: bool,
) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partitions) in assigned {
        let partitions = partitions.as_ref();
        if !partitions.is_empty() {
            by_topic
                .entry(topic.as_ref())
                .or_default()
                .extend_from_slice(partitions);
        }
    }
    let assigned = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            AssignedTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    let body = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(assigned)
        .with_user_data(follow_up.then(|| Bytes::from_static(FOLLOW_UP)));
    encode(&body, ASSIGNMENT_VERSION)
}

/// An assignment as a member reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Assignment {
    /// (topic, partitions) pairs.
    pub(crate) topics: Vec<(String, Vec<i32>)>,
    /// The leader announced a follow-up rebalance (see [`encode_assignment_with`]).
    pub(crate) follow_up: bool,
}

/// Decodes an assignment into (topic, partitions) pairs.
///
/// # Errors
/// As [`decode_member_assignment`].
pub(crate) fn decode_assignment(payload: &Bytes) -> Result<Vec<(String, Vec<i32>)>, CodecError> {
    decode_member_assignment(payload).map(|a| a.topics)
}

/// Decodes an assignment, with its follow-up announcement.
///
/// An empty payload is an empty assignment: the coordinator sends one to members the leader
/// left out of its SyncGroup.
///
/// # Errors
/// [`CodecError`] when the payload is non-empty but unreadable.
pub(crate) fn decode_member_assignment(payload: &Bytes) -> Result<Assignment, CodecError> {
    if payload.is_empty() {
        return Ok(Assignment::default());
    }
    let (version, mut body) = split_version(payload)?;
    refuse_oversized(bounds::check_assignment(&body), version)?;
    let assignment =
        ConsumerProtocolAssignment::decode(&mut body, version).map_err(|e| CodecError::Decode {
            version,
            source: e.into(),
        })?;
    Ok(Assignment {
        follow_up: assignment.user_data.as_deref() == Some(FOLLOW_UP),
        topics: assignment
            .assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
    })
}

/// An oversized count is refused; a truncated body is left to the decoder to report.
fn refuse_oversized(walk: Result<(), bounds::Stop>, version: i16) -> Result<(), CodecError> {
    match walk {
        Err(bounds::Stop::Oversized { declared, room }) => Err(CodecError::Oversized {
            version,
            declared,
            room,
        }),
        Ok(()) | Err(bounds::Stop::Truncated) => Ok(()),
    }
}

fn encode<M: Encodable>(body: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding can only fail for fields absent from the version or lengths beyond i32; every
    // field we set exists at our constant versions and partition lists are small, so a failure
    // is a bug in this file. Returning just the prefix would make it visible to the reader as
    // a typed decode error rather than a panic on the I/O path.
    if body.encode(&mut buf, version).is_err() {
        buf.truncate(2);
    }
    buf.freeze()
}

/// Reads the version prefix; returns the version to decode at (clamped) and the body.
fn split_version(payload: &Bytes) -> Result<(i16, Bytes), CodecError> {
    if payload.len() < 2 {
        return Err(CodecError::Truncated { len: payload.len() });
    }
    let mut body = payload.clone();
    let version = body.get_i16();
    if version < 0 {
        return Err(CodecError::BadVersion { version });
    }
    Ok((version.min(HIGHEST_KNOWN), body))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_may_announce_a_follow_up_rebalance() {
        let plain = encode_assignment(&[("calls", [1, 2])]);
        let marked = encode_assignment_with(&[("calls", [1, 2])], true);
        let (plain, marked) = (
            decode_member_assignment(&plain).unwrap(),
            decode_member_assignment(&marked).unwrap(),
        );
        assert!(!plain.follow_up);
        assert!(marked.follow_up);
        assert_eq!(marked.topics, plain.topics);
        assert!(!decode_member_assignment(&Bytes::new()).unwrap().follow_up);
        assert!(decode_member_assignment(&Bytes::from_static(b"\x00")).is_err());
    }

    #[test]
    fn subscription_round_trip_with_prefix() {
        let bytes = encode_subscription("calls", &[0, 3, 5], 7);
        assert_eq!(&bytes[..2], &SUBSCRIPTION_VERSION.to_be_bytes());
        let sub = decode_subscription(&bytes).unwrap();
        assert_eq!(
            sub,
            Subscription {
                topics: vec!["calls".to_owned()],
                owned: vec![("calls".to_owned(), vec![0, 3, 5])],
                generation: 7,
            }
        );
        assert_eq!(sub.owned_of("calls"), vec![0, 3, 5]);
        assert!(sub.owned_of("other").is_empty());
    }

    #[test]
    fn fresh_subscription_has_no_owned_partitions() {
        let sub = decode_subscription(&encode_subscription("t", &[], -1)).unwrap();
        assert!(sub.owned.is_empty());
        assert_eq!(sub.generation, -1);
    }

    #[test]
    fn older_subscription_versions_decode() {
        // What a v0 (pre-KIP-429) Java client sends: topics + null user data, nothing else.
        for version in 0..=1i16 {
            let body = ConsumerProtocolSubscription::default()
                .with_topics(vec![StrBytes::from_static_str("t")])
                .with_owned_partitions(if version >= 1 {
                    vec![
                        OwnedTopic::default()
                            .with_topic(topic_name("t"))
                            .with_partitions(vec![2]),
                    ]
                } else {
                    Vec::new()
                });
            let sub = decode_subscription(&encode(&body, version)).unwrap();
            assert_eq!(sub.topics, vec!["t".to_owned()]);
            assert_eq!(sub.generation, -1, "v{version} has no generation");
            assert_eq!(sub.owned_of("t"), if version >= 1 { vec![2] } else { vec![] });
        }
    }

    #[test]
    fn newer_versions_are_read_at_the_highest_known_one() {
        // A v5 payload from a future client: v3 layout plus an unknown trailing field.
        let mut bytes = BytesMut::from(&encode_subscription("t", &[1], 4)[..]);
        bytes[..2].copy_from_slice(&5i16.to_be_bytes());
        bytes.put_i32(12345);
        let sub = decode_subscription(&bytes.freeze()).unwrap();
        assert_eq!(sub.owned_of("t"), vec![1]);
        assert_eq!(sub.generation, 4);
    }

    #[test]
    fn assignment_round_trip() {
        let bytes = encode_assignment(&[("calls", [1, 2])]);
        assert_eq!(&bytes[..2], &ASSIGNMENT_VERSION.to_be_bytes());
        assert_eq!(
            decode_assignment(&bytes).unwrap(),
            vec![("calls".to_owned(), vec![1, 2])]
        );
        assert!(
            decode_assignment(&encode_assignment(&[("calls", [0; 0])]))
                .unwrap()
                .is_empty()
        );
        assert!(
            decode_assignment(&encode_assignment::<&str, Vec<i32>>(&[]))
                .unwrap()
                .is_empty()
        );
        // v0 (same layout) from an old leader.
        let v0 = encode(
            &ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                AssignedTopic::default()
                    .with_topic(topic_name("x"))
                    .with_partitions(vec![9]),
            ]),
            0,
        );
        assert_eq!(decode_assignment(&v0).unwrap(), vec![("x".to_owned(), vec![9])]);
    }

    #[test]
    fn assignment_round_trip_with_two_topics() {
        let pairs = vec![
            ("calls".to_owned(), vec![0, 2]),
            ("audit".to_owned(), vec![1]),
            ("empty".to_owned(), vec![]),
            ("calls".to_owned(), vec![4]),
        ];
        // Sorted by topic, duplicates merged, topics without partitions left out.
        assert_eq!(
            decode_assignment(&encode_assignment(&pairs)).unwrap(),
            vec![("audit".to_owned(), vec![1]), ("calls".to_owned(), vec![0, 2, 4]),]
        );
    }

    #[test]
    fn empty_assignment_payload_is_no_partitions() {
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
    }

    /// Found by `codec_props`: kafka-protocol reserved room for a declared count before reading,
    /// so six bytes declaring 2^31 topics aborted the process on a failed 47 GB allocation.
    #[test]
    fn counts_the_payload_cannot_hold_are_refused_before_decoding() {
        let max = [0x7f, 0xff, 0xff, 0xff];
        let cases: [(&str, Vec<u8>); 4] = [
            ("subscription topics", [&[0, 0][..], &max].concat()),
            (
                "subscription owned partitions",
                [&[0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..], &max].concat(),
            ),
            ("assignment topics", [&[0, 3][..], &max].concat()),
            (
                "assignment partitions",
                [&[0, 3, 0, 0, 0, 1, 0, 1, b't'][..], &max].concat(),
            ),
        ];
        for (what, payload) in cases {
            let payload = Bytes::from(payload);
            let result = if what.starts_with("subscription") {
                decode_subscription(&payload).map(drop)
            } else {
                decode_assignment(&payload).map(drop)
            };
            assert!(
                matches!(
                    result,
                    Err(CodecError::Oversized {
                        declared: i32::MAX,
                        ..
                    })
                ),
                "{what}: {result:?}"
            );
        }
    }

    #[test]
    fn bad_payloads_are_typed_errors() {
        assert!(matches!(
            decode_subscription(&Bytes::from_static(&[0])),
            Err(CodecError::Truncated { len: 1 })
        ));
        assert!(matches!(
            decode_subscription(&Bytes::from_static(&[0xff, 0xfe, 0, 0])),
            Err(CodecError::BadVersion { version: -2 })
        ));
        // v3 prefix, then a topic array claiming 1000 entries with no bytes behind it: refused
        // by the walk before the decoder reserves room for them.
        assert!(matches!(
            decode_subscription(&Bytes::from_static(&[0, 3, 0, 0, 3, 232])),
            Err(CodecError::Oversized {
                version: 3,
                declared: 1000,
                room: 0
            })
        ));
        // One topic declared, its name cut short: the decoder's own error.
        assert!(matches!(
            decode_subscription(&Bytes::from_static(&[0, 3, 0, 0, 0, 1, 0, 9, b'a'])),
            Err(CodecError::Decode { version: 3, .. })
        ));
        assert!(matches!(
            decode_assignment(&Bytes::from_static(&[0, 1, 0xff])),
            Err(CodecError::Decode { version: 1, .. })
        ));
    }
}
