//! The validated, typed configuration snapshot that the rest of bigpipe reads.
//!
//! Every value here has passed validation: counts that must be positive are positive, topic
//! references resolve, durations are `Duration`s. Nothing downstream needs to re-check them.

use std::path::PathBuf;
use std::time::Duration;

use super::secret::Secret;
use super::values::forward::ForwardRules;
use super::values::net::AddressPolicy;
use super::values::signing::SigningKey;
use super::values::targets::Targets;

/// The whole validated configuration. Built only by [`super::load`] and friends; share it as
/// `Arc<Settings>` and swap the `Arc` on reload rather than mutating it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Logging (`log.*`).
    pub log: LogSettings,
    /// Kafka connection and topics (`kafka.bootstrap.servers`, `kafka.client.id`, `kafka.topics`, ...).
    pub kafka: KafkaSettings,
    /// HTTP intake → Kafka (`kafka.producer.*`, plus `http.server.handler.channel.size`).
    pub producer: ProducerSettings,
    /// One entry per consumer group delivering a topic (`kafka.consumer.list`).
    pub consumers: Vec<ConsumerSettings>,
    /// The HTTP front end (`http.server.*`).
    pub http: HttpSettings,
    /// The HTTP client that delivers calls (`delivery.*`).
    pub delivery: DeliverySettings,
    /// Process shutdown (`shutdown.*`).
    pub shutdown: ShutdownSettings,
    /// Prometheus `/metrics` (`metrics.*`).
    pub metrics: MetricsSettings,
    /// Operator control state (`admin.control.*`).
    pub control: ControlSettings,
    /// Demo mode (`demo`): the README's sample ACL secrets are allowed.
    pub demo: bool,
    /// Non-fatal findings (ignored legacy keys, unknown keys). Log them once at startup/reload.
    pub warnings: Vec<String>,
}

/// `log.*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// Lines above this level are dropped (`log.level`; Go's 1..5 map to Critical..Debug).
    pub level: slog::Level,
    /// Directory for hourly log files (`log.directory`); `None` means stderr only.
    pub directory: Option<PathBuf>,
    /// Capacity, in lines, of the async logging queue (`log.queue.size`).
    pub queue_size: usize,
}

/// Kafka cluster connection and the topics bigpipe may use.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    /// Seed brokers, each `"host:port"` (IPv6 hosts in brackets), at least one.
    pub bootstrap_servers: Vec<String>,
    /// Kafka `client.id` sent with every request (`kafka.client.id`).
    pub client_id: String,
    /// Per-request timeout towards brokers (`kafka.request.timeout.ms`).
    pub request_timeout: Duration,
    /// How often cluster metadata (partition counts, leaders) is refreshed (`kafka.metadata.refresh.ms`).
    pub metadata_refresh: Duration,
    /// Static group membership (`kafka.group.instance.id`, KIP-345): this process's
    /// `group.instance.id` in every group it joins, unique per process; `None`: dynamic members.
    pub group_instance_id: Option<String>,
    /// Topics that ACL entries and consumers may reference; names are unique.
    pub topics: Vec<TopicSettings>,
    /// TLS and SASL towards the brokers (`kafka.security.protocol`, `kafka.ssl.*`, `kafka.sasl.*`).
    pub security: super::security::KafkaSecurity,
}

/// One `kafka.topics` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// Kafka topic name: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
    pub name: String,
    /// Partition count, > 0 (used when creating the topic and for partition choice).
    pub partitions: i32,
    /// Replication factor for topic creation; -1 means the broker default.
    pub replication_factor: i16,
}

/// The produce path: HTTP intake queue → Kafka.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerSettings {
    /// Callers allowed to publish; names are unique and every topic is in `kafka.topics`.
    pub acl: Vec<AclEntry>,
    /// How long a batch waits for more records before it is sent (`kafka.producer.linger.ms`, may be 0).
    pub linger: Duration,
    /// Maximum size of one produce batch in bytes (`kafka.producer.batch.bytes`).
    pub batch_bytes: usize,
    /// Capacity of the in-memory call queue; a full queue answers "超过负载"
    /// (`http.server.handler.channel.size`, the Go key).
    pub queue_calls: usize,
    /// Upper bound on the bytes held by queued calls (`kafka.producer.queue.bytes`).
    pub queue_bytes: usize,
    /// Fraction, 0 to 1, of both queue limits reserved and split equally among the ACLs
    /// (`kafka.producer.queue.reserved`): an ACL always gets its reserve, and above it only
    /// borrows room not reserved for others. 0: first come, first served.
    pub queue_reserved: f64,
    /// A record not acknowledged by Kafka within this time is failed (`kafka.producer.message.timeout.ms`).
    pub message_timeout: Duration,
    /// When `/rpc/call` answers success, unless a request says otherwise (`kafka.producer.ack.mode`).
    pub default_ack: AckMode,
    /// In [`AckMode::Kafka`], how long a request waits for the Kafka ack (`kafka.producer.ack.timeout.ms`).
    pub ack_timeout: Duration,
}

/// One `kafka.producer.acl` entry: a caller and the topic its calls go to.
#[derive(Debug, Clone, PartialEq)]
pub struct AclEntry {
    /// Caller name sent as `acl.name`; unique, non-empty.
    pub name: String,
    /// Shared secret sent as `acl.secret`; non-empty (unlike Go, it is compared). From `secret`
    /// (a value or `${ENV_NAME}`) or `secret_file`; never printed.
    pub secret: Secret,
    /// Destination topic; one of `kafka.topics`.
    pub topic: String,
    /// Where this caller's calls may go (`targets`): URL prefixes, host patterns, address
    /// rules. `None`: anywhere the global policy allows (a check-config warning).
    pub targets: Option<Targets>,
    /// Ingest quota (`rate`, `burst`); `None`: unlimited.
    pub quota: Option<AclQuota>,
}

/// An ACL's ingest quota: calls beyond it are answered 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AclQuota {
    /// Sustained calls per second (`rate`), 0.001 to 1000000.
    pub rate: f64,
    /// Calls that may arrive at once after a quiet period (`burst`), at least 1.
    pub burst: u32,
}

/// When a `/rpc/call` request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// `"queue"`: answer once the call is in the in-memory queue (the Go behaviour; a crash loses it).
    Queue,
    /// `"kafka"`: answer after Kafka acknowledged the record.
    Kafka,
}

/// One `kafka.consumer.list` entry: a consumer group that POSTs a topic's calls to their URLs.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerSettings {
    /// Topic to consume; one of `kafka.topics`.
    pub topic: String,
    /// Kafka consumer group id (`groupId`); `(topic, group_id)` pairs are unique.
    pub group_id: String,
    /// Calls per second for the whole entry (`rateLimit`), > 0, fractions allowed.
    pub rate_limit: f64,
    /// Timeout of one HTTP attempt (`timeout`, ms).
    pub timeout: Duration,
    /// Extra attempts after the first (`retries`); total attempts = retries + 1.
    pub retries: u32,
    /// Maximum in-flight HTTP calls for this entry (`concurrency`), > 0.
    pub concurrency: usize,
    /// Consumer group session timeout (`sessionTimeout`, ms), 1 s to 1 h: a member that sends
    /// no heartbeat for this long is removed from the group.
    pub session_timeout: Duration,
    /// Time between heartbeats (`heartbeatInterval`, ms), less than `session_timeout`;
    /// defaults to a third of it.
    pub heartbeat_interval: Duration,
    /// How long the group coordinator waits for members to rejoin during a rebalance
    /// (`rebalanceTimeout`, ms).
    pub rebalance_timeout: Duration,
    /// How partitions are spread over the group's members (`assignor`).
    pub assignor: Assignor,
    /// Where a group without a committed offset starts (`autoOffsetReset`).
    pub offset_reset: OffsetReset,
    /// Topic that receives calls whose attempts are exhausted (`deadLetterTopic`), a legal
    /// topic name different from `topic`; default `"<topic>.dlq"`. `None` (`""` in the file):
    /// such calls are only logged and counted. It need not be in `kafka.topics`.
    pub dead_letter_topic: Option<String>,
    /// HTTP statuses that count as delivered (`successCodes`), at least one: `"2xx"` (a class,
    /// `1xx` to `5xx`), `"204"` (one status) or `"200-204"` (an inclusive range), all within
    /// 100-599; lowercase. Default `["2xx"]`.
    pub success_codes: Vec<String>,
    /// Upper bound of the first retry delay (`retryBackoff`, ms, may be 0); it doubles per
    /// retry up to `retry_backoff_max` (exponential backoff with jitter, computed by delivery's retry table).
    pub retry_backoff: Duration,
    /// Cap of the retry delay (`retryBackoffMax`, ms), at least `retry_backoff`.
    pub retry_backoff_max: Duration,
    /// Upper bound on the delay a `Retry-After` answer may ask for (`retryAfterMax`, ms).
    pub retry_after_max: Duration,
    /// Records read ahead and not yet finished, per partition (`prefetchRecords`),
    /// 1 to 1000000. A full window stops fetching.
    pub prefetch_records: usize,
    /// Bytes of records read ahead and not yet finished, per partition (`prefetchBytes`),
    /// 1 KiB to 1 GiB. A full window stops fetching.
    pub prefetch_bytes: usize,
    /// How often finished offsets are committed (`commitInterval`, ms).
    pub commit_interval: Duration,
    /// How long a revoked partition waits for its in-flight deliveries before abandoning them
    /// (`drainTimeout`, ms); abandoned calls are delivered again by the next owner.
    pub drain_timeout: Duration,
    /// Longest time a fetch waits on the broker for new records (`fetchMaxWait`, ms).
    pub fetch_max_wait: Duration,
    /// Circuit breaker per target host (`circuitBreaker`); `None`: no breaker.
    pub circuit_breaker: Option<BreakerSettings>,
    /// Delays of the retry tier topics (`retryTiers`, ms, increasing, each at least 1 s;
    /// default 5 s, 1 min, 10 min). A retry due later than 1 s leaves the partition's window
    /// for the smallest tier at least as long as its delay. Empty: retries wait in the window.
    pub retry_tiers: Vec<Duration>,
    /// Time budget of a call (`retryFor`, ms, default 0): a failing call gives up only when its
    /// attempts are used *and* this long has passed since its first attempt (Cloud Tasks'
    /// `max_attempts` + `max_retry_duration` rule). 0: the attempt count alone decides.
    pub retry_for: Duration,
    /// Most calls in flight to one target host (`hostConcurrency`), 1 to `concurrency`;
    /// default half of `concurrency` (at least 1), so one slow host cannot take every slot.
    pub host_concurrency: usize,
    /// How long one dead letter keeps trying through transient Kafka errors before the call
    /// is only reported in the log (`deadLetterTimeout`, ms); default 300000, the default of
    /// `kafka.producer.message.timeout.ms`: the same promise for a write into Kafka.
    pub dead_letter_timeout: Duration,
    /// A partition behind its log end whose position has not moved for this long is reported
    /// stalled in `/stats` and `/readyz` (`stallAfter`, ms); default the larger of 60 s and
    /// twice `timeout` × attempts.
    pub stall_after: Duration,
    /// Caller headers this entry forwards (`forwardHeaders`), replacing
    /// `delivery.headers.forward` for it; `None`: the global list.
    pub forward_headers: Option<ForwardRules>,
    /// Standard Webhooks keys every attempt is signed with (`signingKeys` and the keys of
    /// `signingKeysFile`, in that order); empty: calls are not signed.
    pub signing_keys: Vec<SigningKey>,
    /// `ordering`: `"none"` (default) or `"key"`, calls of one partition key delivered one
    /// at a time in acceptance order.
    pub ordering: Ordering,
}

impl ConsumerSettings {
    /// Topic of the retry tier of `delay`: `<topic>.retry.<groupId>.<label>`.
    pub fn tier_topic(&self, delay: Duration) -> String {
        tier_topic_name(&self.topic, &self.group_id, delay)
    }

    /// Group id of the retry tier of `delay`: `<groupId>.retry.<label>`, so Kafka's tools
    /// show each tier's lag apart from the main group's.
    pub fn tier_group(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.group_id, tier_label(delay))
    }
}

/// The retry tier topic of entry (`topic`, `group_id`) for `delay`. It names the group
/// because every entry on a topic retries its own calls: a tier shared by two groups
/// would deliver one group's retries to the other as well.
pub fn tier_topic_name(topic: &str, group_id: &str, delay: Duration) -> String {
    format!("{topic}.retry.{group_id}.{}", tier_label(delay))
}

/// A short name of a tier delay for topic and group names: `5s`, `1m`, `10m`, `2h`, or
/// `1500ms` when no larger unit divides it.
pub fn tier_label(delay: Duration) -> String {
    let ms = delay.as_millis();
    match ms {
        0 => "0ms".to_owned(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

/// `circuitBreaker` of a consumer entry: the Go version's five keys, all required when the
/// table is present (see delivery's `breaker` module).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Least time a breaker stays open (`breakPeriod`, seconds, may be 0).
    pub break_period: Duration,
    /// Time over which a recovering breaker ramps up to letting every call through
    /// (`recoverPeriod`, seconds, may be 0).
    pub recover_period: Duration,
    /// Length of the sliding window of outcomes, in one-second buckets (`winSize`), 1 to 3600.
    pub window_secs: u32,
    /// Fewer samples than this in the window count as healthy (`minStats`), at least 1.
    pub min_stats: u32,
    /// Success rate at or above which a target is healthy (`healthRate`), in (0, 1].
    pub health_rate: f64,
}

/// Partition assignment strategy of a consumer group (`assignor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// `"cooperative-sticky"`: as `sticky`, and a rebalance stops only the partitions that move
    /// (Kafka's incremental cooperative rebalancing, KIP-429).
    CooperativeSticky,
    /// `"sticky"`: balanced, and partitions stay with their owner across rebalances where possible.
    Sticky,
    /// `"range"`: contiguous partition ranges per member (Kafka's classic default).
    Range,
    /// `"roundrobin"`: partitions dealt out one by one.
    RoundRobin,
}

/// How a consumer entry orders the calls of a partition (`ordering`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// Calls start as slots allow (the Go version, and every peer but Knative's).
    #[default]
    None,
    /// Calls with the same `partition_key` are delivered one at a time, in acceptance order;
    /// different keys stay parallel. Retries then wait in the partition's window, not in a
    /// retry tier, so a later call of the key cannot overtake them.
    Key,
}

/// Where a consumer group without a committed offset starts reading (`autoOffsetReset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// `"earliest"`: the oldest retained record, so a new group delivers the backlog.
    Earliest,
    /// `"latest"`: only records written from now on (the Go version's behaviour).
    Latest,
}

/// `http.server.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Address to bind (`http.server.host`).
    pub host: String,
    /// Port to bind (`http.server.port`); 0 picks an ephemeral port (tests).
    pub port: u16,
    /// Time allowed to read a request (`http.server.read.timeout`, ms).
    pub read_timeout: Duration,
    /// Time allowed to write a response (`http.server.write.timeout`, ms).
    pub write_timeout: Duration,
    /// Largest accepted request body in bytes (`http.server.body.limit`); never more than a
    /// record that fits `kafka.producer.batch.bytes` with the dead-letter reserve.
    pub body_limit: usize,
    /// HTTP worker threads (`http.server.workers`); 0 means one per core.
    pub workers: usize,
    /// How long an idle keep-alive connection is kept open (`http.server.keepalive.timeout`,
    /// ms); zero: keep-alive is off, every connection closes after one response.
    pub keep_alive: Duration,
    /// Most open connections on the public listener, all workers together
    /// (`http.server.max.connections`), 1 to 1000000. Split evenly over the workers
    /// (rounded up): a worker that holds its share accepts no more until one closes.
    pub max_connections: usize,
    /// New connections accepted per second on the public listener
    /// (`http.server.max.connection.rate`), with a burst of one second's worth; a connection
    /// over the rate is closed at once, unanswered. 0: no limit.
    pub max_connection_rate: u32,
    /// How far ahead a call may be scheduled (`http.server.schedule.max.ms`, default 7 days,
    /// at most 365 days); 0 refuses scheduled calls.
    pub schedule_max: Duration,
    /// Most calls in one `POST /rpc/calls` (`http.server.batch.max.calls`, default 1000); the
    /// bytes are bounded by `http.server.body.limit`.
    pub batch_max_calls: usize,
    /// Idempotency keys (`http.server.idempotency.*`).
    pub idempotency: IdempotencySettings,
    /// The admin listener (`http.admin.*`): `/stats`, `/readyz` with its detail, `/healthz`.
    pub admin: AdminSettings,
}

/// `http.server.idempotency.*` keys: where claims of `Idempotency-Key`s live and how long a
/// key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencySettings {
    /// The claims topic (`http.server.idempotency.topic`, default `bigpipe.idempotency`);
    /// `None` (the key set to `""`) turns idempotency keys off: a call carrying one is refused.
    pub topic: Option<String>,
    /// Partitions the claims topic is created with (`http.server.idempotency.partitions`,
    /// default 3); an existing topic keeps its own count.
    pub partitions: i32,
    /// How long a key answers with its first call's id (`http.server.idempotency.window.ms`,
    /// default 24 h, 1 s to 7 days); also the claims topic's retention.
    pub window: Duration,
    /// Most keys one process holds in memory (`http.server.idempotency.max.keys`, default
    /// 1000000); past it the oldest are forgotten early, and counted.
    pub max_keys: usize,
}

/// `http.admin.*` keys: the listener for operators, kept off the public one.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Address to bind (`http.admin.host`), default `127.0.0.1`.
    pub host: String,
    /// Port to bind (`http.admin.port`), default 10087; 0 picks an ephemeral port (tests).
    pub port: u16,
    /// Bearer token every admin request must carry (`http.admin.token`); `None`: none needed.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminSettings {
    /// The token is a credential: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `delivery.*` keys: the HTTP client that POSTs calls to their URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Threads running HTTP deliveries for all consumer entries (`delivery.threads`), 1 to 64.
    pub threads: usize,
    /// Timeout of establishing a connection to a target (`delivery.connect.timeout.ms`).
    pub connect_timeout: Duration,
    /// How long an idle connection is kept for reuse (`delivery.keepalive.ms`).
    pub keep_alive: Duration,
    /// At most this many bytes of a target's response body are read
    /// (`delivery.response.max.bytes`, may be 0).
    pub max_response_body: usize,
    /// Caller headers never forwarded to targets, lower case (`delivery.headers.drop`),
    /// e.g. `["authorization", "cookie"]`; wins over every forward rule. Empty by default.
    pub drop_headers: Vec<String>,
    /// Caller headers forwarded to targets (`delivery.headers.forward`), unless a consumer
    /// entry has its own `forwardHeaders`; default [`DEFAULT_FORWARD`](super::values::forward::DEFAULT_FORWARD).
    pub forward_headers: ForwardRules,
    /// Certificates trusted for https targets besides the built-in roots
    /// (`delivery.tls.ca.file`), read and checked when the config is loaded.
    pub tls_ca: Option<CaBundle>,
    /// The outbound address policy (`delivery.allow`, `delivery.deny`): rules that lift the
    /// always-refused classes (loopback, link-local, metadata...) and rules always refused.
    pub destinations: AddressPolicy,
}

/// A PEM file of CA certificates, as read when the config was loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// Where it was read from.
    pub path: std::path::PathBuf,
    /// Its contents: at least one valid PEM certificate.
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("bytes", &self.pem.len())
            .finish()
    }
}

/// `metrics.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Target hosts per consumer entry that get their own `host` label; calls to hosts
    /// past it count as "other", so callers cannot multiply series (`metrics.max_hosts`).
    pub max_hosts: usize,
}

/// `admin.control.*` keys: the compacted topic pause, retransmit and replay markers live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSettings {
    /// The control topic (`admin.control.topic`, default `bigpipe.control`); `None` (the key
    /// set to `""`) turns pause, retransmit and replay markers off.
    pub topic: Option<String>,
}

/// `shutdown.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownSettings {
    /// How long a shutdown waits for in-flight work to finish before abandoning it
    /// (`shutdown.grace.ms`).
    pub grace: Duration,
}
