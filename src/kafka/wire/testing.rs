//! A scripted in-process Kafka broker on 127.0.0.1:0 for the wire layer's unit tests: it
//! speaks real frames and headers through kafka-protocol's broker-side encoders.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
    api_versions_response::ApiVersion,
    create_topics_response::CreatableTopicResult,
    fetch_response::{FetchableTopicResponse, PartitionData},
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, StrBytes, VersionRange, decode_request_header_from_buffer,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::frame::{read_frame, write_frame};
use crate::kafka::connect::KafkaConnect;

const MAX: usize = 1 << 20;

/// Plaintext, unauthenticated settings with client id "t" (the address is given per connect).
pub(crate) fn plain(timeout: Duration) -> KafkaConnect {
    KafkaConnect::plaintext(vec![], "t", timeout)
}

/// How the fake answers every request other than ApiVersions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Answer {
    /// A correct response.
    #[default]
    Normal,
    /// A correct response whose correlation id is off by 1000.
    WrongCorrelation,
    /// Read the request and never answer.
    Never,
    /// A correct response after a delay.
    After(Duration),
    /// Close the socket instead of answering.
    Close,
}

/// The fake's script.
#[derive(Debug, Clone)]
pub(crate) struct Behaviour {
    /// Highest ApiVersions version understood; a higher request gets a v0 UNSUPPORTED_VERSION.
    pub(crate) api_versions_max: i16,
    /// Top-level error code of every ApiVersions answer.
    pub(crate) api_versions_error: i16,
    /// See [`Answer`].
    pub(crate) answer: Answer,
    /// Existing topics and their partition counts, for Metadata.
    pub(crate) topics: Vec<(String, i32)>,
    /// Metadata lists the fake itself as the broker (instead of 127.0.0.1:9092), so that a
    /// client following leaders comes back to it.
    pub(crate) advertise_self: bool,
    /// Metadata also lists this `host:port` as broker 2 and names it the controller, as a
    /// ZooKeeper-mode cluster whose controller is another broker does.
    pub(crate) controller: Option<String>,
    /// The `records` bytes of every Fetch answer.
    pub(crate) fetch_records: Bytes,
    /// High watermark of every Fetch answer.
    pub(crate) high_watermark: i64,
    /// Partition error codes for the next Fetch answers, one per request, then 0.
    pub(crate) fetch_errors: Arc<Mutex<VecDeque<i16>>>,
    /// Serve TLS with this configuration.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Enable SASL PLAIN (only) for this user and password; list SaslHandshake and
    /// SaslAuthenticate in the APIs too.
    pub(crate) sasl_plain: Option<(String, String)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            api_versions_max: 3,
            api_versions_error: 0,
            answer: Answer::Normal,
            topics: Vec::new(),
            advertise_self: false,
            controller: None,
            fetch_records: Bytes::new(),
            high_watermark: 0,
            fetch_errors: Arc::default(),
            tls: None,
            sasl_plain: None,
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) api_key: i16,
    pub(crate) version: i16,
    /// The request body (after the header).
    pub(crate) body: Bytes,
}

/// The running fake; dropping it stops the listener and every connection task.
#[derive(Debug)]
pub(crate) struct FakeBroker {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts the connection tasks.
        self.task.abort();
    }
}

impl FakeBroker {
    pub(crate) async fn start(apis: &[(ApiKey, VersionRange)]) -> Self {
        Self::start_with(apis, Behaviour::default()).await
    }

    pub(crate) async fn start_with(apis: &[(ApiKey, VersionRange)], behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let apis = Arc::new(apis.to_vec());
        let behaviour = Arc::new(behaviour);
        let own = addr.clone();
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                let mut conns = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (own, apis, behaviour, seen) = (
                        own.clone(),
                        Arc::clone(&apis),
                        Arc::clone(&behaviour),
                        Arc::clone(&seen),
                    );
                    conns.spawn(async move {
                        match behaviour.tls.clone() {
                            Some(config) => {
                                // A failed handshake is the client's test outcome: just close.
                                let accepted = tokio_rustls::TlsAcceptor::from(config).accept(stream).await;
                                if let Ok(tls) = accepted {
                                    serve(tls, own, apis, behaviour, seen).await;
                                }
                            }
                            None => serve(stream, own, apis, behaviour, seen).await,
                        }
                    });
                }
            }
        });
        Self { addr, seen, task }
    }

    /// An address nobody listens on: bound, then released.
    pub(crate) async fn dead_addr() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    }

    pub(crate) fn addr(&self) -> String {
        self.addr.clone()
    }

    /// `(api_key, version)` of every request received, in order.
    pub(crate) fn seen(&self) -> Vec<(i16, i16)> {
        self.requests().iter().map(|s| (s.api_key, s.version)).collect()
    }

    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    own: String,
    apis: Arc<Vec<(ApiKey, VersionRange)>>,
    behaviour: Arc<Behaviour>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    while let Ok(mut frame) = read_frame(&mut stream, MAX).await {
        let header = decode_request_header_from_buffer(&mut frame).unwrap();
        let (key, version, correlation_id) = (
            header.request_api_key,
            header.request_api_version,
            header.correlation_id,
        );
        seen.lock().unwrap().push(Seen {
            api_key: key,
            version,
            body: frame.clone(),
        });
        let api = ApiKey::try_from(key).unwrap();

        if api == ApiKey::ApiVersions {
            let reply = api_versions(&apis, &behaviour, version, &mut frame, correlation_id);
            write_frame(&mut stream, &reply, MAX).await.unwrap();
            continue;
        }
        if let Some((user, password)) = &behaviour.sasl_plain {
            let reply = match api {
                ApiKey::SaslHandshake => {
                    let req = SaslHandshakeRequest::decode(&mut frame, version).unwrap();
                    let code = if req.mechanism.as_str() == "PLAIN" { 0 } else { 33 };
                    let resp = SaslHandshakeResponse::default()
                        .with_error_code(code)
                        .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
                    Some(encode(&resp, version, correlation_id))
                }
                ApiKey::SaslAuthenticate => {
                    let req = SaslAuthenticateRequest::decode(&mut frame, version).unwrap();
                    let expected = format!("\0{user}\0{password}");
                    let resp = if req.auth_bytes.as_ref() == expected.as_bytes() {
                        SaslAuthenticateResponse::default()
                    } else {
                        SaslAuthenticateResponse::default()
                            .with_error_code(58)
                            .with_error_message(Some(StrBytes::from_static_str(
                                "Authentication failed: Invalid username or password",
                            )))
                    };
                    Some(encode(&resp, version, correlation_id))
                }
                _ => None,
            };
            if let Some(reply) = reply {
                write_frame(&mut stream, &reply, MAX).await.unwrap();
                continue;
            }
        }

        let mut correlation_id = correlation_id;
        match behaviour.answer {
            Answer::Normal => {}
            Answer::WrongCorrelation => correlation_id += 1000,
            Answer::Never => std::future::pending::<()>().await,
            Answer::After(d) => tokio::time::sleep(d).await,
            Answer::Close => return,
        }
        let reply = match api {
            ApiKey::Metadata => {
                let req = MetadataRequest::decode(&mut frame, version).unwrap();
                let resp = metadata(&behaviour, &own, &req, version);
                encode::<MetadataResponse>(&resp, version, correlation_id)
            }
            ApiKey::CreateTopics => {
                let req = CreateTopicsRequest::decode(&mut frame, version).unwrap();
                let resp = create_topics(&req, version);
                encode::<CreateTopicsResponse>(&resp, version, correlation_id)
            }
            ApiKey::Fetch => {
                let req = FetchRequest::decode(&mut frame, version).unwrap();
                encode::<FetchResponse>(&fetch(&behaviour, &req), version, correlation_id)
            }
            other => panic!("fake broker has no answer for {other:?}"),
        };
        write_frame(&mut stream, &reply, MAX).await.unwrap();
    }
}

fn encode<R: Encodable + HeaderVersion>(body: &R, version: i16, correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, R::header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn api_versions(
    apis: &[(ApiKey, VersionRange)],
    behaviour: &Behaviour,
    version: i16,
    body: &mut Bytes,
    correlation_id: i32,
) -> Bytes {
    let own = ApiVersion::default()
        .with_api_key(ApiKey::ApiVersions as i16)
        .with_min_version(0)
        .with_max_version(behaviour.api_versions_max);
    if version > behaviour.api_versions_max {
        // KIP-511: answer an unknown ApiVersions version with a v0 body and our own range.
        let resp = ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(vec![own]);
        return encode(&resp, 0, correlation_id);
    }
    let req = ApiVersionsRequest::decode(body, version).unwrap();
    if version >= 3 {
        // Real brokers reject v3+ requests without software name/version.
        assert!(!req.client_software_name.is_empty());
        assert!(!req.client_software_version.is_empty());
    }
    let mut keys = vec![own];
    keys.extend(apis.iter().map(|(k, r)| {
        ApiVersion::default()
            .with_api_key(*k as i16)
            .with_min_version(r.min)
            .with_max_version(r.max)
    }));
    let resp = ApiVersionsResponse::default()
        .with_error_code(behaviour.api_versions_error)
        .with_api_keys(keys);
    encode(&resp, version, correlation_id)
}

fn metadata(behaviour: &Behaviour, own: &str, req: &MetadataRequest, version: i16) -> MetadataResponse {
    let port = match own.rsplit_once(':') {
        Some((_, port)) if behaviour.advertise_self => port.parse().unwrap(),
        _ => 9092,
    };
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(1))
        .with_host(StrBytes::from_static_str("127.0.0.1"))
        .with_port(port);
    let requested: Vec<String> = req
        .topics
        .iter()
        .flatten()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    let topics = requested
        .into_iter()
        .map(|name| {
            let found = behaviour.topics.iter().find(|(n, _)| *n == name);
            let topic = MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
            match found {
                Some((_, partitions)) => topic.with_partitions(
                    (0..*partitions)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(1))
                        })
                        .collect(),
                ),
                // A name starting with "forbidden" gets TOPIC_AUTHORIZATION_FAILED.
                None if name.starts_with("forbidden") => topic.with_error_code(29),
                None => topic.with_error_code(3),
            }
        })
        .collect();
    let mut brokers = vec![broker];
    let mut controller = BrokerId(1);
    if let Some((host, port)) = behaviour.controller.as_deref().and_then(|a| a.rsplit_once(':')) {
        brokers.push(
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(2))
                .with_host(StrBytes::from_string(host.to_owned()))
                .with_port(port.parse().unwrap()),
        );
        controller = BrokerId(2);
    }
    let resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    // The encoder refuses fields the version lacks (controller_id is v1+).
    if version >= 1 {
        resp.with_controller_id(controller)
    } else {
        resp
    }
}

/// Topic names script the result: `exists*` already exists, `bad*` has an invalid config,
/// anything else is created. Results come back in reverse order, to prove the client does
/// not rely on order.
fn create_topics(req: &CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let results = req
        .topics
        .iter()
        .rev()
        .map(|t| {
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            if t.name.0.starts_with("exists") {
                result
                    .with_error_code(36)
                    .with_error_message(Some(StrBytes::from_static_str("Topic exists.")))
            } else if t.name.0.starts_with("bad") {
                result
                    .with_error_code(40)
                    .with_error_message(Some(StrBytes::from_static_str("Invalid config.")))
            } else if version >= 5 {
                result
                    .with_error_message(None)
                    .with_num_partitions(t.num_partitions)
                    .with_replication_factor(t.replication_factor)
            } else {
                result.with_error_message(None)
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

/// Answers every requested partition with the scripted records, or the next scripted error.
fn fetch(behaviour: &Behaviour, req: &FetchRequest) -> FetchResponse {
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = behaviour.fetch_errors.lock().unwrap().pop_front().unwrap_or(0);
                    let data = PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(error)
                        .with_high_watermark(behaviour.high_watermark);
                    if error == 0 {
                        data.with_records(Some(behaviour.fetch_records.clone()))
                    } else {
                        data.with_records(Some(Bytes::new()))
                    }
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}
