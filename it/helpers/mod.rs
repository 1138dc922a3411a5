//! Shared test plumbing: the broker, an in-process bigpipe, record readers.

pub(crate) mod load;
pub(crate) mod process;
pub(crate) mod target;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bigpipe::app::{Listeners, Running};
use bigpipe::config::{self, Format, Settings};
use bigpipe::policy::{AddressPolicy, Rule};
use bigpipe::stats::Stats;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::RecordAndOffset;
use serde_json::Value;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::time::Instant;

/// How long any single wait in a test may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// Tests that stop the broker take this exclusively; all others share it.
static BROKER: RwLock<()> = RwLock::const_new(());

/// The broker address under test.
pub(crate) fn bootstrap() -> String {
    std::env::var("IT_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Shared use of the broker; fails loudly when it does not answer.
pub(crate) async fn kafka() -> RwLockReadGuard<'static, ()> {
    let guard = BROKER.read().await;
    require_broker().await;
    guard
}

/// Exclusive use of the broker, for tests that stop and start it.
pub(crate) async fn kafka_exclusive() -> RwLockWriteGuard<'static, ()> {
    let guard = BROKER.write().await;
    require_broker().await;
    guard
}

async fn require_broker() {
    let addr = bootstrap();
    let ok = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addr)).await;
    assert!(
        matches!(ok, Ok(Ok(_))),
        "no Kafka broker answers at {addr}: start one with `scripts/kafka.sh up` (make it does this) \
         or point IT_KAFKA_BOOTSTRAP at one"
    );
}

/// A fresh name, so tests never see each other's topics or groups.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Runs `scripts/kafka.sh` with `args`, panicking when it fails.
pub(crate) fn kafka_script(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
    let status = std::process::Command::new(&script)
        .args(args)
        .status()
        .expect("run scripts/kafka.sh");
    assert!(status.success(), "scripts/kafka.sh {args:?} failed: {status}");
}

/// Runs one of Kafka's own tools through `scripts/kafka.sh tool` against
/// `bootstrap`; returns stdout and stderr together (None if it cannot run).
pub(crate) fn kafka_tool(tool: &str, bootstrap: &str, args: &[&str]) -> Option<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
    let out = std::process::Command::new(script)
        .args(["tool", tool, "--bootstrap-server", bootstrap])
        .args(args)
        .output()
        .ok()?;
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Builds settings from a TOML document, with `{bootstrap}` replaced.
///
/// The test targets listen on loopback, which the destination policy refuses by default, so
/// unless the document sets `delivery.allow` itself or carries [`STRICT_DESTINATIONS`],
/// 127.0.0.0/8 and ::1 are allowed (any `delivery.deny` stays).
pub(crate) fn settings(toml: &str) -> Settings {
    let text = toml.replace("{bootstrap}", &bootstrap());
    let mut s = match config::load_from_str(&text, Format::Toml) {
        Ok(s) => s,
        Err(e) => panic!("test config is invalid:\n{e}\n{text}"),
    };
    if !sets_own_allow(&text) {
        let p = &s.delivery.destinations;
        s.delivery.destinations = AddressPolicy::new(loopback_rules(), p.deny().to_vec());
    }
    s
}

/// A line (a TOML comment) that keeps [`settings`] and [`process::Process::spawn`] from
/// allowing loopback: the test wants the shipped default policy.
pub(crate) const STRICT_DESTINATIONS: &str = "# it: strict destinations";

/// `delivery.allow` for tests whose targets listen on loopback, as the environment variable
/// spawned processes get.
pub(crate) const LOOPBACK_ALLOW: &str = r#"["127.0.0.0/8", "::1"]"#;

fn loopback_rules() -> Vec<Rule> {
    ["127.0.0.0/8", "::1"]
        .iter()
        .map(|r| r.parse().expect("loopback rule"))
        .collect()
}

/// Whether a test config chooses its own allow list (or none, with the marker).
pub(crate) fn sets_own_allow(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with(STRICT_DESTINATIONS) || l.starts_with("allow") || l.contains("delivery.allow")
    })
}

/// A config with one topic `topic` of `partitions` partitions and one ACL
/// entry `caller`/`secret` on it, plus `extra` TOML appended.
pub(crate) fn simple_config(topic: &str, partitions: i32, extra: &str) -> String {
    format!(
        r#"
[log]
level = "warning"

[kafka]
bootstrap.servers = "{{bootstrap}}"
topics = [{{ name = "{topic}", partitions = {partitions} }}]

[[kafka.producer.acl]]
name = "caller"
secret = "s3cret"
topic = "{topic}"

{extra}
"#
    )
}

/// bigpipe running in this process on 127.0.0.1 with ephemeral ports.
pub(crate) struct Bigpipe {
    running: Option<Running>,
    /// `http://127.0.0.1:PORT`: the public listener.
    pub(crate) base: String,
    /// `http://127.0.0.1:PORT`: the admin listener (`/stats`, `/readyz` detail).
    pub(crate) admin: String,
    /// `http.admin.token`, sent by [`Bigpipe::get`] on admin paths.
    admin_token: Option<String>,
    /// HTTP client.
    pub(crate) http: reqwest::Client,
}

/// Paths [`Bigpipe::get`] sends to the admin listener.
const ADMIN_PATHS: &[&str] = &["/stats", "/readyz"];

impl Bigpipe {
    /// Starts bigpipe with `settings`, both listeners on ephemeral ports.
    pub(crate) fn start(settings: &Settings) -> Self {
        Self::start_with_log(settings, test_logger())
    }

    /// Starts bigpipe with `settings`, logging to `log`.
    pub(crate) fn start_with_log(settings: &Settings, log: slog::Logger) -> Self {
        let bind = || {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            listener
        };
        let listeners = Listeners {
            public: bind(),
            admin: bind(),
        };
        let stats = Arc::new(Stats::new(settings.kafka.topics.iter().map(|t| t.name.as_str())));
        let running = bigpipe::app::start(settings, listeners, log, stats).expect("start bigpipe");
        let base = format!("http://{}", running.addr());
        let admin = format!("http://{}", running.admin_addr());
        Self {
            running: Some(running),
            base,
            admin,
            admin_token: settings.http.admin.token.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// Starts bigpipe and waits until `/readyz` says ready.
    pub(crate) async fn start_ready(settings: &Settings) -> Self {
        let bp = Self::start(settings);
        bp.wait_ready().await;
        bp
    }

    /// Polls `/readyz` until it answers 200.
    pub(crate) async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.base);
        poll("bigpipe ready", || async {
            let r = self.http.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    /// POSTs a JSON body to `/rpc/call`; returns the status and the envelope.
    pub(crate) async fn call(&self, body: &Value) -> (u16, Value) {
        self.post_raw("/rpc/call", body.to_string().into_bytes()).await
    }

    /// POSTs `body` to `/rpc/call` with `client` (e.g. one from [`client_from`]); returns the
    /// status, `Retry-After` in seconds when given, and the envelope.
    pub(crate) async fn call_from(
        &self,
        client: &reqwest::Client,
        body: &Value,
    ) -> (u16, Option<u64>, Value) {
        let r = client
            .post(format!("{}/rpc/call", self.base))
            .body(body.to_string())
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let envelope = serde_json::from_slice(&r.bytes().await.expect("body")).unwrap_or(Value::Null);
        (status, retry_after, envelope)
    }

    /// POSTs raw bytes to `path`; returns the status and the parsed body.
    pub(crate) async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        let bytes = r.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// GETs `path`; returns the status and the parsed body. `/stats` and `/readyz` go to the
    /// admin listener (with the admin token when one is configured), every other path to the
    /// public one.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let bare = path.split('?').next().unwrap_or(path);
        let mut request = if ADMIN_PATHS.contains(&bare) {
            self.http.get(format!("{}{path}", self.admin))
        } else {
            self.http.get(format!("{}{path}", self.base))
        };
        if let (true, Some(token)) = (ADMIN_PATHS.contains(&bare), &self.admin_token) {
            request = request.bearer_auth(token);
        }
        let r = request.send().await.expect("get");
        let status = r.status().as_u16();
        let bytes = r.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Graceful stop.
    pub(crate) async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(20)).await;
        }
    }
}

/// Logs at warning level and above to the test's stderr.
pub(crate) fn test_logger() -> slog::Logger {
    use slog::Drain;
    let decorator = slog_term::PlainSyncDecorator::new(slog_term::TestStdoutWriter);
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = slog::LevelFilter::new(drain, slog::Level::Warning).fuse();
    slog::Logger::root(drain, slog::o!())
}

/// A call body for the `caller` ACL of [`simple_config`].
pub(crate) fn call_body(url: &str, data: &str, key: &str) -> Value {
    serde_json::json!({
        "acl": {"name": "caller", "secret": "s3cret"},
        "url": url,
        "data": data,
        "partition_key": key,
    })
}

/// Polls `f` every 50 ms until it returns `Some`, failing the test after [`WAIT`].
pub(crate) async fn poll<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `topic` with one partition (broker default replication) and `configs`, through
/// bigpipe's own wire admin, before bigpipe sees it.
pub(crate) async fn create_topic(topic: &str, configs: &[(&str, String)]) {
    use bigpipe::kafka::wire::admin::{TopicCreation, TopicSpec, create_topics};
    let t = Duration::from_secs(10);
    let conn = bigpipe::kafka::wire::connect_any(&bigpipe::kafka::connect::KafkaConnect::plaintext(
        vec![bootstrap()],
        "it",
        t,
    ))
    .await
    .expect("connect");
    let spec = TopicSpec {
        name: topic.to_owned(),
        partitions: 1,
        replication_factor: -1,
        configs: configs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    };
    let got = create_topics(&conn, &[spec], t).await.expect("create topic");
    assert_eq!(got, vec![(topic.to_owned(), TopicCreation::Created)]);
}

/// Summed `lag` of a `/stats` view's partitions; `None` until it has partitions and each
/// has a lag.
pub(crate) fn partitions_lag(view: &Value) -> Option<i64> {
    let parts = view["partitions"].as_object()?;
    if parts.is_empty() {
        return None;
    }
    parts.values().map(|p| p["lag"].as_i64()).sum()
}

/// A plain rskafka client for reading back what bigpipe wrote.
pub(crate) async fn client() -> Client {
    ClientBuilder::new(vec![bootstrap()])
        .build()
        .await
        .expect("rskafka client")
}

/// A partition reader.
pub(crate) async fn partition(client: &Client, topic: &str, partition: i32) -> PartitionClient {
    client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .expect("partition client")
}

/// Every record currently in `topic` (all `partitions`), by partition.
pub(crate) async fn read_all(
    client: &Client,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<RecordAndOffset>> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let pc = partition(client, topic, p).await;
        let end = pc.get_offset(OffsetAt::Latest).await.expect("latest offset");
        let mut records = vec![];
        let mut next = 0;
        while next < end {
            let (batch, _hw) = pc.fetch_records(next, 1..10_000_000, 1_000).await.expect("fetch");
            for r in batch {
                next = r.offset + 1;
                records.push(r);
            }
        }
        out.insert(p, records);
    }
    out
}

/// Number of records in `topic`.
pub(crate) async fn count_records(client: &Client, topic: &str, partitions: i32) -> usize {
    let mut n = 0;
    for p in 0..partitions {
        let pc = partition(client, topic, p).await;
        let end = pc.get_offset(OffsetAt::Latest).await.expect("latest offset");
        let start = pc.get_offset(OffsetAt::Earliest).await.expect("earliest offset");
        n += usize::try_from(end - start).expect("offsets");
    }
    n
}

/// Log lines written by a bigpipe started with [`Bigpipe::start_logged`], as text.
#[derive(Clone, Default)]
pub(crate) struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything logged so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Bigpipe {
    /// Like [`Bigpipe::start_ready`], with every line at debug level and above also kept in
    /// the returned [`CapturedLog`], for tests of what logs may show.
    pub(crate) async fn start_logged(settings: &Settings) -> (Self, CapturedLog) {
        use slog::Drain;
        let captured = CapturedLog::default();
        let decorator = slog_term::PlainSyncDecorator::new(captured.clone());
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        let log = slog::Logger::root(drain, slog::o!());
        let bp = Self::start_with_log(settings, log);
        bp.wait_ready().await;
        (bp, captured)
    }
}

/// An HTTP client whose connections come from `source` (any 127/8 address is local on Linux),
/// for tests of per-source behaviour such as the failed-check throttle.
pub(crate) fn client_from(source: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source)
        .build()
        .expect("client")
}
