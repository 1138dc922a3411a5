//! Keeps the configured topics present and their partition counts current.
//!
//! One task per process: it lists topics through rskafka, creates the missing
//! ones (with `compression.type=snappy`, a codec bigpipe can read back, so the
//! broker recompresses batches that other producers wrote with zstd or lz4),
//! records partition counts in the [`PartitionTable`] and each topic's
//! `max.message.bytes` in the [`TopicLimits`] (so ingest refuses a call Kafka
//! would refuse), and tells `/readyz` whether Kafka answers and every
//! configured topic exists.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use slog::{Logger, info, warn};
use tokio_util::sync::CancellationToken;

use super::client::{self, KafkaClient, bounded};
use super::metadata::PartitionTable;
use super::topic_limits::TopicLimits;
use super::wire;
use super::wire::admin::{TopicCreation, TopicSpec};

/// Why one metadata pass failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// Listing the topics failed (no connection, or no answer in time).
    #[error(transparent)]
    List(#[from] client::Error),
    /// Creating the missing topics failed (no connection, or the request failed).
    #[error(transparent)]
    Create(#[from] wire::Error),
}

/// A topic bigpipe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedTopic {
    /// Topic name.
    pub name: String,
    /// Partitions to create it with.
    pub partitions: i32,
    /// Replication factor to create it with (-1: the broker default).
    pub replication_factor: i16,
    /// How Kafka keeps its records.
    pub retention: Retention,
}

/// How a topic bigpipe creates keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// The broker's defaults (calls, tiers, dead letters: the operator's choice).
    Default,
    /// `cleanup.policy=compact` (the control topic: only each key's latest value matters, and
    /// it must outlive any retention time).
    Compact,
    /// Deleted once older than this (the idempotency claims: nothing older is read), in
    /// segments of at most an hour so that they go close to on time.
    Expire(Duration),
}

impl Retention {
    /// The topic configs that say it.
    fn configs(self) -> Vec<(String, String)> {
        match self {
            Self::Default => Vec::new(),
            Self::Compact => vec![("cleanup.policy".into(), "compact".into())],
            Self::Expire(after) => {
                let ms = after.as_millis().max(1);
                vec![
                    ("cleanup.policy".into(), "delete".into()),
                    ("retention.ms".into(), ms.to_string()),
                    ("segment.ms".into(), ms.min(3_600_000).to_string()),
                ]
            }
        }
    }
}

/// Whether Kafka is reachable and every configured topic exists.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    detail: Mutex<String>,
}

impl Readiness {
    /// True once Kafka answered and every configured topic was present.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Why bigpipe is (not) ready, for `/readyz`.
    pub fn detail(&self) -> String {
        self.detail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, ready: bool, detail: String) {
        *self
            .detail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = detail;
        self.ready.store(ready, Ordering::Release);
    }
}

/// Longest wait between attempts while Kafka refuses our credentials or certificate.
pub const MAX_SECURITY_BACKOFF: Duration = Duration::from_secs(30);

/// 1 s, 2 s, 4 s ... up to [`MAX_SECURITY_BACKOFF`], for the `n`th failure in a row (from 1).
fn security_backoff(n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_SECURITY_BACKOFF)
}

impl TopicsError {
    /// `Some("authentication failed")` or `Some("TLS handshake failed")` when an operator must
    /// fix credentials or certificates.
    fn security(&self) -> Option<&'static str> {
        match self {
            Self::List(e) => e.connect_error().and_then(wire::Error::security_failure),
            Self::Create(e) => e.security_failure(),
        }
    }

    /// `kafka authentication failed: ...`, `kafka TLS handshake failed: ...` or
    /// `kafka unreachable: ...`, with the causes on one line, as `/readyz` and the log say it.
    fn detail(&self) -> String {
        let text = match self {
            Self::List(e) => wire::error_chain(e),
            Self::Create(e) => wire::error_chain(e),
        };
        format!("kafka {}: {text}", self.security().unwrap_or("unreachable"))
    }
}

/// Everything the topic task needs.
#[derive(Debug)]
pub struct TopicWatcher {
    /// Topics to keep present; a reload replaces the list.
    pub topics: Arc<ArcSwap<Vec<WantedTopic>>>,
    /// The shared client.
    pub client: Arc<KafkaClient>,
    /// Where partition counts go.
    pub table: Arc<PartitionTable>,
    /// Where each topic's `max.message.bytes` goes.
    pub limits: Arc<TopicLimits>,
    /// Where readiness goes.
    pub readiness: Arc<Readiness>,
    /// Time between metadata refreshes once ready.
    pub refresh: Duration,
    /// Logger.
    pub log: Logger,
}

impl TopicWatcher {
    /// Runs until `stop` is cancelled. While not ready it retries every second, except after
    /// a security failure (wrong credentials, untrusted certificate), which no quick retry
    /// fixes: then it backs off from 1 s to [`MAX_SECURITY_BACKOFF`]. A failure is logged when
    /// it first happens and when its text changes, not on every retry.
    pub async fn run(self, stop: CancellationToken) {
        let mut last_failure: Option<String> = None;
        let mut security_failures: u32 = 0;
        loop {
            let wait = match self.refresh_once().await {
                Ok(missing) if missing.is_empty() => {
                    if !self.readiness.is_ready() {
                        info!(self.log, "kafka ready"; "topics" => self.topics.load().len());
                    }
                    self.readiness
                        .set(true, "kafka reachable, all topics present".into());
                    last_failure = None;
                    security_failures = 0;
                    self.refresh
                }
                Ok(missing) => {
                    let detail = format!("topics missing: {}", missing.join(", "));
                    // A refusal (no Create permission, a bad replication factor) repeats every
                    // second until someone acts: say it when it starts or changes, not each time.
                    if last_failure.as_deref() != Some(detail.as_str()) {
                        if detail.contains("not created:") {
                            warn!(self.log, "kafka refused to create topics"; "detail" => &detail);
                        } else {
                            info!(self.log, "creating topics"; "detail" => &detail);
                        }
                        last_failure = Some(detail.clone());
                    }
                    self.readiness.set(false, detail);
                    security_failures = 0;
                    Duration::from_secs(1)
                }
                Err(failure) => {
                    let detail = failure.detail();
                    if last_failure.as_deref() != Some(detail.as_str()) {
                        warn!(self.log, "kafka metadata refresh failed"; "error" => &detail);
                        last_failure = Some(detail.clone());
                    }
                    self.readiness.set(false, detail);
                    if failure.security().is_some() {
                        security_failures = security_failures.saturating_add(1);
                        security_backoff(security_failures)
                    } else {
                        security_failures = 0;
                        Duration::from_secs(1)
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One pass: list topics, record partition counts, create missing topics.
    /// Returns the topics still missing.
    async fn refresh_once(&self) -> Result<Vec<String>, TopicsError> {
        let client = self.client.get().await?;
        let listed = bounded("list topics", self.client.timeout(), client.list_topics())
            .await?
            .map_err(client::Error::from)?;
        let topics = self.topics.load_full();
        let mut missing = vec![];
        let mut present = vec![];
        for wanted in topics.iter() {
            match listed.iter().find(|t| t.name == wanted.name) {
                Some(t) => {
                    let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
                    self.table.set(&wanted.name, count);
                    present.push(wanted.name.clone());
                }
                None => missing.push(wanted),
            }
        }
        // Before readiness: a ready bigpipe already knows what each topic can take.
        self.refresh_limits(&present).await;
        if missing.is_empty() {
            return Ok(vec![]);
        }
        let refused = self.create(&missing).await?;
        Ok(missing
            .into_iter()
            .map(|t| match refused.iter().find(|(name, _)| *name == t.name) {
                Some((name, why)) => format!("{name} (not created: {why})"),
                None => t.name.clone(),
            })
            .collect())
    }

    /// Reads `max.message.bytes` of `topics` into the limits table. A failure is logged and
    /// keeps the values known so far (Kafka's default for topics never described): it must
    /// not make bigpipe unready, since calls under the default still flow.
    async fn refresh_limits(&self, topics: &[String]) {
        if topics.is_empty() {
            return;
        }
        let described = match wire::connect_any(self.client.connect()).await {
            Ok(conn) => wire::admin::max_message_bytes(&conn, topics).await,
            Err(e) => Err(e),
        };
        match described {
            Ok(found) => {
                for (topic, bytes) in found {
                    let Some(bytes) = bytes else { continue };
                    let before = self.limits.set(&topic, bytes);
                    if before != Some(bytes) {
                        info!(self.log, "topic max.message.bytes"; "topic" => &topic, "bytes" => bytes,
                            "before" => ?before);
                    }
                }
            }
            Err(e) => {
                warn!(self.log, "cannot read topics' max.message.bytes, keeping the known values";
                    "error" => wire::error_chain(&e));
            }
        }
    }

    /// Asks Kafka to create `missing`; returns the topics it refused, with its reason
    /// (e.g. `TOPIC_AUTHORIZATION_FAILED` when bigpipe's principal may not create them).
    async fn create(&self, missing: &[&WantedTopic]) -> Result<Vec<(String, String)>, TopicsError> {
        let timeout = self.client.timeout();
        // The controller: on ZooKeeper-mode brokers (Kafka 2.x) no other broker creates topics.
        let conn = wire::admin::connect_controller(self.client.connect()).await?;
        let specs: Vec<TopicSpec> = missing
            .iter()
            .map(|t| {
                let mut configs = vec![("compression.type".into(), "snappy".into())];
                configs.extend(t.retention.configs());
                TopicSpec {
                    name: t.name.clone(),
                    partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    configs,
                }
            })
            .collect();
        let results = wire::admin::create_topics(&conn, &specs, timeout).await?;
        let mut refused = Vec::new();
        for (name, outcome) in results {
            match outcome {
                TopicCreation::Created => info!(self.log, "topic created"; "topic" => &name),
                TopicCreation::AlreadyExists => {}
                TopicCreation::Failed { code, message } => {
                    // The error's name as Kafka's docs and ACL guides spell it, then the text.
                    let kind = kafka_protocol::error::ResponseError::try_from_code(code)
                        .map_or_else(|| format!("error code {code}"), |e| format!("{e:?}"));
                    refused.push((name, format!("{kind}: {message}")));
                }
            }
        }
        Ok(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_says_its_topic_configs() {
        assert!(Retention::Default.configs().is_empty());
        assert_eq!(
            Retention::Compact.configs(),
            [("cleanup.policy".to_owned(), "compact".to_owned())]
        );
        let day = Retention::Expire(Duration::from_secs(86_400)).configs();
        assert_eq!(day[1], ("retention.ms".to_owned(), "86400000".to_owned()));
        assert_eq!(day[2], ("segment.ms".to_owned(), "3600000".to_owned()));
        let short = Retention::Expire(Duration::from_secs(60)).configs();
        assert_eq!(short[2], ("segment.ms".to_owned(), "60000".to_owned()));
    }

    #[test]
    fn security_backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=8).map(|n| security_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(security_backoff(u32::MAX), MAX_SECURITY_BACKOFF);
    }

    #[test]
    fn readiness_detail_names_authentication_and_tls_failures() {
        let auth = wire::Error::Authentication {
            addr: "b:9095".into(),
            mechanism: "SCRAM-SHA-256",
            message: "SASL_AUTHENTICATION_FAILED".into(),
        };
        let tls = wire::Error::Tls {
            addr: "b:9094".into(),
            source: std::io::Error::other("invalid peer certificate: UnknownIssuer"),
        };
        let down = wire::Error::Connect {
            addr: "b:9092".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let all = wire::Error::NoBrokerReachable {
            failures: vec![("b:9092".into(), down), ("b:9095".into(), auth)],
        };
        let detail = TopicsError::Create(all).detail();
        assert!(
            detail.starts_with("kafka authentication failed: no bootstrap broker reachable"),
            "{detail}"
        );
        assert!(detail.contains("SASL_AUTHENTICATION_FAILED"), "{detail}");
        let detail = TopicsError::Create(tls).detail();
        assert!(detail.starts_with("kafka TLS handshake failed: "), "{detail}");
        assert!(detail.contains("UnknownIssuer"), "{detail}");
        let client = super::super::client::Error::Timeout {
            what: "connect",
            after: Duration::from_secs(1),
        };
        assert!(
            TopicsError::List(client)
                .detail()
                .starts_with("kafka unreachable: ")
        );
    }
}
