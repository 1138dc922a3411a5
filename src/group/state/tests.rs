//! Scenario tests of the membership state machine: inputs in, actions out, no broker.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use super::timers::{METADATA_CHECK_INTERVAL, MISSING_TOPIC_CHECK_INTERVAL};
use super::*;
use crate::backoff::test_rng::{OnesRng, ZeroRng};
use crate::group::ScaleDown;
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
        instance_id: None,
        scale_down: ScaleDown::default(),
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
        Self::with_config(&config(), rng)
    }

    /// A static member: `group.instance.id` "host-1".
    fn static_member() -> Self {
        let config = GroupConfig {
            instance_id: Some("host-1".to_owned()),
            ..config()
        };
        Self::with_config(&config, Box::new(ZeroRng))
    }

    fn with_config(config: &GroupConfig, rng: Box<dyn RngCore + Send>) -> Self {
        let now = Instant::now();
        Self {
            m: Member::new(config, slog::Logger::root(slog::Discard, slog::o!()), now, rng),
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

    /// Connects and gets member id "m1" (KIP-394); returns the JoinGroup that carries it.
    fn join_as_m1(&mut self) -> u64 {
        let join = join_seq(&self.connect());
        join_seq(&self.input(Input::Joined {
            seq: join,
            result: Ok(JoinOutcome::MemberIdRequired {
                member_id: "m1".to_owned(),
            }),
        }))
    }

    /// From nothing to Stable as a follower with `partitions` in generation `generation`.
    fn stable(&mut self, generation: i32, partitions: &[i32]) -> Vec<Action> {
        let join = self.join_as_m1();
        let sync = sync_seq(&self.input(Input::Joined {
            seq: join,
            result: Ok(joined(generation, "m1", "m0", &[])),
        }));
        self.input(Input::Synced {
            seq: sync,
            result: Ok(codec::encode_assignment(&[("calls", partitions)])),
        })
    }

    /// Like [`H::stable`], in a generation whose protocol is `cooperative-sticky`.
    fn stable_cooperative(&mut self, generation: i32, partitions: &[i32]) -> Vec<Action> {
        let join = self.join_as_m1();
        self.sync_cooperative(join, generation, partitions)
    }

    /// Answers JoinGroup `join` (cooperative, follower) and its SyncGroup with `partitions`.
    fn sync_cooperative(&mut self, join: u64, generation: i32, partitions: &[i32]) -> Vec<Action> {
        let sync = sync_seq(&self.input(Input::Joined {
            seq: join,
            result: Ok(cooperative(joined(generation, "m1", "m0", &[]))),
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
        skip_assignment: false,
    }
}

fn cooperative(mut outcome: JoinOutcome) -> JoinOutcome {
    if let JoinOutcome::Joined { protocol, .. } = &mut outcome {
        *protocol = Some("cooperative-sticky".to_owned());
    }
    outcome
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
    assert_eq!(names, ["sticky", "cooperative-sticky", "range", "roundrobin"]);
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

/// KIP-814: a static leader that rejoined a stable group is told to skip the assignment. It
/// syncs with none (the coordinator keeps the group's), gets its own partitions back, and
/// still watches the partition counts.
#[test]
fn a_leader_told_to_skip_assignment_syncs_with_none_and_keeps_watching_counts() {
    let mut h = H::new();
    let members = [
        ("m0", codec::encode_subscription("calls", &[], -1)),
        ("m1", codec::encode_subscription("calls", &[], -1)),
    ];
    let join = join_seq(&h.connect());
    let mut outcome = joined(5, "m0", "m0", &members);
    if let JoinOutcome::Joined { skip_assignment, .. } = &mut outcome {
        *skip_assignment = true;
    }
    let (seq, topics) = fetch(&h.input(Input::Joined {
        seq: join,
        result: Ok(outcome),
    }));
    assert_eq!(topics, ["calls"]);
    let sync = h.input(Input::PartitionCounts {
        seq,
        result: Ok(counts(&[("calls", Some(4))])),
    });
    assert_eq!(sync_plan(&sync), Plan::new(), "no assignments sent");
    let out = h.input(Input::Synced {
        seq: sync_seq(&sync),
        result: Ok(codec::encode_assignment(&[("calls", &[2, 3])])),
    });
    assert!(
        matches!(&out[..], [Action::Emit(Event::Assigned { partitions, .. })] if partitions == &[2, 3]),
        "{out:?}"
    );
    let (_, watched) = next_check(&mut h);
    assert_eq!(
        watched,
        ["calls"],
        "the leader still watches the partition counts"
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
    assert!(matches!(&rejoin[..], [Action::JoinGroup { reason, .. }] if reason.contains("partition count")));
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
    assert!(matches!(&rejoin[..], [Action::JoinGroup { reason, .. }] if reason.contains("partition count")));
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
    let (token, partitions) = revoke_token(&h.input(Input::Stop { scale_down: false }));
    assert_eq!(partitions, [0, 5]);
    assert!(
        h.input(Input::Stop { scale_down: false }).is_empty(),
        "idempotent"
    );
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
    assert!(h.input(Input::Stop { scale_down: false }).is_empty());
    let leave = h.input(Input::RevokeDone { token });
    assert!(matches!(&leave[..], [Action::LeaveGroup { .. }]), "{leave:?}");
}

#[test]
fn stop_while_joining_leaves_on_a_fresh_connection() {
    let mut h = H::new();
    let join = h.join_as_m1();
    let leave = h.input(Input::Stop { scale_down: false });
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
    assert!(h.input(Input::Stop { scale_down: false }).is_empty());
    assert!(h.m.is_stopped());
    let mut h = H::new();
    h.connect();
    assert!(
        h.input(Input::Stop { scale_down: false }).is_empty(),
        "JoinGroup without id in flight"
    );
    assert!(h.m.is_stopped());
}

#[test]
fn a_static_member_stops_without_leaving_after_its_revoke() {
    let mut h = H::static_member();
    h.stable(2, &[0, 5]);
    let (token, partitions) = revoke_token(&h.input(Input::Stop { scale_down: false }));
    assert_eq!(partitions, [0, 5], "deliveries still drain and commit");
    assert!(h.m.commit_target().is_ok());
    let done = h.input(Input::RevokeDone { token });
    assert!(
        done.is_empty(),
        "no LeaveGroup: the coordinator keeps our place {done:?}"
    );
    assert!(h.m.is_stopped());
}

#[test]
fn a_static_member_told_to_scale_down_leaves() {
    let mut h = H::static_member();
    h.stable(2, &[0]);
    let (token, _) = revoke_token(&h.input(Input::Stop { scale_down: true }));
    let leave = h.input(Input::RevokeDone { token });
    assert!(matches!(&leave[..], [Action::LeaveGroup { .. }]), "{leave:?}");
    // Also mid-join, where a dynamic member leaves on a fresh connection.
    let mut h = H::static_member();
    h.join_as_m1();
    assert!(h.input(Input::Stop { scale_down: false }).is_empty());
    assert!(h.m.is_stopped());
}

#[test]
fn a_static_member_whose_consumer_is_gone_leaves() {
    let mut h = H::static_member();
    h.stable(2, &[0, 1]);
    let leave = h.input(Input::EventsClosed);
    assert!(matches!(&leave[..], [Action::LeaveGroup { .. }]), "{leave:?}");
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
    revoke_token(&h.input(Input::Stop { scale_down: false }));
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
    assert!(matches!(&out[..], [Action::Emit(Event::Assigned { partitions, .. })] if partitions.is_empty()));
    // A rebalance with nothing owned rejoins without a Revoke.
    let hb = h.next_heartbeat();
    let out = h.input(Input::Heartbeat {
        seq: hb,
        result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
    });
    join_seq(&out);
}

// ---------------------------------------------------------------------------------------------
// cooperative rebalancing (KIP-429)

/// A heartbeat answered REBALANCE_IN_PROGRESS.
fn rebalance_signal(h: &mut H) -> Vec<Action> {
    let hb = h.next_heartbeat();
    h.input(Input::Heartbeat {
        seq: hb,
        result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
    })
}

#[test]
fn a_cooperative_member_rejoins_without_revoking_and_revokes_only_what_moves() {
    let mut h = H::new();
    h.stable_cooperative(2, &[0, 1, 2]);
    let rejoin = rebalance_signal(&mut h);
    let [Action::JoinGroup { seq, protocols, .. }] = &rejoin[..] else {
        panic!("straight to JoinGroup, no revoke: {rejoin:?}");
    };
    let sub = codec::decode_subscription(&protocols[0].1).unwrap();
    assert_eq!(
        (sub.owned_of("calls"), sub.generation),
        (vec![0, 1, 2], 2),
        "claims what it runs"
    );
    // 2 moves to a new member: Assigned with what stays, Revoke of 2 alone.
    let synced = h.sync_cooperative(*seq, 3, &[0, 1]);
    let [
        Action::Emit(Event::Assigned { partitions, .. }),
        Action::Emit(Event::Revoke {
            token,
            partitions: revoked,
        }),
    ] = &synced[..]
    else {
        panic!("{synced:?}");
    };
    assert_eq!(
        (partitions.as_slice(), revoked.as_slice()),
        (&[0, 1][..], &[2][..])
    );
    let target = h.m.commit_target().unwrap();
    assert_eq!(
        target.generation, 3,
        "commits go on in the new generation meanwhile"
    );
    // Revoked: the follow-up join claims what is left.
    let follow_up = h.input(Input::RevokeDone { token: *token });
    let [Action::JoinGroup { seq, protocols, .. }] = &follow_up[..] else {
        panic!("{follow_up:?}");
    };
    let sub = codec::decode_subscription(&protocols[0].1).unwrap();
    assert_eq!((sub.owned_of("calls"), sub.generation), (vec![0, 1], 3));
    let settled = h.sync_cooperative(*seq, 4, &[0, 1]);
    assert!(
        matches!(&settled[..], [Action::Emit(Event::Assigned { partitions, .. })] if partitions == &[0, 1]),
        "nothing more moves: {settled:?}"
    );
}

#[test]
fn a_cooperative_leader_withholds_partitions_another_member_still_owns() {
    let mut h = H::new();
    let members = [
        ("m0", codec::encode_subscription("calls", &[0, 1, 2], 7)),
        ("m1", codec::encode_subscription("calls", &[3, 4, 5], 7)),
        ("m2", codec::encode_subscription("calls", &[], -1)),
    ];
    let (seq, _) = lead(&mut h, 8, "cooperative-sticky", &members);
    let sync = h.input(Input::PartitionCounts {
        seq,
        result: Ok(counts(&[("calls", Some(6))])),
    });
    let announced = |actions: &[Action]| match actions {
        [Action::SyncGroup { assignments, .. }] => assignments
            .iter()
            .all(|(_, b)| codec::decode_member_assignment(b).is_ok_and(|a| a.follow_up)),
        other => panic!("{other:?}"),
    };
    assert!(announced(&sync), "everyone is told a follow-up comes");
    // The sticky target gives m2 one of m0's and one of m1's; this round it gets neither.
    assert_eq!(
        sync_plan(&sync),
        plan(&[
            ("m0", &[("calls", &[0, 1])]),
            ("m1", &[("calls", &[3, 4])]),
            ("m2", &[])
        ])
    );
    // The follow-up round, after both revoked: m2 gets them.
    let mut h = H::new();
    let members = [
        ("m0", codec::encode_subscription("calls", &[0, 1], 8)),
        ("m1", codec::encode_subscription("calls", &[3, 4], 8)),
        ("m2", codec::encode_subscription("calls", &[], 8)),
    ];
    let (seq, _) = lead(&mut h, 9, "cooperative-sticky", &members);
    let sync = h.input(Input::PartitionCounts {
        seq,
        result: Ok(counts(&[("calls", Some(6))])),
    });
    assert_eq!(
        sync_plan(&sync),
        plan(&[
            ("m0", &[("calls", &[0, 1])]),
            ("m1", &[("calls", &[3, 4])]),
            ("m2", &[("calls", &[2, 5])]),
        ])
    );
    assert!(!announced(&sync), "settled: no follow-up");
}

#[test]
fn an_announced_follow_up_makes_heartbeats_prompt_until_the_rebalance_comes() {
    let mut h = H::new();
    let join = h.join_as_m1();
    let sync = sync_seq(&h.input(Input::Joined {
        seq: join,
        result: Ok(cooperative(joined(3, "m1", "m0", &[]))),
    }));
    h.input(Input::Synced {
        seq: sync,
        result: Ok(codec::encode_assignment_with(&[("calls", [0])], true)),
    });
    let synced_at = h.now;
    let first = h.next_heartbeat();
    assert_eq!(
        h.now - synced_at,
        Duration::from_millis(300),
        "within 250 ms, in 100 ms ticks"
    );
    let again = h.input(Input::Heartbeat {
        seq: first,
        result: Ok(()),
    });
    assert!(again.is_empty());
    assert_eq!(h.m.next_deadline(), Some(h.now + Duration::from_millis(250)));
    // The follow-up arrives: rejoin at once, keeping partition 0.
    let seq = h.next_heartbeat();
    let rejoin = h.input(Input::Heartbeat {
        seq,
        result: Err(server(ApiKey::Heartbeat, ResponseError::RebalanceInProgress)),
    });
    assert!(matches!(&rejoin[..], [Action::JoinGroup { .. }]), "{rejoin:?}");
    // Without the announcement, the usual interval.
    let mut h = H::new();
    h.stable_cooperative(2, &[0]);
    let synced_at = h.now;
    h.next_heartbeat();
    assert_eq!(h.now - synced_at, HB);
}

#[test]
fn a_cooperative_member_whose_rejoin_keeps_failing_loses_its_partitions_after_the_session() {
    let mut h = H::new();
    h.stable_cooperative(2, &[0, 1]);
    // The REBALANCE_IN_PROGRESS answer was the last proof of life.
    let mut actions = rebalance_signal(&mut h);
    let started = h.now;
    loop {
        assert!(
            h.now - started <= SESSION + Duration::from_millis(200),
            "not lost when the session ended: {:?}",
            h.m
        );
        if let Some(partitions) = actions.iter().find_map(|a| match a {
            Action::Emit(Event::Lost { partitions }) => Some(partitions),
            _ => None,
        }) {
            assert_eq!(partitions, &[0, 1]);
            assert!(h.now - started >= SESSION, "not before the session ends");
            break;
        }
        actions = match actions.iter().find_map(|a| match a {
            Action::JoinGroup { seq, .. } => Some(*seq),
            _ => None,
        }) {
            Some(seq) => {
                let mut out = h.input(Input::Joined {
                    seq,
                    result: Err(server(
                        ApiKey::JoinGroup,
                        ResponseError::CoordinatorLoadInProgress,
                    )),
                });
                h.now += Duration::from_millis(200);
                out.extend(h.input(Input::Tick));
                out
            }
            None => h.advance(Duration::from_millis(200)),
        };
    }
}

#[test]
fn a_cooperative_member_told_its_generation_is_gone_while_rejoining_loses_its_partitions() {
    let mut h = H::new();
    h.stable_cooperative(2, &[0, 1]);
    let join = join_seq(&rebalance_signal(&mut h));
    let out = h.input(Input::Joined {
        seq: join,
        result: Err(server(ApiKey::JoinGroup, ResponseError::UnknownMemberId)),
    });
    assert!(
        matches!(&out[0], Action::Emit(Event::Lost { partitions }) if partitions == &[0, 1]),
        "{out:?}"
    );
}

#[test]
fn a_cooperative_member_stopped_during_a_partial_revoke_revokes_the_rest_then_leaves() {
    let mut h = H::new();
    h.stable_cooperative(2, &[0, 1, 2]);
    let join = join_seq(&rebalance_signal(&mut h));
    let synced = h.sync_cooperative(join, 3, &[0]);
    let Some(Action::Emit(Event::Revoke { token, .. })) = synced.last() else {
        panic!("{synced:?}");
    };
    assert!(h.input(Input::Stop { scale_down: false }).is_empty());
    let rest = h.input(Input::RevokeDone { token: *token });
    let [Action::Emit(Event::Revoke { token, partitions })] = &rest[..] else {
        panic!("{rest:?}");
    };
    assert_eq!(partitions, &[0]);
    let leave = h.input(Input::RevokeDone { token: *token });
    assert!(matches!(&leave[..], [Action::LeaveGroup { .. }]), "{leave:?}");
}

#[test]
fn a_cooperative_member_stopped_mid_rejoin_gives_its_partitions_up() {
    let mut h = H::new();
    h.stable_cooperative(2, &[0, 1]);
    join_seq(&rebalance_signal(&mut h));
    let out = h.input(Input::Stop { scale_down: false });
    assert!(
        matches!(&out[..], [Action::Emit(Event::Lost { partitions }), Action::LeaveGroup { fresh_connection: true, .. }] if partitions == &[0, 1]),
        "{out:?}"
    );
}

#[test]
fn an_eager_member_still_revokes_everything_before_rejoining() {
    let mut h = H::new();
    h.stable(2, &[0, 1, 2]);
    let (_, partitions) = revoke_token(&rebalance_signal(&mut h));
    assert_eq!(partitions, [0, 1, 2]);
}

// ---------------------------------------------------------------------------------------------
// start-up logging

/// Every log line's level and message.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<(slog::Level, String)>>>);

impl slog::Drain for Lines {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        if let Ok(mut lines) = self.0.lock() {
            lines.push((record.level(), record.msg().to_string()));
        }
        Ok(())
    }
}

impl Lines {
    /// The messages logged at warning level or above.
    fn warnings(&self) -> Vec<String> {
        let lines = self.0.lock().map(|l| l.clone()).unwrap_or_default();
        lines
            .into_iter()
            .filter(|(level, _)| level.as_usize() <= slog::Level::Warning.as_usize())
            .map(|(_, message)| message)
            .collect()
    }
}

/// A member logging into `Lines`.
fn logged() -> (H, Lines) {
    let lines = Lines::default();
    let log = slog::Logger::root(slog::Drain::fuse(lines.clone()), slog::o!());
    let now = Instant::now();
    let h = H {
        m: Member::new(&config(), log, now, Box::new(ZeroRng)),
        now,
    };
    (h, lines)
}

/// The FindCoordinator in `actions`, or, while a backoff holds it, the one a later tick (every
/// 100 ms) sends.
fn next_find(h: &mut H, actions: &[Action]) -> u64 {
    if !actions.is_empty() {
        return find_seq(actions);
    }
    for _ in 0..300 {
        let actions = h.advance(Duration::from_millis(100));
        if !actions.is_empty() {
            return find_seq(&actions);
        }
    }
    panic!("no FindCoordinator in 30 s: {:?}", h.m);
}

/// A new broker first has no coordinator (it is creating its offsets topic), then answers
/// NOT_COORDINATOR, and the topic bigpipe is creating appears a second after the join: all
/// expected, none of it a warning.
#[test]
fn a_start_on_a_new_broker_logs_no_warnings() {
    let (mut h, lines) = logged();
    let mut find = find_seq(&h.input(Input::Tick));
    for _ in 0..3 {
        let failed = h.input(Input::CoordinatorFound {
            seq: find,
            result: Err(server(
                ApiKey::FindCoordinator,
                ResponseError::CoordinatorNotAvailable,
            )),
        });
        find = next_find(&mut h, &failed);
    }
    let join = join_seq(&h.input(Input::CoordinatorFound {
        seq: find,
        result: Ok(()),
    }));
    let failed = h.input(Input::Joined {
        seq: join,
        result: Err(server(ApiKey::JoinGroup, ResponseError::NotCoordinator)),
    });
    let find = next_find(&mut h, &failed);
    let join = join_seq(&h.input(Input::CoordinatorFound {
        seq: find,
        result: Ok(()),
    }));
    let join = join_seq(&h.input(Input::Joined {
        seq: join,
        result: Ok(JoinOutcome::MemberIdRequired {
            member_id: "m0".to_owned(),
        }),
    }));
    let members = [("m0", codec::encode_subscription("calls", &[], -1))];
    let (seq, _) = fetch(&h.input(Input::Joined {
        seq: join,
        result: Ok(joined(1, "m0", "m0", &members)),
    }));
    let sync = h.input(Input::PartitionCounts {
        seq,
        result: Ok(counts(&[("calls", None)])),
    });
    h.input(Input::Synced {
        seq: sync_seq(&sync),
        result: Ok(codec::encode_assignment(&[("calls", &[] as &[i32])])),
    });
    let (seq, _) = next_check(&mut h);
    let rejoin = h.input(Input::PartitionCounts {
        seq,
        result: Ok(counts(&[("calls", Some(6))])),
    });
    assert!(!rejoin.is_empty(), "the new topic gets assigned: {rejoin:?}");
    assert_eq!(lines.warnings(), Vec::<String>::new());
}

/// The same states long after the start are worth a warning: once per missing topic.
#[test]
fn a_topic_still_missing_after_start_up_is_warned_about_once() {
    let (mut h, lines) = logged();
    let members = [("m0", codec::encode_subscription("calls", &[], -1))];
    let (seq, _) = lead(&mut h, 1, "sticky", &members);
    let sync = h.input(Input::PartitionCounts {
        seq,
        result: Ok(counts(&[("calls", None)])),
    });
    h.input(Input::Synced {
        seq: sync_seq(&sync),
        result: Ok(codec::encode_assignment(&[("calls", &[] as &[i32])])),
    });
    for _ in 0..40 {
        let (seq, _) = next_check(&mut h);
        h.input(Input::PartitionCounts {
            seq,
            result: Ok(counts(&[("calls", None)])),
        });
    }
    assert_eq!(
        lines.warnings(),
        [
            "subscribed topic does not exist (or this process may not describe it); assigning none of it until it does"
        ]
    );
}
