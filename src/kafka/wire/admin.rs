//! Admin calls on a [`BrokerConnection`]: topic creation with configs, partition counts and
//! cluster membership, answered as plain Rust values.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DescribeConfigsRequest, DescribeConfigsResponse, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerConnection, Error, Result, duration_ms};
use crate::kafka::connect::KafkaConnect;

/// CreateTopics v4 (KIP-464) is the first to accept -1 for "broker default" partitions and
/// replication factor.
const CREATE_TOPICS_BROKER_DEFAULTS: i16 = 4;

/// Metadata v4 is the first that can ask the broker *not* to auto-create the topics we query.
const METADATA_NO_AUTO_CREATE: i16 = 4;

/// DescribeConfigs resource type of a topic (Kafka's `ConfigResource.Type.TOPIC`).
const RESOURCE_TOPIC: i8 = 2;

/// The topic config that bounds a record batch.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions; -1 for the broker's `num.partitions`.
    pub partitions: i32,
    /// Replication factor; -1 for the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs, e.g. `("compression.type", "snappy")`.
    pub configs: Vec<(String, String)>,
}

/// The outcome of creating one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicCreation {
    /// The topic was created.
    Created,
    /// A topic of that name already exists (its partitions and configs are *not* checked).
    AlreadyExists,
    /// The broker refused (invalid config, policy, authorisation, too few brokers...).
    Failed {
        /// The Kafka error code.
        code: i16,
        /// The broker's message, or the error code's name when it sent none.
        message: String,
    },
}

/// One broker as listed in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker id (`node.id`).
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, when configured.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, ready for [`BrokerConnection::connect`].
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Cluster membership as seen by one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Live brokers.
    pub brokers: Vec<BrokerInfo>,
    /// The id reported as controller, if any. In KRaft mode this is a random live broker
    /// (clients cannot reach the controller quorum), so do not treat it as special.
    pub controller_id: Option<i32>,
    /// The cluster id, when the broker reports one (Metadata v2+).
    pub cluster_id: Option<String>,
}

impl ClusterInfo {
    /// The broker reported as controller, when it is among the listed brokers. In ZooKeeper
    /// mode it alone serves CreateTopics; in KRaft mode it is just some live broker.
    pub fn controller(&self) -> Option<&BrokerInfo> {
        let id = self.controller_id?;
        self.brokers.iter().find(|b| b.node_id == id)
    }
}

/// Connects as [`super::connect_any`] does, then moves to the controller the cluster reports
/// when that is another broker, for requests a ZooKeeper-mode broker serves only as the
/// controller (CreateTopics). Costs one Metadata round trip; with no controller reported (or
/// none listed) it keeps the first connection.
///
/// # Errors
/// Those of [`super::connect_any`] and [`cluster`]; a controller that cannot be reached is an
/// error too (in ZooKeeper mode no other broker would do).
pub async fn connect_controller(connect: &KafkaConnect) -> Result<BrokerConnection> {
    let conn = super::connect_any(connect).await?;
    let info = cluster(&conn).await?;
    match info.controller().map(BrokerInfo::addr) {
        Some(addr) if addr != conn.addr() => BrokerConnection::connect(&addr, connect).await,
        _ => Ok(conn),
    }
}

/// Creates topics in one CreateTopics request and reports each one's outcome, in the order of
/// `specs`.
///
/// Send it to the controller ([`connect_controller`]): a ZooKeeper-mode broker (Kafka 2.x, and
/// 3.x run that way) that is not the controller answers NOT_CONTROLLER for every topic; in KRaft
/// mode any broker forwards the request to the controller quorum. `timeout` is
/// sent to the broker as how long to wait for the creation to finish; the round trip may take
/// that long plus the connection's request timeout.
///
/// Per-topic refusals are results ([`TopicCreation::Failed`]), not errors.
///
/// # Errors
/// [`Error::VersionTooOld`] (nothing sent) if a spec uses -1 for partitions or replication
/// factor and the broker only speaks CreateTopics < v4; [`Error::MissingInResponse`] if the
/// broker leaves a topic out; any [`BrokerConnection::request`] error.
pub async fn create_topics(
    conn: &BrokerConnection,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<(String, TopicCreation)>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let version = conn.negotiate_version(ApiKey::CreateTopics, None)?;
    if version < CREATE_TOPICS_BROKER_DEFAULTS
        && specs
            .iter()
            .any(|s| s.partitions == -1 || s.replication_factor == -1)
    {
        return Err(Error::VersionTooOld {
            api: ApiKey::CreateTopics,
            version,
            needed: CREATE_TOPICS_BROKER_DEFAULTS,
            what: "broker-default partitions or replication factor (-1)",
        });
    }
    let topics = specs
        .iter()
        .map(|spec| {
            let configs = spec
                .configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect();
            // Set every field: the crate's defaults are 0 for partitions and replication
            // factor, not Kafka's -1.
            CreatableTopic::default()
                .with_name(topic_name(&spec.name))
                .with_num_partitions(spec.partitions)
                .with_replication_factor(spec.replication_factor)
                .with_configs(configs)
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(duration_ms(timeout))
        .with_validate_only(false);
    let resp = conn
        .request_with(
            req,
            Some(version),
            Some(conn.request_timeout().saturating_add(timeout)),
        )
        .await?;

    let mut results: BTreeMap<&str, TopicCreation> = resp
        .topics
        .iter()
        .map(|r| {
            let outcome = match ResponseError::try_from_code(r.error_code) {
                None => TopicCreation::Created,
                Some(ResponseError::TopicAlreadyExists) => TopicCreation::AlreadyExists,
                Some(error) => TopicCreation::Failed {
                    code: r.error_code,
                    // The crate decodes a null message as `None` but defaults it to `Some("")`.
                    message: r
                        .error_message
                        .as_deref()
                        .filter(|m| !m.is_empty())
                        .map_or_else(|| error.to_string(), str::to_owned),
                },
            };
            (r.name.0.as_str(), outcome)
        })
        .collect();
    specs
        .iter()
        .map(|spec| match results.remove(spec.name.as_str()) {
            Some(outcome) => Ok((spec.name.clone(), outcome)),
            None => Err(Error::MissingInResponse {
                api: ApiKey::CreateTopics,
                name: spec.name.clone(),
            }),
        })
        .collect()
}

/// Partition count of each topic in `topics`; `None` for a topic that does not exist.
///
/// The request asks the broker not to auto-create the topics (Metadata v4+; brokers that
/// only speak older versions may create them if `auto.create.topics.enable` is on).
///
/// # Errors
/// [`Error::Topic`] for a per-topic error other than UNKNOWN_TOPIC_OR_PARTITION (e.g.
/// TOPIC_AUTHORIZATION_FAILED, or the retriable LEADER_NOT_AVAILABLE while a topic is being
/// created); [`Error::Server`] for a top-level error (v13+); any
/// [`BrokerConnection::request`] error.
pub async fn partition_counts(
    conn: &BrokerConnection,
    topics: &[String],
) -> Result<BTreeMap<String, Option<i32>>> {
    if topics.is_empty() {
        // Also avoids Metadata v0's "empty list means every topic".
        return Ok(BTreeMap::new());
    }
    let version = conn.negotiate_version(ApiKey::Metadata, None)?;
    let requested = topics
        .iter()
        .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
        .collect();
    let mut req = MetadataRequest::default().with_topics(Some(requested));
    if version >= METADATA_NO_AUTO_CREATE {
        // The crate defaults this to true (and refuses `false` below v4).
        req = req.with_allow_auto_topic_creation(false);
    }
    let resp = conn.request_with_version(req, version).await?;
    if resp.error_code != 0 {
        return Err(Error::server(ApiKey::Metadata, resp.error_code, None));
    }

    let mut counts: BTreeMap<String, Option<i32>> = topics.iter().map(|t| (t.clone(), None)).collect();
    for topic in resp.topics {
        // Entries without a name answer topic-id lookups, which we never send.
        let Some(name) = topic.name else { continue };
        let count = match ResponseError::try_from_code(topic.error_code) {
            None => Some(i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX)),
            Some(ResponseError::UnknownTopicOrPartition) => None,
            Some(error) => {
                return Err(Error::Topic {
                    api: ApiKey::Metadata,
                    topic: name.0.to_string(),
                    error,
                    code: topic.error_code,
                });
            }
        };
        counts.insert(name.0.to_string(), count);
    }
    Ok(counts)
}

/// Each topic's effective `max.message.bytes` (its own override, else the broker's
/// `message.max.bytes`), from one DescribeConfigs request; `None` for a topic that does not
/// exist. Any broker can answer for topics.
///
/// # Errors
/// [`Error::Topic`] for a per-topic error other than UNKNOWN_TOPIC_OR_PARTITION (e.g.
/// TOPIC_AUTHORIZATION_FAILED); [`Error::MissingInResponse`] when a topic is left out or its
/// value is missing or not a number; any [`BrokerConnection::request`] error.
pub async fn max_message_bytes(
    conn: &BrokerConnection,
    topics: &[String],
) -> Result<BTreeMap<String, Option<usize>>> {
    if topics.is_empty() {
        return Ok(BTreeMap::new());
    }
    let resources = topics
        .iter()
        .map(|t| {
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(t.clone()))
                .with_configuration_keys(Some(vec![StrBytes::from_static_str(MAX_MESSAGE_BYTES)]))
        })
        .collect();
    let resp = conn
        .request(DescribeConfigsRequest::default().with_resources(resources))
        .await?;
    max_message_bytes_from(topics, &resp)
}

/// The answer of [`max_message_bytes`], read from a DescribeConfigs response.
fn max_message_bytes_from(
    topics: &[String],
    resp: &DescribeConfigsResponse,
) -> Result<BTreeMap<String, Option<usize>>> {
    let mut out = BTreeMap::new();
    for topic in topics {
        let missing = || Error::MissingInResponse {
            api: ApiKey::DescribeConfigs,
            name: format!("{topic} {MAX_MESSAGE_BYTES}"),
        };
        let result = resp
            .results
            .iter()
            .find(|r| r.resource_type == RESOURCE_TOPIC && r.resource_name.as_str() == topic)
            .ok_or_else(missing)?;
        let value = match ResponseError::try_from_code(result.error_code) {
            None => {
                let value = result
                    .configs
                    .iter()
                    .find(|c| c.name.as_str() == MAX_MESSAGE_BYTES)
                    .and_then(|c| c.value.as_deref())
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(missing)?;
                Some(value)
            }
            Some(ResponseError::UnknownTopicOrPartition) => None,
            Some(error) => {
                return Err(Error::Topic {
                    api: ApiKey::DescribeConfigs,
                    topic: topic.clone(),
                    error,
                    code: result.error_code,
                });
            }
        };
        out.insert(topic.clone(), value);
    }
    Ok(out)
}

/// The brokers, controller id and cluster id, from a Metadata request for no topics.
///
/// # Errors
/// [`Error::Server`] for a top-level error (v13+); any [`BrokerConnection::request`] error.
pub async fn cluster(conn: &BrokerConnection) -> Result<ClusterInfo> {
    // `Some(empty)` asks for no topics (v1+); v0 has no way to say so and lists them all,
    // which costs bandwidth but is still correct.
    let resp = conn
        .request(MetadataRequest::default().with_topics(Some(Vec::new())))
        .await?;
    if resp.error_code != 0 {
        return Err(Error::server(ApiKey::Metadata, resp.error_code, None));
    }
    Ok(ClusterInfo {
        brokers: resp
            .brokers
            .into_iter()
            .map(|b| BrokerInfo {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
            })
            .collect(),
        controller_id: Some(resp.controller_id.0).filter(|id| *id >= 0),
        cluster_id: resp.cluster_id.map(|c| c.to_string()),
    })
}

/// Number of live brokers, e.g. for a readiness check or to cap a replication factor.
///
/// # Errors
/// As [`cluster`].
pub async fn broker_count(conn: &BrokerConnection) -> Result<usize> {
    Ok(cluster(conn).await?.brokers.len())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Milliseconds for an `i32` protocol field, saturating instead of wrapping.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, DescribeConfigsResponse, MetadataRequest};
    use kafka_protocol::protocol::{Decodable, StrBytes, VersionRange};

    use super::super::testing::{Behaviour, FakeBroker, plain};
    use super::super::{BrokerConnection, Error};
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn spec(name: &str, rf: i16, configs: &[(&str, &str)]) -> TopicSpec {
        TopicSpec {
            name: name.to_owned(),
            partitions: 3,
            replication_factor: rf,
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    async fn broker(apis: &[(ApiKey, i16, i16)], topics: &[(&str, i32)]) -> FakeBroker {
        let apis: Vec<_> = apis
            .iter()
            .map(|&(k, min, max)| (k, VersionRange { min, max }))
            .collect();
        let behaviour = Behaviour {
            topics: topics.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect(),
            ..Behaviour::default()
        };
        FakeBroker::start_with(&apis, behaviour).await
    }

    fn last_body(broker: &FakeBroker) -> (i16, Bytes) {
        let last = broker.requests().pop().unwrap();
        (last.version, last.body)
    }

    #[tokio::test]
    async fn create_topics_reports_each_outcome_in_spec_order() {
        let broker = broker(&[(ApiKey::CreateTopics, 2, 7)], &[]).await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        let specs = [
            spec("new-a", -1, &[("compression.type", "snappy")]),
            spec("exists-b", 1, &[]),
            spec("bad-c", 1, &[("cleanup.policy", "nope")]),
        ];
        let got = create_topics(&conn, &specs, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("new-a".to_owned(), TopicCreation::Created),
                ("exists-b".to_owned(), TopicCreation::AlreadyExists),
                (
                    "bad-c".to_owned(),
                    TopicCreation::Failed {
                        code: 40,
                        message: "Invalid config.".to_owned()
                    }
                ),
            ]
        );

        let (version, mut body) = last_body(&broker);
        assert_eq!(version, 7);
        let sent = CreateTopicsRequest::decode(&mut body, version).unwrap();
        assert_eq!(sent.timeout_ms, 10_000);
        let first = &sent.topics[0];
        assert_eq!(first.name.0.as_str(), "new-a");
        assert_eq!((first.num_partitions, first.replication_factor), (3, -1));
        assert_eq!(first.configs[0].name.as_str(), "compression.type");
        assert_eq!(first.configs[0].value.as_deref(), Some("snappy"));
    }

    #[tokio::test]
    async fn create_topics_refuses_broker_defaults_below_v4() {
        let broker = broker(&[(ApiKey::CreateTopics, 2, 3)], &[]).await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        let err = create_topics(&conn, &[spec("a", -1, &[])], T).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::VersionTooOld {
                    version: 3,
                    needed: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(broker.seen().len(), 1, "only ApiVersions was sent");

        // An explicit replication factor works at v3 (non-flexible header v1).
        let got = create_topics(&conn, &[spec("a", 1, &[])], T).await.unwrap();
        assert_eq!(got, vec![("a".to_owned(), TopicCreation::Created)]);
        assert_eq!(broker.seen().last(), Some(&(ApiKey::CreateTopics as i16, 3)));
    }

    #[tokio::test]
    async fn partition_counts_marks_missing_topics() {
        let broker = broker(&[(ApiKey::Metadata, 0, 12)], &[("a", 3), ("b", 1)]).await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        let got = partition_counts(&conn, &["a".to_owned(), "missing".to_owned()])
            .await
            .unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![("a".to_owned(), Some(3)), ("missing".to_owned(), None)]
        );
        let (version, mut body) = last_body(&broker);
        let sent = MetadataRequest::decode(&mut body, version).unwrap();
        assert!(!sent.allow_auto_topic_creation);

        let err = partition_counts(&conn, &["forbidden-x".to_owned()])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Topic { topic, code: 29, .. } if topic == "forbidden-x"),
            "{err:?}"
        );

        // Nothing to ask: no request at all.
        let before = broker.seen().len();
        assert!(partition_counts(&conn, &[]).await.unwrap().is_empty());
        assert_eq!(broker.seen().len(), before);
    }

    #[tokio::test]
    async fn partition_counts_on_an_old_broker_leaves_auto_create_alone() {
        // Below v4 the crate refuses `allow_auto_topic_creation = false`; we must not set it.
        let broker = broker(&[(ApiKey::Metadata, 0, 3)], &[("a", 2)]).await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        let got = partition_counts(&conn, &["a".to_owned()]).await.unwrap();
        assert_eq!(got.get("a"), Some(&Some(2)));
    }

    fn describe_result(topic: &str, code: i16, value: Option<&str>) -> DescribeConfigsResult {
        use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
        let configs = value
            .map(|v| {
                vec![
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str(MAX_MESSAGE_BYTES))
                        .with_value(Some(StrBytes::from_string(v.to_owned()))),
                ]
            })
            .unwrap_or_default();
        DescribeConfigsResult::default()
            .with_error_code(code)
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            .with_configs(configs)
    }

    #[test]
    fn max_message_bytes_reads_each_topic_and_marks_missing_ones() {
        let resp = DescribeConfigsResponse::default().with_results(vec![
            describe_result("small", 0, Some("20000")),
            describe_result("gone", 3, None),
            describe_result("default", 0, Some("1048588")),
        ]);
        let topics = ["default".to_owned(), "gone".to_owned(), "small".to_owned()];
        let got = max_message_bytes_from(&topics, &resp).unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![
                ("default".to_owned(), Some(1_048_588)),
                ("gone".to_owned(), None),
                ("small".to_owned(), Some(20_000)),
            ]
        );
    }

    #[test]
    fn max_message_bytes_refuses_errors_and_unreadable_values() {
        let topics = ["t".to_owned()];
        let denied = DescribeConfigsResponse::default().with_results(vec![describe_result("t", 29, None)]);
        let err = max_message_bytes_from(&topics, &denied).unwrap_err();
        assert!(matches!(&err, Error::Topic { code: 29, .. }), "{err:?}");
        let garbled =
            DescribeConfigsResponse::default().with_results(vec![describe_result("t", 0, Some("lots"))]);
        let err = max_message_bytes_from(&topics, &garbled).unwrap_err();
        assert!(matches!(&err, Error::MissingInResponse { .. }), "{err:?}");
        let absent = DescribeConfigsResponse::default();
        assert!(max_message_bytes_from(&topics, &absent).is_err());
    }

    fn broker_info(node_id: i32, port: i32) -> BrokerInfo {
        BrokerInfo {
            node_id,
            host: "127.0.0.1".into(),
            port,
            rack: None,
        }
    }

    #[test]
    fn controller_is_the_listed_broker_with_the_controller_id() {
        let mut info = ClusterInfo {
            brokers: vec![broker_info(1, 1001), broker_info(2, 1002)],
            controller_id: Some(2),
            cluster_id: None,
        };
        assert_eq!(
            info.controller().map(BrokerInfo::addr).as_deref(),
            Some("127.0.0.1:1002")
        );
        // Reported but not listed (it just died), or not reported at all: none.
        info.controller_id = Some(3);
        assert_eq!(info.controller(), None);
        info.controller_id = None;
        assert_eq!(info.controller(), None);
    }

    async fn metadata_fake(behaviour: Behaviour) -> FakeBroker {
        let apis = [(ApiKey::Metadata, VersionRange { min: 0, max: 12 })];
        FakeBroker::start_with(&apis, behaviour).await
    }

    #[tokio::test]
    async fn connect_controller_moves_to_the_controller_another_broker_names() {
        let controller = metadata_fake(Behaviour::default()).await;
        let other = metadata_fake(Behaviour {
            controller: Some(controller.addr()),
            ..Behaviour::default()
        })
        .await;
        let conn = connect_controller(&KafkaConnect::plaintext(vec![other.addr()], "t", T))
            .await
            .unwrap();
        assert_eq!(conn.addr(), controller.addr());
        // The first broker was only asked for Metadata.
        assert_eq!(other.seen().last(), Some(&(ApiKey::Metadata as i16, 12)));
    }

    #[tokio::test]
    async fn connect_controller_stays_when_the_first_broker_is_the_controller() {
        let only = metadata_fake(Behaviour {
            advertise_self: true,
            ..Behaviour::default()
        })
        .await;
        let conn = connect_controller(&KafkaConnect::plaintext(vec![only.addr()], "t", T))
            .await
            .unwrap();
        assert_eq!(conn.addr(), only.addr());
    }

    #[tokio::test]
    async fn connect_controller_fails_when_the_controller_cannot_be_reached() {
        let other = metadata_fake(Behaviour {
            controller: Some(FakeBroker::dead_addr().await),
            ..Behaviour::default()
        })
        .await;
        assert!(
            connect_controller(&KafkaConnect::plaintext(vec![other.addr()], "t", T))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn cluster_lists_brokers() {
        let broker = broker(&[(ApiKey::Metadata, 0, 12)], &[]).await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        let info = cluster(&conn).await.unwrap();
        assert_eq!(info.brokers.len(), 1);
        assert_eq!(info.brokers[0].addr(), "127.0.0.1:9092");
        assert_eq!(info.controller_id, Some(1));
        assert_eq!(broker_count(&conn).await.unwrap(), 1);
    }
}
